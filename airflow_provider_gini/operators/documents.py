"""Operators for Gini documents: pull a window into storage, upload, read extractions,
send feedback, delete."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

from airflow.configuration import conf
from airflow.sdk import Asset, AssetAlias, Context, ObjectStoragePath

from airflow_provider_gini._compat import AirflowException, AirflowFailException
from airflow_provider_gini.client.api import FINISHED
from airflow_provider_gini.client.errors import GiniNotFound, GiniProcessingError
from airflow_provider_gini.operators.base import GiniBaseOperator
from airflow_provider_gini.operators.lineage import PullLineage, operator_lineage
from airflow_provider_gini.pull.engine import Puller, PullOptions, pending_error
from airflow_provider_gini.pull.manifest import ManifestWriter, manifest_name
from airflow_provider_gini.pull.storage import Store, destination_path
from airflow_provider_gini.pull.window import AUTO, resolve_window
from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger

MANIFESTS = "_manifests"


class GiniPullDocumentsOperator(GiniBaseOperator):
    """Pull every document created in ``[created_after, created_before)`` with its extractions
    (and, with ``include_processed``, its processed file) into ``destination``.

    **Window.** By default each run pulls from the end of the previous successful run to this
    run's end (``data_interval_end``), or its data interval when that is not empty. Airflow 3's
    default ``CronTriggerTimetable`` gives scheduled runs an empty interval, so "previous
    success to now" is what makes consecutive and catch-up runs cover every instant exactly
    once; a failed run's documents are picked up by the next success. The first run pulls
    everything before its end. Pass ``created_after``/``created_before`` (datetimes, ISO strings
    or templates such as ``"{{ data_interval_start }}"``) to choose; ``None`` means unbounded.
    Run the DAG with ``max_active_runs=1`` so runs finish in order.

    **Destination.** Anything ``ObjectStoragePath`` understands (a local path, ``file://``,
    ``s3://``, ...; ``destination_conn_id`` for its credentials). Per document it writes
    ``<destination>/<id>/document.json``, ``extractions.json`` and ``processed.<ext>``, and per
    run ``<destination>/_manifests/manifest-<run_id>.jsonl``: one line per document with its
    outcome (pulled, skipped, errored, pending, gone) and key extractions.

    **Nothing lost, nothing half-written.** Files are written under temporary names and renamed;
    ``document.json`` comes last and marks a document complete, so a rerun skips it. A PENDING
    document is waited for up to ``pending_timeout`` seconds; any still pending fail the task,
    named, after the manifest is written, so a retry gets them. Documents in ERROR are recorded
    and do not fail the run. Document ids must be plain tokens to become folder names.

    **Lineage.** The destination is the task's outlet Asset. With the ``openlineage`` extra,
    the run's OpenLineage events name the Gini API as input and the destination as output, with
    the number of documents pulled.

    Returns (XCom) ``{"manifest", "pulled", "skipped", "errored", "pending", "gone", "window"}``.
    """

    template_fields: Sequence[str] = (
        "gini_conn_id",
        "destination",
        "created_after",
        "created_before",
        "include_processed",
    )

    def __init__(
        self,
        *,
        destination: str | ObjectStoragePath,
        created_after: Any = AUTO,
        created_before: Any = AUTO,
        include_extractions: bool = True,
        include_processed: bool | str = False,
        max_workers: int = 8,
        page_size: int = 100,
        pending_timeout: float = 300.0,
        poll_interval: float = 2.0,
        destination_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if not 1 <= page_size <= 250:
            raise ValueError("page_size must be between 1 and 250")
        # Lineage: the destination is the outlet. A templated one is only known at run time, so it
        # is declared through an alias and the rendered Asset is attached to it in execute().
        self._alias: AssetAlias | None = None
        if "outlets" not in kwargs:
            if isinstance(destination, str) and "{{" not in destination:
                kwargs["outlets"] = [Asset(_asset_uri(destination))]
            else:
                self._alias = AssetAlias(f"gini-pull-destination:{kwargs.get('task_id', 'pull')}")
                kwargs["outlets"] = [self._alias]
        super().__init__(**kwargs)
        self.destination = destination
        self.created_after = created_after
        self.created_before = created_before
        self.include_extractions = include_extractions
        self.include_processed = include_processed
        self.max_workers = max_workers
        self.page_size = page_size
        self.pending_timeout = pending_timeout
        self.poll_interval = poll_interval
        self.destination_conn_id = destination_conn_id
        self.hook_params.setdefault("pool_size", max_workers + 2)
        self._lineage: PullLineage | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        window = resolve_window(context, self.created_after, self.created_before)
        root = destination_path(self.destination, self.destination_conn_id)
        store = Store(root)
        store.ensure_writable()
        run_id = context.get("run_id")
        name = manifest_name(run_id if isinstance(run_id, str) else None, window.as_strings())
        options = PullOptions(
            include_extractions=_flag(self.include_extractions, "include_extractions"),
            include_processed=_flag(self.include_processed, "include_processed"),
            max_workers=self.max_workers,
            page_size=self.page_size,
            pending_timeout=self.pending_timeout,
            poll_interval=self.poll_interval,
        )
        self.log.info("Pulling Gini documents created in %s into %s", window.describe(), root)
        manifest = ManifestWriter(store, f"{MANIFESTS}/{name}")
        self._lineage = PullLineage(self.hook.gini.settings.api_url, str(root), window.describe())
        try:
            pending = Puller(self.hook, store, options).run(window, manifest)
        except BaseException:
            manifest.abort()
            raise
        manifest.commit()
        counts = manifest.counts
        self._lineage = dataclasses.replace(self._lineage, pulled=counts.get("pulled", 0))
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        self.log.info("Gini pull done: %s; manifest %s", summary, manifest.uri)
        if self._alias is not None:
            context["outlet_events"][self._alias].add(Asset(str(root)))
        if pending:
            raise pending_error(pending, options.pending_timeout)
        return {"manifest": manifest.uri, **counts, "window": window.as_strings()}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage listener after execute(); None if execute() never began."""
        return None if self._lineage is None else operator_lineage(self._lineage)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)


class GiniUploadDocumentOperator(GiniBaseOperator):
    """Upload ``file`` (a local path or an ``ObjectStoragePath``/URL) and return the document id.

    With ``wait_for_processing`` it then waits until Gini has processed the document: polling
    here, or, with ``deferrable`` (default: ``[operators] default_deferrable``), in the triggerer.
    ERROR fails the task without retries.

    A retry never creates a second document: the upload itself is not retried once it may have
    reached Gini, and a retried task first adopts a document of the same name that this DAG run
    already uploaded.
    """

    template_fields: Sequence[str] = ("gini_conn_id", "file", "filename", "doctype", "content_type")

    def __init__(
        self,
        *,
        file: str | ObjectStoragePath,
        filename: str | None = None,
        doctype: str | None = None,
        content_type: str | None = None,
        wait_for_processing: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        processing_timeout: float = 600.0,
        poll_interval: float = 5.0,
        file_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file = file
        self.filename = filename
        self.doctype = doctype
        self.content_type = content_type
        self.wait_for_processing = wait_for_processing
        self.deferrable = deferrable
        self.processing_timeout = processing_timeout
        self.poll_interval = poll_interval
        self.file_conn_id = file_conn_id

    def execute(self, context: Context) -> str:
        source = (
            self.file
            if isinstance(self.file, ObjectStoragePath)
            else destination_path(self.file, self.file_conn_id)
        )
        if not source.is_file():
            raise AirflowFailException(f"Cannot upload {source}: no such file")
        name = self.filename or source.name
        document_id = self._adopt(context, name)
        if document_id is None:
            document_id = self.hook.upload_document(
                source.read_bytes(), filename=name, doctype=self.doctype, content_type=self.content_type
            )
            self.log.info("Uploaded %s to Gini as document %s", name, document_id)
        if not self.wait_for_processing:
            return document_id
        if self.deferrable:
            doc = self.hook.get_document(document_id)
            if doc["progress"] not in FINISHED:  # PENDING, or a progress Gini does not document
                self.defer(
                    trigger=GiniDocumentProcessedTrigger(
                        document_id=document_id,
                        gini_conn_id=self.gini_conn_id,
                        poll_interval=self.poll_interval,
                        end_time=time.time() + self.processing_timeout,
                        hook_params=self.hook_params,
                    ),
                    method_name="execute_complete",
                )
            fail_on_error(document_id, doc["progress"])
            return document_id
        try:
            self.hook.wait_for_processing(
                document_id, timeout=self.processing_timeout, poll_interval=self.poll_interval
            )
        except GiniProcessingError as exc:
            raise AirflowFailException(str(exc)) from exc
        return document_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        return complete_processing_event(event)

    def _adopt(self, context: Context, name: str) -> str | None:
        """On a retry: the document of this name this DAG run already uploaded, if any."""
        ti = context.get("ti")
        dag_run = context.get("dag_run")
        if ti is None or getattr(ti, "try_number", 1) <= 1 or dag_run is None:
            return None
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        if since is None:
            return None
        for doc in self.hook.iter_documents(created_after=since):
            if doc.get("name") == name:
                self.log.info("Retry: adopting document %s (%s) uploaded by an earlier try", doc["id"], name)
                return str(doc["id"])
        return None


def fail_on_error(document_id: str, progress: str) -> str:
    """``progress``, unless it is ERROR: that fails the task without retries, which cannot help."""
    if progress == "ERROR":
        raise AirflowFailException(f"Gini could not process document {document_id} (progress ERROR)")
    return progress


def complete_processing_event(event: dict[str, Any]) -> str:
    """The document id from a trigger event; raise on error and timeout events."""
    status = event.get("status")
    document_id = str(event.get("document_id"))
    if status == "success":
        return document_id
    if status == "failed":
        raise AirflowFailException(event.get("message") or f"Gini could not process document {document_id}")
    raise AirflowException(
        event.get("message") or f"Waiting for Gini document {document_id} ended with {status}"
    )


class GiniGetExtractionsOperator(GiniBaseOperator):
    """Return a document's extractions (the API's JSON), or with ``flatten`` only the key values."""

    template_fields: Sequence[str] = ("gini_conn_id", "document_id")

    def __init__(self, *, document_id: str, flatten: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document_id = document_id
        self.flatten = flatten

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gini.pull.manifest import flatten

        extractions = self.hook.get_extractions(self.document_id)
        return dict(flatten(extractions)) if self.flatten else extractions


class GiniSendFeedbackOperator(GiniBaseOperator):
    """Send corrected extractions, e.g. ``{"amountToPay": {"value": "12.50:EUR"}}``."""

    template_fields: Sequence[str] = ("gini_conn_id", "document_id", "extractions", "compound_extractions")

    def __init__(
        self,
        *,
        document_id: str,
        extractions: dict[str, Any],
        compound_extractions: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document_id = document_id
        self.extractions = extractions
        self.compound_extractions = compound_extractions

    def execute(self, context: Context) -> None:
        self.hook.send_feedback(self.document_id, self.extractions, self.compound_extractions)
        self.log.info(
            "Sent feedback on %d extraction(s) of document %s", len(self.extractions), self.document_id
        )


class GiniDeleteDocumentOperator(GiniBaseOperator):
    """Delete a document; one that is already gone counts as deleted unless ``missing_ok=False``."""

    template_fields: Sequence[str] = ("gini_conn_id", "document_id")

    def __init__(self, *, document_id: str, missing_ok: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document_id = document_id
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> None:
        try:
            self.hook.delete_document(self.document_id)
        except GiniNotFound:
            if not self.missing_ok:
                raise
            self.log.info("Document %s was already gone", self.document_id)


def _flag(value: Any, name: str) -> bool:
    """A boolean argument, also when a template rendered it as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _asset_uri(destination: str) -> str:
    if "://" in destination:
        return destination
    return "file://" + os.path.abspath(os.path.expanduser(destination))
