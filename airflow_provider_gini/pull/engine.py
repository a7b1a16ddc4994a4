"""The pull: list a window's documents and fetch each, concurrently, into object storage.

The listing (client/listing.py: each document of the window exactly once, on every paging
contract, or an error) runs in its own thread and feeds a bounded queue, so the workers never
wait for the next page. The workers share one hook, so one session and one token. At most a few
pages of documents are queued or in flight, and nothing keeps per-document data after it is
written, so memory stays flat however many documents the window holds.

One document's failure is that document's: it is recorded (outcome ``failed``, with the error
naming it) and the pull goes on. What ends the whole pull is what no other document can get
past: a refused credential, a configuration error, a broken destination, a run of failures with
no success between them, or ``stop()``. Documents still processing are not waited for by the
worker that found them: they are parked and looked at again, all together, every
``poll_interval``, under one ``pending_timeout`` for the whole pull.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from airflow_provider_gini.client.api import GiniAPI, unfinished
from airflow_provider_gini.client.errors import (
    GiniAuthError,
    GiniCancelled,
    GiniConfigError,
    GiniError,
    GiniNotFound,
    GiniProcessingError,
    is_terminal,
    shown,
)
from airflow_provider_gini.pull.manifest import ManifestLine, ManifestWriter, flatten
from airflow_provider_gini.pull.storage import (
    DOCUMENT,
    EXTRACTIONS,
    PROCESSED,
    PROCESSED_NAMES,
    Store,
    processed_name,
    safe_id,
)
from airflow_provider_gini.pull.window import Window

log = logging.getLogger("airflow_provider_gini.pull")
_END = object()
_UNREADABLE = object()
# Errors that end the whole pull: no other document can succeed past them.
_PULL_ENDING = (GiniAuthError, GiniConfigError, GiniCancelled)


@dataclass(frozen=True)
class PullOptions:
    include_extractions: bool = True
    include_processed: bool = False
    max_workers: int = 8
    page_size: int = 100
    pending_timeout: float = 300.0
    poll_interval: float = 2.0
    progress_every: float = 10.0
    # This many failed documents in a row, none pulled between them, end the pull: Gini (or the
    # path to it) is failing as a whole, and every further document would only wait out retries.
    failure_streak: int = 25
    # Once more documents than this have failed the task fails whatever else happens, so the
    # documents still processing are not waited for (None: always wait).
    max_failed_documents: int | None = None


@dataclass
class PullResult:
    """What a pull that ran to its end left undone, and which documents it settled."""

    failed: dict[str, str] = field(default_factory=dict)  # id -> the error, naming the document
    terminal: dict[str, bool] = field(default_factory=dict)  # id -> whether a retry cannot help
    pending: list[str] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)  # pulled, skipped, errored or gone
    lines: dict[str, ManifestLine] = field(default_factory=dict)  # the failed and pending ones

    @property
    def incomplete(self) -> list[str]:
        return [*self.failed, *self.pending]


@dataclass
class _Parked:
    """A document still processing, to be looked at again."""

    document_id: str
    listed: dict[str, Any]


class Progress:
    def __init__(self, every: float) -> None:
        self.every = every
        self.started = self.last = time.monotonic()
        self.done = 0
        self.listed = 0
        self.listing_done = False

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        total = f"{self.listed}" if self.listing_done else f"{self.listed}+ (still listing)"
        eta = f", ETA {(self.listed - self.done) / rate:.0f} s" if self.listing_done and rate > 0 else ""
        log.info("Gini pull: %d/%s documents, %.1f docs/s%s", self.done, total, rate, eta)


class Lister(threading.Thread):
    """Feeds the documents to pull, a bounded number ahead of the workers: first the ids given
    (earlier runs' unfinished documents), then the window's listing without those ids."""

    def __init__(
        self, api: GiniAPI, window: Window | None, ids: list[str], page_size: int, ahead: int
    ) -> None:
        super().__init__(name="gini-pull-list", daemon=True)
        self.listing = api.document_listing(window.start, window.end, page_size) if window else None
        self.ids = ids
        self.items: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def _documents(self) -> Iterator[dict[str, Any]]:
        given = set(self.ids)
        listed: Iterable[dict[str, Any]] = self.listing if self.listing is not None else ()
        listed = (doc for doc in listed if doc.get("id") not in given)
        return chain(({"id": document_id} for document_id in self.ids), listed)

    def _put(self, item: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for doc in self._documents():
                if not self._put(doc):
                    break
        except BaseException as exc:  # handed to the pulling thread, which raises it
            self.error = exc
        # The end mark goes in even when stopped, so the pulling thread is never left waiting.
        while True:
            try:
                self.items.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self.stopped.is_set():
                    self.items.get_nowait()


class Puller:
    def __init__(self, api: GiniAPI, store: Store, options: PullOptions) -> None:
        self.api = api
        self.store = store
        self.options = options
        self.stopping = threading.Event()
        self._warned: set[str] = set()

    def stop(self) -> None:
        """End the pull within seconds, from any thread: no new document is started, waits and
        retry backoffs end, and ``run`` raises GiniCancelled once the work under way is settled."""
        self.stopping.set()
        self.api.gini.cancel()

    def run(
        self, window: Window | None, manifest: ManifestWriter, retry: Iterable[str] = (), retried: bool = True
    ) -> PullResult:
        """Pull the documents ``retry`` names, then every document of ``window`` (None: none).
        ``retried``: those are earlier pulls' unfinished documents, whose failures do not count
        towards the failure streak (False: documents asked for by id, which do).

        Returns what is left undone; raises on what ends the pull (``_PULL_ENDING``, an error
        that is not Gini's, a streak of failures) and GiniCancelled after ``stop()``. Every
        document settled before either is in ``manifest``."""
        options = self.options
        progress = Progress(options.progress_every)
        result = PullResult()
        parked: dict[str, _Parked] = {}
        retry = list(retry)
        again = set(retry) if retried else set()
        lister = Lister(
            self.api, window, list(retry), options.page_size, max(options.page_size, 4 * options.max_workers)
        )
        in_flight: set[Future[Any]] = set()
        # Workers hand finished futures back through a queue: waiting on the in-flight set with
        # concurrent.futures.wait costs a lock and a waiter per future, per document.
        finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        streak = 0

        def submit(pool: ThreadPoolExecutor, work: Any, *args: Any) -> None:
            future = pool.submit(work, *args)
            in_flight.add(future)
            future.add_done_callback(finished.put)

        def settle() -> None:
            nonlocal streak
            future = finished.get()
            in_flight.discard(future)
            if future.cancelled():
                return
            if self.stopping.is_set() and (error := future.exception()) is not None:
                if not isinstance(error, GiniCancelled):
                    log.warning("After the pull was stopped, a document's work failed: %r", error)
                return  # stopped: that document is simply not done
            outcome = future.result()  # what ends the pull is raised here
            if isinstance(outcome, _Parked):
                parked[outcome.document_id] = outcome
                return
            line: ManifestLine = outcome
            parked.pop(line.document_id, None)
            manifest.add(line)
            if line.outcome == "failed":
                # Earlier pulls' unfinished documents, tried first, may all fail again: they
                # say nothing about whether Gini is failing now.
                streak += line.document_id not in again
                result.failed[line.document_id] = line.error or "failed"
                result.terminal[line.document_id] = line.terminal
                result.lines[line.document_id] = line
                if streak >= options.failure_streak:
                    raise GiniError(
                        f"{streak} documents in a row failed and none was pulled between them, so "
                        f"the pull stops; the last: {line.error}"
                    )
            else:
                streak = 0
                result.settled.add(line.document_id)
            progress.done += 1
            progress.tick()

        lister.start()
        pool = ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="gini-pull")
        try:
            while (doc := lister.items.get()) is not _END:
                progress.listed += 1
                submit(pool, self._one, doc)
                if len(in_flight) >= 2 * options.max_workers:
                    settle()
            if lister.error is not None:
                raise lister.error
            if lister.listing is not None and not self.stopping.is_set():
                log.info("Gini listing complete: %s", lister.listing.stats.describe())
            progress.listing_done = True
            while in_flight:
                settle()
            recheck = lambda item: submit(pool, self._recheck, item)  # noqa: E731
            self._wait_for_parked(result.failed, parked, recheck, settle, in_flight)
        except BaseException:
            # An error here, or execution_timeout's exception raised into this thread: the
            # workers' waits and retries end, bodies being read are cut off, and what they
            # finished still goes in the manifest. A worker still waiting for an answer's headers
            # is not waited for (it would hold the task up to its read timeout, past the
            # execution_timeout): its request ends at its deadline, and its document is simply
            # not done, as after a kill.
            self.stop()
            lister.stopped.set()
            pool.shutdown(wait=False, cancel_futures=True)
            done = [
                f.result()
                for f in list(in_flight)
                if f.done() and not f.cancelled() and f.exception() is None
            ]
            for line in done:
                if isinstance(line, ManifestLine):
                    manifest.add(line)
            raise
        pool.shutdown(wait=True)
        if self.stopping.is_set():
            raise GiniCancelled("The pull was stopped before it finished")
        for item in parked.values():  # still processing when the time ran out
            line = _pending_line(item.document_id, item.listed)
            manifest.add(line)
            result.pending.append(item.document_id)
            result.lines[item.document_id] = line
        progress.tick(force=True)
        return result

    def _wait_for_parked(
        self,
        failed: dict[str, str],
        parked: dict[str, _Parked],
        recheck: Any,
        settle: Any,
        in_flight: set[Future[Any]],
    ) -> None:
        """Look at every parked document again, together, every ``poll_interval``, until each has
        finished or the one ``pending_timeout`` of this pull has run out."""
        deadline = time.monotonic() + self.options.pending_timeout
        allowed = self.options.max_failed_documents
        if allowed is not None and len(failed) > allowed:
            return
        while parked and not self.stopping.is_set():
            for item in list(parked.values()):
                recheck(item)
            while in_flight:
                settle()
            remaining = deadline - time.monotonic()
            if not parked or remaining <= 0:
                return
            self.stopping.wait(min(self.options.poll_interval, remaining))

    def _one(self, listed: dict[str, Any]) -> ManifestLine | _Parked:
        return self._isolated(listed, lambda: self._first_look(listed))

    def _recheck(self, item: _Parked) -> ManifestLine | _Parked:
        return self._isolated(item.listed, lambda: self._look_again(item))

    def _isolated(self, listed: dict[str, Any], work: Any) -> ManifestLine | _Parked:
        """``work``'s outcome; a Gini error that concerns only this document is its ``failed``
        line, anything else ends the pull."""
        if self.stopping.is_set():
            raise GiniCancelled("The pull was stopped")
        try:
            outcome: ManifestLine | _Parked = work()
            return outcome
        except _PULL_ENDING:
            raise
        except GiniError as exc:
            if self.stopping.is_set():  # a request cut short by stop(): not the document's failure
                raise GiniCancelled("The pull was stopped") from exc
            doc_id = listed.get("id")
            line = ManifestLine(
                str(doc_id),
                "failed",
                _progress(listed),
                _name(listed),
                listed.get("creationDate"),
                error=str(exc),
            )
            # ERROR found while fetching (the document changed since it was listed) is settled
            # as errored by the next pull, so a new try can help.
            line.terminal = is_terminal(exc) and not isinstance(exc, GiniProcessingError)
            return line

    def _first_look(self, listed: dict[str, Any]) -> ManifestLine | _Parked:
        doc_id = safe_id(listed.get("id"))
        names = self.store.names(doc_id)
        if names is not None:
            stored = self._stored(doc_id, names)
            skipped = None if stored is None else self._skipped(doc_id, names, stored)
            if skipped is not None:
                return skipped
            self.store.remove_leftovers(doc_id, names)
        if "progress" not in listed:  # an id alone (an earlier run's unfinished document)
            return self._look_again(_Parked(doc_id, listed))
        if unfinished(doc_id, listed.get("progress"), self._warned):
            return _Parked(doc_id, listed)
        return self._fetch_or_gone(doc_id, listed, fresh=names is None)

    def _look_again(self, item: _Parked) -> ManifestLine | _Parked:
        try:
            doc = self.api.get_document(item.document_id)
        except GiniNotFound:
            listed = item.listed
            return ManifestLine(
                item.document_id, "gone", name=_name(listed), creation_date=listed.get("creationDate")
            )
        if unfinished(item.document_id, doc.get("progress"), self._warned):
            return _Parked(item.document_id, doc)
        return self._fetch_or_gone(item.document_id, doc, fresh=self.store.names(item.document_id) is None)

    def _fetch_or_gone(self, doc_id: str, doc: dict[str, Any], fresh: bool) -> ManifestLine:
        try:
            return self._fetch(doc_id, doc, fresh)
        except GiniNotFound:
            # Deleted between the listing and now: nothing to keep, and nothing lost. What was
            # written for it goes too, so no folder is left for a document that does not exist.
            self.store.remove_incomplete(doc_id)
            return ManifestLine(doc_id, "gone", doc.get("progress"), _name(doc), doc.get("creationDate"))

    def _fetch(self, doc_id: str, doc: dict[str, Any], fresh: bool) -> ManifestLine:
        if fresh:
            self.store.makedirs(doc_id)
        progress = doc.get("progress")
        files: list[str] = []
        flat: dict[str, str | None] = {}
        if progress == "COMPLETED":
            if self.options.include_extractions:
                extractions, content = self.api.get_extractions_as_sent(doc_id)
                self.store.write_bytes(f"{doc_id}/{EXTRACTIONS}", content)
                files.append(EXTRACTIONS)
                flat = flatten(extractions)
            if self.options.include_processed:
                name = self.store.write_atomic(
                    f"{doc_id}/{PROCESSED}",
                    lambda out: self.api.download_processed(doc_id, out),
                    name_for=lambda head: processed_name(head, doc),
                )
                files.append(name)
                if not fresh:  # one stored before under another name: a type it no longer has
                    for old in self.store.names(doc_id) or []:
                        if old.startswith(f"{PROCESSED}.") and old != name:
                            self.store.remove_quietly(f"{doc_id}/{old}")
        self.store.write_json(f"{doc_id}/{DOCUMENT}", doc)  # last: its presence marks the document complete
        files.insert(0, DOCUMENT)
        outcome = "pulled" if progress == "COMPLETED" else "errored"
        return ManifestLine(
            doc_id,
            outcome,
            progress,
            _name(doc),
            doc.get("creationDate"),
            [f"{doc_id}/{f}" for f in files],
            flat,
        )

    def _stored(self, doc_id: str, names: list[str]) -> dict[str, Any] | None:
        """The stored document when everything this pull wants of it is already there, else None."""
        if DOCUMENT not in names:
            return None
        doc = self._stored_json(doc_id, DOCUMENT)
        if not isinstance(doc, dict) or doc.get("id") != doc_id:
            if doc is not _UNREADABLE:
                self._unusable(doc_id, DOCUMENT, "not the JSON object of this document")
            return None
        if doc.get("progress") != "COMPLETED":
            return doc
        if self.options.include_extractions and EXTRACTIONS not in names:
            return None
        if self.options.include_processed and PROCESSED_NAMES.isdisjoint(names):
            return None
        return doc

    def _stored_json(self, doc_id: str, name: str) -> Any:
        """A stored JSON file's content; _UNREADABLE when it cannot be read or parsed, which the caller
        treats as not stored, so the document is pulled again and the file replaced: one damaged
        file (a full disk, a hand edit, a copy cut short) must not stop every later pull."""
        try:
            return self.store.read_json(f"{doc_id}/{name}")
        except (OSError, ValueError) as exc:  # ValueError: JSON and UTF-8 decoding errors
            if isinstance(exc, GiniConfigError):  # a link: refused, not repaired
                raise
            self._unusable(doc_id, name, f"{type(exc).__name__}: {exc}")
            return _UNREADABLE

    def _unusable(self, doc_id: str, name: str, why: str) -> None:
        log.warning(
            "Document %s: the stored %s is unusable (%s); pulling the document again to replace it",
            doc_id,
            name,
            why,
        )

    def _skipped(self, doc_id: str, names: list[str], doc: dict[str, Any]) -> ManifestLine | None:
        flat = {}
        if EXTRACTIONS in names:
            extractions = self._stored_json(doc_id, EXTRACTIONS)
            if extractions is _UNREADABLE:
                return None
            flat = flatten(extractions)
        files = sorted(f"{doc_id}/{name}" for name in names if not name.startswith("."))
        return ManifestLine(
            doc_id, "skipped", doc.get("progress"), _name(doc), doc.get("creationDate"), files, flat
        )


def _pending_line(doc_id: str, doc: dict[str, Any]) -> ManifestLine:
    return ManifestLine(doc_id, "pending", _progress(doc), _name(doc), doc.get("creationDate"))


def _progress(doc: dict[str, Any]) -> str | None:
    progress = doc.get("progress")
    return shown(progress, 40) if isinstance(progress, str) else None


def _name(doc: dict[str, Any]) -> str | None:
    name = doc.get("name")
    return name if isinstance(name, str) else None
