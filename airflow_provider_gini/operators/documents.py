"""Operators for Gini documents: upload, read extractions, send feedback, delete. The pull
operator lives in operators/pull.py and is importable from here too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.configuration import conf
from airflow.sdk import Context, ObjectStoragePath

from airflow_provider_gini._compat import AirflowException, AirflowFailException
from airflow_provider_gini.client.api import FINISHED, checked_rotations
from airflow_provider_gini.client.errors import GiniNotFound
from airflow_provider_gini.operators.base import (
    GiniBaseOperator,
    defer_wait,
    raise_for_event,
    terminal_errors,
)
from airflow_provider_gini.operators.composite import (
    composite_name,
    read_pages,
    source_path,
    upload_composite,
)
from airflow_provider_gini.operators.idempotency import adopt, record, upload_tag, user_metadata
from airflow_provider_gini.operators.pull import GiniPullDocumentsOperator
from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger

__all__ = [
    "GiniDeleteDocumentOperator",
    "GiniGetExtractionsOperator",
    "GiniPullDocumentsOperator",
    "GiniSendFeedbackOperator",
    "GiniUploadDocumentOperator",
]


class GiniUploadDocumentOperator(GiniBaseOperator):
    """Upload ``file`` (a local path or an ``ObjectStoragePath``/URL) and return the document id;
    or, with ``files`` instead, upload each file as a partial document and return the id of the
    composite document made of them, in order, each turned by its ``rotations`` (multiples of
    90 degrees). ``files`` of one file makes a composite too: the result is always of one kind.
    Every file is read and checked (a PDF or an image, under 10 MiB) before anything is uploaded.

    With ``wait_for_processing`` it then waits until Gini has processed the document (the
    composite): polling here, or, with ``deferrable`` (default: ``[operators]
    default_deferrable``), in the triggerer. ERROR fails the task without retries.

    ``metadata`` ({name: value}, templated) goes with every upload as
    ``X-Document-Metadata-<name>`` headers, unchanged: names are HTTP tokens, values strings of
    printable ASCII (percent-encode other text yourself) or integers (sent as ``str()``; floats,
    bools and None are refused); names starting with ``Airflow-`` and ``Content-Sha256``
    (ignoring case, ``_`` taken for ``-``) are reserved for the idempotency tag. Bad metadata
    fails the task before any upload. Conflicting arguments (``file`` and ``files``, ...) raise
    TypeError when the DAG is parsed. Gini processes only the first 10 pages of a document: a
    composite of more files is warned of.

    Every upload carries an idempotency tag as Gini metadata headers:
    ``X-Document-Metadata-Airflow-Dag-Id``, ``-Airflow-Run-Id``, ``-Airflow-Task-Id``,
    ``-Airflow-Map-Index`` (-1 when not mapped), ``-Content-Sha256`` (of the bytes uploaded) and,
    for composites, ``-Airflow-Part`` (``partial-<k>`` or ``composite``). Values are ASCII:
    anything else, ``%`` and spaces included, is percent-encoded (UTF-8), and a value longer
    than 200 characters is cut and ends in ``~`` and 16 hex digits of its hash.

    An upload is not retried once it may have reached Gini. A later try of the task (a retry,
    or the task cleared) adopts an earlier upload (each partial, and the composite) only on
    proof that this task instance uploaded the same content: its record in Airflow's task state
    store (3.3+), or the tag returned with all its values equal. Otherwise it uploads again, and
    warns naming the same-name documents of this run it could not prove to be its own
    (operators/idempotency.py).
    """

    template_fields: Sequence[str] = (
        "gini_conn_id",
        "file",
        "files",
        "rotations",
        "filename",
        "doctype",
        "content_type",
        "metadata",
    )

    def __init__(
        self,
        *,
        file: str | ObjectStoragePath | None = None,
        files: list[str | ObjectStoragePath] | None = None,
        rotations: list[int] | None = None,
        filename: str | None = None,
        doctype: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, str | int] | None = None,
        wait_for_processing: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        processing_timeout: float = 600.0,
        poll_interval: float = 5.0,
        file_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file = file
        self.files = files
        self.rotations = rotations
        self.filename = filename
        self.doctype = doctype
        self.content_type = content_type
        self.metadata = metadata
        self.wait_for_processing = wait_for_processing
        self.deferrable = deferrable
        self.processing_timeout = processing_timeout
        self.poll_interval = poll_interval
        self.file_conn_id = file_conn_id
        self._check_arguments()  # at parse time already, where the DAG's author sees it

    def _check_arguments(self) -> None:
        """TypeError naming the conflict: at parse time, where the DAG's author sees it."""
        if (self.file is None) == (self.files is None):
            raise TypeError(
                "GiniUploadDocumentOperator needs exactly one of file (one document) and files "
                f"(the pages of one composite document), got {'both' if self.file is not None else 'neither'}"
            )
        if self.files is None and self.rotations is not None:
            raise TypeError("rotations apply to files (a composite document), not to file")
        if self.files is not None and self.content_type is not None:
            raise TypeError(
                "content_type applies to file; with files each partial's type comes from its content"
            )

    def execute(self, context: Context) -> str:
        with terminal_errors():
            return self._upload(context)

    def _upload(self, context: Context) -> str:
        try:
            self._check_arguments()  # again: mapped and templated arguments arrive only now
        except TypeError as exc:  # a retry cannot fix the arguments
            raise AirflowFailException(str(exc)) from exc
        metadata = user_metadata(self.metadata)
        if self.files is not None:
            pages = read_pages(self.files, self.file_conn_id)
            rotations = checked_rotations(self.rotations, len(pages))
            document_id = upload_composite(
                self.hook,
                context,
                pages,
                rotations,
                name=composite_name(self.filename, pages),
                doctype=self.doctype,
                metadata=metadata,
                log=self.log,
            )
        else:
            document_id = self._upload_file(context, metadata)
        if not self.wait_for_processing:
            return document_id
        if self.deferrable:
            doc = self.hook.get_document(document_id)
            if doc["progress"] not in FINISHED:  # PENDING, or a progress Gini does not document
                trigger = GiniDocumentProcessedTrigger(
                    document_id=document_id,
                    gini_conn_id=self.gini_conn_id,
                    poll_interval=self.poll_interval,
                    timeout=self.processing_timeout,
                    hook_params=self.hook_params,
                )
                defer_wait(self, trigger, self.processing_timeout)
            fail_on_error(document_id, doc["progress"])
            return document_id
        self.hook.wait_for_processing(
            document_id, timeout=self.processing_timeout, poll_interval=self.poll_interval
        )
        return document_id

    def _upload_file(self, context: Context, metadata: dict[str, str]) -> str:
        assert self.file is not None  # for the type checker: _check_arguments made sure
        source = source_path(self.file, self.file_conn_id)
        if not source.is_file():
            raise AirflowFailException(f"Cannot upload {source}: no such file")
        name = self.filename or source.name
        data = source.read_bytes()
        tag = upload_tag(context, data)
        document_id = adopt(self.hook, context, name, tag, self.log)
        if document_id is None:
            document_id = self.hook.upload_document(
                data,
                filename=name,
                doctype=self.doctype,
                content_type=self.content_type,
                metadata={**metadata, **tag},
            )
            self.log.info("Uploaded %s to Gini as document %s", name, document_id)
            record(context, document_id, tag)
        return document_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        return complete_processing_event(event)


def fail_on_error(document_id: str, progress: str) -> str:
    """``progress``, unless it is ERROR: that fails the task without retries, which cannot help."""
    if progress == "ERROR":
        raise AirflowFailException(f"Gini could not process document {document_id} (progress ERROR)")
    return progress


def complete_processing_event(event: dict[str, Any], on_timeout: type[Exception] = AirflowException) -> str:
    """The document id from a trigger event; raise on error and timeout events."""
    document_id = str(event.get("document_id"))
    raise_for_event(event, f"Gini document {document_id}", on_timeout)
    return document_id


class GiniGetExtractionsOperator(GiniBaseOperator):
    """Return a document's extractions (the API's JSON), or with ``flatten`` only the key values."""

    template_fields: Sequence[str] = ("gini_conn_id", "document_id")

    def __init__(self, *, document_id: str, flatten: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document_id = document_id
        self.flatten = flatten

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gini.pull.manifest import flatten

        with terminal_errors():
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
        with terminal_errors():
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
        with terminal_errors():
            try:
                self.hook.delete_document(self.document_id)
            except GiniNotFound:
                if not self.missing_ok:
                    raise
                self.log.info("Document %s was already gone", self.document_id)
