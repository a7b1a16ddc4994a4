"""The pull: list a window's documents and fetch each, concurrently, into object storage.

The listing (client/listing.py: each document of the window exactly once, on every paging
contract, or an error) runs in its own thread and feeds a bounded queue, so the workers never
wait for the next page. The workers share one hook, so one session and one token. At most a few
pages of documents are queued or in flight, and nothing keeps per-document data after it is
written, so memory stays flat however many documents the window holds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_provider_gini.client.api import FINISHED, GiniAPI
from airflow_provider_gini.client.errors import GiniError, GiniNotFound, GiniProcessingTimeout, shown
from airflow_provider_gini.pull.manifest import ManifestLine, ManifestWriter, flatten
from airflow_provider_gini.pull.storage import DOCUMENT, EXTRACTIONS, Store, processed_name, safe_id
from airflow_provider_gini.pull.window import Window

log = logging.getLogger("airflow_provider_gini.pull")
_END = object()


@dataclass(frozen=True)
class PullOptions:
    include_extractions: bool = True
    include_processed: bool = False
    max_workers: int = 8
    page_size: int = 100
    pending_timeout: float = 300.0
    poll_interval: float = 2.0
    progress_every: float = 10.0


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
    """Pages through the window ahead of the workers, a bounded number of documents ahead."""

    def __init__(self, api: GiniAPI, window: Window, page_size: int, ahead: int) -> None:
        super().__init__(name="gini-pull-list", daemon=True)
        self.listing = api.document_listing(window.start, window.end, page_size)
        self.items: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for doc in self.listing:
                while not self.stopped.is_set():
                    try:
                        self.items.put(doc, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stopped.is_set():
                    return
        except BaseException as exc:  # handed to the pulling thread, which raises it
            self.error = exc
        self.items.put(_END)


class Puller:
    def __init__(self, api: GiniAPI, store: Store, options: PullOptions) -> None:
        self.api = api
        self.store = store
        self.options = options

    def run(self, window: Window, manifest: ManifestWriter) -> list[str]:
        """Pull every document of ``window``; returns the ids still PENDING at the end."""
        options = self.options
        progress = Progress(options.progress_every)
        pending: list[str] = []
        lister = Lister(
            self.api, window, options.page_size, ahead=max(options.page_size, 4 * options.max_workers)
        )
        lister.start()
        in_flight: set[Future[ManifestLine]] = set()
        # Workers hand finished futures back through a queue: waiting on the in-flight set with
        # concurrent.futures.wait costs a lock and a waiter per future, per document.
        finished: queue.SimpleQueue[Future[ManifestLine]] = queue.SimpleQueue()

        def settle() -> None:
            future = finished.get()
            in_flight.discard(future)
            line = future.result()  # a worker's unexpected error ends the pull here
            manifest.add(line)
            if line.outcome == "pending":
                pending.append(line.document_id)
            progress.done += 1
            progress.tick()

        with ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="gini-pull") as pool:
            try:
                while (doc := lister.items.get()) is not _END:
                    progress.listed += 1
                    future = pool.submit(self.one, doc)
                    in_flight.add(future)
                    future.add_done_callback(finished.put)
                    if len(in_flight) >= 2 * options.max_workers:
                        settle()
                if lister.error is not None:
                    raise lister.error
                progress.listing_done = True
                log.info("Gini listing complete: %s", lister.listing.stats.describe())
                while in_flight:
                    settle()
            except BaseException:
                lister.stopped.set()
                for future in in_flight:
                    future.cancel()
                raise
        progress.tick(force=True)
        return pending

    def one(self, listed: dict[str, Any]) -> ManifestLine:
        doc_id = safe_id(listed.get("id"))
        names = self.store.names(doc_id)
        if names is not None:
            stored = self._stored(doc_id, names)
            if stored is not None:
                return self._skipped(doc_id, names, stored)
            self.store.remove_leftovers(doc_id, names)
        doc = listed
        if doc.get("progress") not in FINISHED:  # PENDING, or a progress Gini does not document
            try:
                doc = self._await(doc_id)
            except GiniNotFound:
                return ManifestLine(
                    doc_id, "gone", name=_name(listed), creation_date=listed.get("creationDate")
                )
            if doc.get("progress") not in FINISHED:
                progress = doc.get("progress")
                return ManifestLine(
                    doc_id,
                    "pending",
                    shown(progress, 40) if isinstance(progress, str) else None,
                    _name(doc),
                    doc.get("creationDate"),
                )
        try:
            return self._fetch(doc_id, doc, fresh=names is None)
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
                name = processed_name(doc)
                self.store.write_atomic(
                    f"{doc_id}/{name}", lambda out: self.api.download_processed(doc_id, out)
                )
                files.append(name)
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
        doc: dict[str, Any] = self.store.read_json(f"{doc_id}/{DOCUMENT}")
        if doc.get("progress") != "COMPLETED":
            return doc
        if self.options.include_extractions and EXTRACTIONS not in names:
            return None
        if self.options.include_processed and not any(n.startswith("processed.") for n in names):
            return None
        return doc

    def _skipped(self, doc_id: str, names: list[str], doc: dict[str, Any]) -> ManifestLine:
        flat = flatten(self.store.read_json(f"{doc_id}/{EXTRACTIONS}")) if EXTRACTIONS in names else {}
        files = sorted(f"{doc_id}/{name}" for name in names if not name.startswith("."))
        return ManifestLine(
            doc_id, "skipped", doc.get("progress"), _name(doc), doc.get("creationDate"), files, flat
        )

    def _await(self, doc_id: str) -> dict[str, Any]:
        return self.api.poll_document(doc_id, self.options.pending_timeout, self.options.poll_interval)


def _name(doc: dict[str, Any]) -> str | None:
    name = doc.get("name")
    return name if isinstance(name, str) else None


def pending_error(pending: list[str], timeout: float) -> GiniError:
    shown = ", ".join(pending[:20]) + (f" and {len(pending) - 20} more" if len(pending) > 20 else "")
    return GiniProcessingTimeout(
        f"{len(pending)} document(s) were still PENDING (or another unfinished progress) after waiting "
        f"{timeout:g} s: {shown}. "
        "They are in the manifest as 'pending'; a retry of this task pulls them.",
        document_ids=pending,
    )
