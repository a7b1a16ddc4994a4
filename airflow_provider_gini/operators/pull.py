"""GiniPullDocumentsOperator: pull a window of documents into storage, incrementally by default."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import Asset, AssetAlias, Context, ObjectStoragePath

from airflow_provider_gini._compat import AirflowFailException, AirflowSkipException
from airflow_provider_gini.client.api import SAFE_ID
from airflow_provider_gini.client.errors import GiniConfigError, GiniPullIncomplete, shown
from airflow_provider_gini.client.settings import checked_rate
from airflow_provider_gini.operators.base import GiniBaseOperator, terminal_errors
from airflow_provider_gini.operators.lineage import PullLineage, operator_lineage
from airflow_provider_gini.pull.arrivals import announcements
from airflow_provider_gini.pull.engine import Puller, PullOptions, PullResult
from airflow_provider_gini.pull.manifest import ManifestWriter, manifest_name
from airflow_provider_gini.pull.state import STATE, PullState, StateFile, default_key
from airflow_provider_gini.pull.storage import (
    FILE_MODE,
    FOLDER_MODE,
    Store,
    checked_mode,
    destination_path,
)
from airflow_provider_gini.pull.window import moment, plan_window

MANIFESTS = "_manifests"
SHOWN_IDS = 20
MAX_IDS_TEXT = 1_000_000  # characters of a rendered document_ids
XCOM_IDS = 100


class GiniPullDocumentsOperator(GiniBaseOperator):
    """Pull every document created in a window, with its extractions (and, with
    ``include_processed``, its processed file), into ``destination``.

    **Window.** By default a pull is incremental: it runs from the *watermark* (how far earlier
    pulls into this destination have gone completely, kept in the destination) to the end of the
    run (its ``data_interval_end``, or ``run_after`` for runs without a logical date: asset-
    triggered, triggered without a logical date, ``TriggerDagRunOperator(run_after=...)``).
    Scheduled, catch-up, backfill, manual and asset-triggered runs so cover each instant once,
    whichever of them succeeds and whatever Airflow thinks of a run whose pull failed. A run
    whose end is not past the watermark (a backfill or a cleared run of a covered date) pulls
    nothing new. The first pull has no watermark and needs ``start`` (a date-time) or
    ``full_history=True``.

    With ``created_after`` (and optionally ``created_before``) the window is explicit,
    ``[created_after, created_before or the run's end)``; it moves the watermark only with
    ``advance_watermark=True``. All four accept datetimes, ISO strings and templates. A window
    that renders empty is refused with the template to use instead.

    ``watermark_key`` (default ``<dag_id>/<task_id>``, plus ``/<gini_conn_id>`` when mapped: not
    the map index, which a changed list would hand to another account) names the watermark, so
    two pulls into one destination keep their own. The watermark never passes
    ``watermark_lag`` seconds (default 300) before the listing began: a window ending in the
    future, a document Gini lists late or a clock that differs from Gini's cannot leave a
    document behind it; the next pull lists that overlap again and skips what is stored.

    **One document's failure is its own.** A document that fails after the client's retries is
    in the manifest as ``failed``, with the error naming it, and the pull goes on. At the end the
    task fails naming the failed and still-processing documents, unless there are at most
    ``max_failed_documents``: then the watermark moves on and later pulls try them again first
    until each is done. Otherwise the watermark stays, so the next try (or run) covers the same
    window again, skipping what is stored. A document that fails again in a later run does not
    count again: it failed its first run, and waits in the state without holding back the rest.
    Errors a new try cannot fix (a refused password or client secret, a wrong argument, a
    document Gini refuses) end the task without retries.

    **Destination.** Anything ``ObjectStoragePath`` understands (a local path, ``file://``,
    ``s3://``, ...; ``destination_conn_id`` for its credentials). Per document it writes
    ``<destination>/<id>/document.json``, ``extractions.json`` and ``processed.<ext>`` (the
    extension by the media type of the processed file: pdf, jpg, png, gif, tiff, txt, else bin;
    never the uploader's file name); per task
    instance and try ``<destination>/_manifests/manifest-<run_id>.<task_id>[.<map_index>]
    [.try<N>].jsonl`` (one line per document: its outcome,
    pulled, skipped, errored, pending, gone or failed, and key extractions); and the watermark
    in ``<destination>/_state/``. On a local destination the pull writes through no symbolic
    link (a destination, document folder or replaced file that is one is refused) and creates
    files with ``file_mode`` (default ``0o600``) and folders with ``folder_mode`` (default
    ``0o700``), whatever the umask; files it does not (re)write keep their modes. A stored
    ``document.json`` or ``extractions.json`` that cannot be read is pulled again, with a warning.

    **Nothing half-written, and a quick stop.** Files are written under temporary names and
    renamed; ``document.json`` comes last and marks a document complete, so a rerun skips it.
    Documents still processing are looked at again every ``poll_interval`` seconds, all of them
    together, for at most ``pending_timeout`` seconds in all. ``execution_timeout``, SIGTERM
    (``on_kill``) and an error that ends the pull stop it within seconds, and the manifest of
    what was done is still written.

    **Side by side.** Pulls into one destination never remove each other's files, and pulls with
    one watermark key take turns (pull/lease.py).

    **Kind to Gini.** ``max_workers`` threads fetch documents at once. When Gini answers 429
    (too many requests), the pull retries and paces itself to the rate Gini accepted, instead of
    retrying into the limit, and logs how often it was refused; ``max_requests_per_second`` sets
    a ceiling from the start. Pulls on one account share its limit: an Airflow pool caps how
    many run at once across the deployment.

    **Lineage.** The destination is the task's outlet Asset, or, where only the worker knows it
    (a template, a relative path), an alias named for the DAG and task that each
    task instance attaches it to. Its URI never holds the connection id. With the ``openlineage`` extra,
    the run's OpenLineage events name the Gini API as input and the destination as output.

    **By id.** ``document_ids`` (a list, or a JSON list or comma-separated string from a
    template) pulls exactly those documents; ``ids_from_asset_events=True`` takes them from the
    run's triggering asset events of GiniNewDocumentsTrigger (triggers/arrivals.py). Such a pull
    has no window and keeps no watermark; every id is in the manifest, and the task fails when
    more than ``max_failed_documents`` of them are failed or still processing.

    Returns (XCom) ``{"manifest", "pulled", "skipped", "errored", "pending", "gone", "failed",
    "window", "watermark", "unfinished"}`` (``window`` None for a pull by id).
    """

    template_fields: Sequence[str] = (
        "gini_conn_id",
        "destination",
        "start",
        "created_after",
        "created_before",
        "watermark_key",
        "include_processed",
        "document_ids",
    )

    def __init__(
        self,
        *,
        destination: str | ObjectStoragePath,
        start: Any = None,
        full_history: bool = False,
        created_after: Any = None,
        created_before: Any = None,
        watermark_key: str | None = None,
        advance_watermark: bool = False,
        max_failed_documents: int = 0,
        watermark_lag: float = 300.0,
        include_extractions: bool = True,
        include_processed: bool | str = False,
        max_workers: int = 8,
        max_requests_per_second: float | None = None,
        page_size: int = 100,
        pending_timeout: float = 300.0,
        poll_interval: float = 2.0,
        destination_conn_id: str | None = None,
        file_mode: int = FILE_MODE,
        folder_mode: int = FOLDER_MODE,
        document_ids: Any = None,
        ids_from_asset_events: bool = False,
        **kwargs: Any,
    ) -> None:
        by_id = document_ids is not None or ids_from_asset_events
        if document_ids is not None and ids_from_asset_events:
            raise ValueError("Give document_ids or ids_from_asset_events=True, not both")
        windowed = (start, created_after, created_before, watermark_key)
        if by_id and (any(v is not None for v in windowed) or full_history or advance_watermark):
            raise ValueError(
                "A pull by document id has no window and no watermark: drop start, full_history, "
                "created_after, created_before, watermark_key and advance_watermark"
            )
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_requests_per_second is not None:
            checked_rate(max_requests_per_second, "max_requests_per_second")
        if not 1 <= page_size <= 250:
            raise ValueError("page_size must be between 1 and 250")
        if max_failed_documents < 0:
            raise ValueError("max_failed_documents must be 0 or more")
        if watermark_lag < 0:
            raise ValueError("watermark_lag must be 0 or more")
        checked_mode(file_mode, "file_mode", 0o600)
        checked_mode(folder_mode, "folder_mode", 0o700)
        # Lineage: the destination is the outlet. One that is only known on the worker (a
        # template, a relative or ~ path) is declared through an alias, and the Asset of where the
        # data landed is attached to it in execute().
        if "outlets" not in kwargs:
            known = _asset_uri(destination)
            kwargs["outlets"] = [Asset(known) if known else destination_alias(kwargs)]
        super().__init__(**kwargs)
        self.destination = destination
        self.start = start
        self.full_history = full_history
        self.created_after = created_after
        self.created_before = created_before
        self.watermark_key = watermark_key
        self.advance_watermark = advance_watermark
        self.max_failed_documents = max_failed_documents
        self.watermark_lag = watermark_lag
        self.include_extractions = include_extractions
        self.include_processed = include_processed
        self.max_workers = max_workers
        self.page_size = page_size
        self.pending_timeout = pending_timeout
        self.poll_interval = poll_interval
        self.destination_conn_id = destination_conn_id
        self.file_mode = file_mode
        self.folder_mode = folder_mode
        self.document_ids = document_ids
        self.ids_from_asset_events = ids_from_asset_events
        # Every worker and the lister hold a connection at once: a smaller pool would make them
        # queue for connections (and urllib3 warn that the pool is full).
        self.hook_params["pool_size"] = max(int(self.hook_params.get("pool_size", 0)), max_workers + 2)
        if max_requests_per_second is not None:
            self.hook_params["max_requests_per_second"] = max_requests_per_second
        self._lineage: PullLineage | None = None
        self._puller: Puller | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        self._stopping = threading.Event()
        with terminal_errors():
            root = destination_path(self.destination, self.destination_conn_id)
            store = Store(root, self.file_mode, self.folder_mode)
            key = self.watermark_key or default_key(context, self.gini_conn_id)
            advance = _flag(self.advance_watermark, "advance_watermark")
            ids = self._requested_ids(context, store.uri())
            # The same reading of created_after as the window rule's: None, "" and "None" are unset.
            stateful = ids is None and (moment(self.created_after, "created_after") is None or advance)
            # The lease comes before any other write: it is what tells other pulls this one is
            # alive (pull/lease.py). Pulls with one watermark key take turns.
            store.ensure_writable(key if stateful else None, holder=f"{context.get('run_id')} {self.task_id}")
            try:
                swept = store.sweep((MANIFESTS, STATE))
                if swept:
                    self.log.info("Removed %d file(s) that killed pulls left in %s", swept, root)
                if store.lease is not None:
                    store.lease.wait_turn(self._stopping, self._waiting)
                return self._pull(context, store, StateFile(store, key), stateful, advance, ids)
            finally:
                store.close()

    def _waiting(self, other: Any) -> None:
        self.log.info(
            "Waiting for the pull of %s (pid %s on %s), which holds watermark key %r: pulls with "
            "one key take turns, so each plans from the watermark the one before it left",
            other.holder,
            other.pid,
            other.host,
            other.key,
        )

    def on_kill(self) -> None:
        """SIGTERM or execution_timeout: the pull stops within seconds, its manifest written.
        Airflow calls this from its signal handler on the thread that may hold the lock stop()
        takes, so stop() runs on a thread of its own."""
        stopping = getattr(self, "_stopping", None)
        if stopping is not None:
            stopping.set()
        if self._puller is not None:
            threading.Thread(target=self._puller.stop, name="gini-pull-stop", daemon=True).start()

    def _requested_ids(self, context: Context, destination: str) -> list[str] | None:
        """The ids of a pull by id (document_ids, or the triggering asset events'), else None."""
        if not _flag(self.ids_from_asset_events, "ids_from_asset_events"):
            return None if self.document_ids is None else requested_ids(self.document_ids)
        events = context.get("triggering_asset_events") or {}
        # Only this pull's account: a DAG scheduled on the watchers of two accounts has a pull
        # for each, and another account's ids would only be "gone" here.
        extras = (getattr(e, "extra", None) for seen in events.values() for e in seen)
        ours, others = announcements(extras, self.gini_conn_id)
        if others:
            self.log.info(
                "%d new-documents event(s) of other connections than %r left to their own pulls",
                others,
                self.gini_conn_id,
            )
        elsewhere = sorted(
            {str(b.get("destination")) for b in ours if b.get("destination") not in (None, destination)}
        )
        if elsewhere:
            self.log.warning(
                "The trigger looks for stored documents in %s, this pull stores them in %s: it will "
                "keep announcing them. Give GiniNewDocumentsTrigger this pull's destination",
                ", ".join(elsewhere),
                destination,
            )
        ids = list(dict.fromkeys(i for b in ours for i in b["document_ids"]))
        if not ids:
            raise AirflowSkipException(
                f"No GiniNewDocumentsTrigger event of connection {self.gini_conn_id!r} triggered this run, "
                "so there is nothing to pull: ids_from_asset_events=True takes its documents from those "
                "events only"
            )
        return ids

    def _pull(
        self,
        context: Context,
        store: Store,
        state_file: StateFile,
        stateful: bool,
        advance: bool,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        root = store.root
        state = state_file.load() if stateful else PullState(state_file.key)
        run_id = context.get("run_id")
        run_id = run_id if isinstance(run_id, str) else None
        shown_window: list[str | None] = [None, None]
        if ids is not None:
            plan, retry = None, ids
            described = f"{len(ids)} document(s) by id"
        else:
            plan = plan_window(
                context,
                created_after=self.created_after,
                created_before=self.created_before,
                start=self.start,
                full_history=_flag(self.full_history, "full_history"),
                advance_watermark=advance,
                watermark=state.start_for(run_id),
            )
            retry = sorted(state.outstanding)
            shown_window = [plan.end.isoformat(), plan.end.isoformat()]
            if plan.window is not None:
                shown_window = plan.window.as_strings()
            described = (
                f"created in {plan.describe()}, and {len(retry)} unfinished document(s) of earlier pulls,"
            )
        ti = context.get("ti")
        try_number = getattr(ti, "try_number", 1)
        try_number = try_number if isinstance(try_number, int) else 1
        map_index = getattr(ti, "map_index", -1)
        task = self.task_id + (f".{map_index}" if isinstance(map_index, int) and map_index >= 0 else "")
        name = manifest_name(run_id, shown_window, try_number, task)
        manifest = ManifestWriter(store, f"{MANIFESTS}/{name}")
        self.log.info(
            "Pulling Gini documents %s into %s (watermark %s: %s)",
            described,
            root,
            state_file.key,
            state.watermark.isoformat() if state.watermark else "none yet",
        )
        self._lineage = PullLineage(
            self.hook.gini.settings.api_url, store.uri(), plan.describe() if plan else described
        )
        self._puller = Puller(self.hook, store, self._options())
        listed_at = datetime.now(timezone.utc)
        try:
            result = self._puller.run(
                plan.window if plan else None, manifest, retry, retried=plan is not None
            )
        except BaseException:
            # What was done is recorded; the watermark stays, so the next try covers it all again.
            manifest.commit() if any(manifest.counts.values()) else manifest.abort()
            raise
        manifest.commit()
        counts = manifest.counts
        # A document that failed an earlier run already failed that run; now it waits in the
        # state, tried first by every pull, and does not hold the watermark (or the DAG) back.
        new = [i for i in result.incomplete if not stateful or state.is_new(i, run_id)]
        acceptable = len(new) <= self.max_failed_documents
        if stateful and plan is not None:
            # Never past what the listing can have seen: a window that ends in the future, a
            # document Gini lists a little late, or a clock that differs from Gini's would
            # otherwise leave documents behind the watermark. The next pull lists the overlap
            # again and skips what is stored.
            to = min(plan.end, listed_at - timedelta(seconds=self.watermark_lag))
            state = state.advanced(result, to if plan.advances and acceptable else None, run_id, manifest.uri)
            state_file.save(state)
        self._lineage = dataclasses.replace(self._lineage, pulled=counts.get("pulled", 0))
        self.log.info(
            "Gini pull done: %s; manifest %s; watermark %s",
            ", ".join(f"{v} {k}" for k, v in counts.items()),
            manifest.uri,
            state.watermark.isoformat() if stateful and state.watermark else "not kept (explicit window)",
        )
        throttle = self.hook.gini.throttle
        if throttle.refused:
            self.log.warning(
                "Gini answered %s. Each was retried; the pull paced itself to what Gini accepts. "
                "Pulls that share an account share its limit: cap how many run at once with an "
                "Airflow pool, or set max_requests_per_second",
                throttle.describe(),
            )
        alias = self._destination_alias()
        if alias is not None and "outlet_events" in context:
            context["outlet_events"][alias].add(Asset(store.uri()))
        if not acceptable:
            raise incomplete_error(result, self.max_failed_documents, self.pending_timeout, stateful)
        if result.incomplete:
            self.log.warning(
                "%d document(s) unfinished (%d of them left so by earlier runs), within "
                "max_failed_documents=%d; %s: %s",
                len(result.incomplete),
                len(result.incomplete) - len(new),
                self.max_failed_documents,
                "later pulls try them again first"
                if stateful
                else "they are in the manifest; pull this window again to retry them",
                _ids(result.incomplete),
            )
        return {
            "manifest": manifest.uri,
            **counts,
            "window": shown_window if plan else None,
            "watermark": state.watermark.isoformat() if stateful and state.watermark else None,
            # The first ids only, so XCom stays small; the manifest and the state have them all.
            "unfinished": result.incomplete[:XCOM_IDS],
        }

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """A mapped pull never runs ``__init__`` where the DAG is parsed, so its outlet (one Asset
        event per mapped instance) is declared here."""
        if "outlets" not in kwargs:
            # The Asset itself where the DAG file tells where the data lands: instances that
            # finish together through one alias can race in Airflow's registration of the
            # alias's first Asset ("UNIQUE constraint failed: asset_alias_asset", seen on 3.3).
            known = _asset_uri(kwargs.get("destination"))
            kwargs["outlets"] = [Asset(known) if known else destination_alias(kwargs)]
        return super().partial(**kwargs)

    def _destination_alias(self) -> AssetAlias | None:
        name = alias_name(self.dag_id, self.task_id)
        return next((o for o in self.outlets if isinstance(o, AssetAlias) and o.name == name), None)

    def _options(self) -> PullOptions:
        return PullOptions(
            include_extractions=_flag(self.include_extractions, "include_extractions"),
            include_processed=_flag(self.include_processed, "include_processed"),
            max_workers=self.max_workers,
            page_size=self.page_size,
            pending_timeout=self.pending_timeout,
            poll_interval=self.poll_interval,
            max_failed_documents=self.max_failed_documents,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage listener after execute(); None if execute() never began."""
        return None if self._lineage is None else operator_lineage(self._lineage)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)


def incomplete_error(result: PullResult, allowed: int, pending_timeout: float, kept: bool) -> Exception:
    """The error for a pull that left more than ``allowed`` documents unfinished: final
    (AirflowFailException) only when every one of them failed in a way a new try cannot fix."""
    parts = []
    if result.failed:
        first = next(iter(result.failed.values()))
        parts.append(f"{len(result.failed)} failed ({_ids(list(result.failed))}; the first: {first})")
    if result.pending:
        parts.append(
            f"{len(result.pending)} still processing after {pending_timeout:g} s ({_ids(result.pending)})"
        )
    again = (
        "the watermark stays, so the next try or run covers this window again and"
        if kept
        else "a retry of this task"
    )
    message = (
        f"The pull left {len(result.incomplete)} document(s) unfinished, more than "
        f"max_failed_documents={allowed}: {'; '.join(parts)}. Everything else is stored and in "
        f"the manifest; {again} pulls only what is missing."
    )
    if not result.pending and all(result.terminal.values()):
        return AirflowFailException(message + " Not retried: another try cannot succeed.")
    return GiniPullIncomplete(message, failed=result.failed, pending=result.pending)


def requested_ids(value: Any) -> list[str]:
    """document_ids as given: a list, or a rendered template (a JSON or Python list, or ids
    separated by commas or spaces); each must be a plain id. Order kept, duplicates dropped."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_IDS_TEXT:
            raise GiniConfigError(f"document_ids rendered to {len(text)} characters, over {MAX_IDS_TEXT}")
        if text.startswith("["):
            try:
                # JSON, or Python's repr of a list, which is how Jinja renders one.
                value = json.loads(text) if '"' in text or "'" not in text else ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise GiniConfigError(
                    f"document_ids rendered to {shown(text, 80)!r}, which is not a list of ids: "
                    "give a list, or ids separated by commas"
                ) from None
        else:
            value = [i for i in re.split(r"[\s,]+", text) if i]
    if not isinstance(value, (list, tuple)) or not value or value in (["None"], ["null"]):
        raise GiniConfigError(
            f"document_ids must name at least one document, got {shown(repr(value), 80)}: a template "
            "that rendered nothing (or None) pulls nothing by mistake"
        )
    bad = [i for i in value if not isinstance(i, str) or not SAFE_ID.fullmatch(i)]
    if bad:
        raise GiniConfigError(f"document_ids holds what is not a Gini document id: {shown(repr(bad[0]), 80)}")
    return list(dict.fromkeys(value))


def _ids(ids: list[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(ids[:SHOWN_IDS]) + more


def _flag(value: Any, name: str) -> bool:
    """A boolean argument, also when a template rendered it as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise GiniConfigError(f"{name} must be true or false, got {value!r}")


def _asset_uri(destination: Any) -> str | None:
    """The destination's Asset URI when the DAG file alone tells where the data lands (a URL
    without template, without the user part a connection id would be; an absolute path),
    None when only the worker can tell."""
    if not isinstance(destination, str) or "{{" in destination or "{%" in destination:
        return None
    value = destination.strip()
    if "://" in value:
        parts = urlsplit(value)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return "file://" + os.path.normpath(value) if os.path.isabs(value) else None


def alias_name(dag_id: str | None, task_id: str) -> str:
    """One alias per DAG and task: alias names are global in Airflow."""
    return f"gini-pull-destination:{dag_id or '-'}/{task_id}"


def destination_alias(kwargs: dict[str, Any]) -> AssetAlias:
    """The alias of the pull that ``kwargs`` (an operator's or a ``partial``'s) make, named
    for its DAG and its task id as Airflow will know it (with its task group's prefix)."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext, TaskGroupContext

    dag = kwargs.get("dag") or DagContext.get_current()
    group = kwargs.get("task_group") or (TaskGroupContext.get_current(dag) if dag else None)
    task_id = str(kwargs.get("task_id", "pull"))
    if group is not None:
        task_id = group.child_id(task_id)
    return AssetAlias(alias_name(getattr(dag, "dag_id", None), task_id))
