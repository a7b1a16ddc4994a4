"""The pull: list a window's documents and fetch each, concurrently, into object storage.

The listing streams (cursor pages, stopping at the window's start) into a bounded pool of
workers that share one hook, so one session and one token. At most ``2 * max_workers``
documents are in flight, and nothing keeps per-document data after it is written, so memory
stays flat however many documents the window holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_gini.client.api import GiniAPI
from airflow_provider_gini.client.errors import GiniError, GiniNotFound, GiniProcessingTimeout
from airflow_provider_gini.pull.manifest import ManifestLine, ManifestWriter, flatten
from airflow_provider_gini.pull.storage import (
    DOCUMENT,
    EXTRACTIONS,
    document_dir,
    processed_name,
    read_json,
    remove_leftovers,
    write_atomic,
    write_json,
)
from airflow_provider_gini.pull.window import Window

log = logging.getLogger("airflow_provider_gini.pull")


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


class Puller:
    def __init__(self, api: GiniAPI, root: ObjectStoragePath, options: PullOptions) -> None:
        self.api = api
        self.root = root
        self.options = options

    def run(self, window: Window, manifest: ManifestWriter) -> list[str]:
        """Pull every document of ``window``; returns the ids still PENDING at the end."""
        options = self.options
        progress = Progress(options.progress_every)
        pending: list[str] = []
        listing: Iterable[dict[str, Any]] = self.api.iter_documents(
            window.start, window.end, options.page_size
        )
        with ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="gini-pull") as pool:
            in_flight: set[Future[ManifestLine]] = set()

            def settle(done: set[Future[ManifestLine]]) -> None:
                for future in done:
                    line = future.result()  # a worker's unexpected error ends the pull here
                    manifest.add(line)
                    if line.outcome == "pending":
                        pending.append(line.document_id)
                    progress.done += 1
                progress.tick()

            try:
                for doc in listing:
                    progress.listed += 1
                    in_flight.add(pool.submit(self.one, doc))
                    if len(in_flight) >= 2 * options.max_workers:
                        done, in_flight = _wait_some(in_flight)
                        settle(done)
                progress.listing_done = True
                while in_flight:
                    done, in_flight = _wait_some(in_flight)
                    settle(done)
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise
        progress.tick(force=True)
        return pending

    def one(self, listed: dict[str, Any]) -> ManifestLine:
        folder = document_dir(self.root, listed.get("id"))
        doc_id = folder.name
        if self._complete(folder):
            return self._skipped(folder, doc_id)
        remove_leftovers(folder)
        doc = listed
        if doc.get("progress") == "PENDING":
            try:
                doc = self._await(doc_id)
            except GiniNotFound:
                return ManifestLine(
                    doc_id, "gone", name=_name(listed), creation_date=listed.get("creationDate")
                )
            if doc.get("progress") == "PENDING":
                return ManifestLine(doc_id, "pending", "PENDING", _name(doc), doc.get("creationDate"))
        try:
            return self._fetch(folder, doc)
        except GiniNotFound:
            # Deleted between the listing and now: nothing to keep, and nothing lost.
            return ManifestLine(doc_id, "gone", doc.get("progress"), _name(doc), doc.get("creationDate"))

    def _fetch(self, folder: ObjectStoragePath, doc: dict[str, Any]) -> ManifestLine:
        folder.mkdir(parents=True, exist_ok=True)
        progress = doc.get("progress")
        files: list[str] = []
        flat: dict[str, str | None] = {}
        if progress == "COMPLETED":
            if self.options.include_extractions:
                extractions = self.api.get_extractions(folder.name)
                write_json(folder / EXTRACTIONS, extractions)
                files.append(EXTRACTIONS)
                flat = flatten(extractions)
            if self.options.include_processed:
                name = processed_name(doc)
                write_atomic(folder / name, lambda out: self.api.download_processed(folder.name, out))
                files.append(name)
        write_json(folder / DOCUMENT, doc)  # last: its presence marks the document complete
        files.insert(0, DOCUMENT)
        outcome = "pulled" if progress == "COMPLETED" else "errored"
        return ManifestLine(
            folder.name,
            outcome,
            progress,
            _name(doc),
            doc.get("creationDate"),
            [f"{folder.name}/{f}" for f in files],
            flat,
        )

    def _complete(self, folder: ObjectStoragePath) -> bool:
        document = folder / DOCUMENT
        if not document.exists():
            return False
        if read_json(document).get("progress") != "COMPLETED":
            return True
        if self.options.include_extractions and not (folder / EXTRACTIONS).exists():
            return False
        if self.options.include_processed:
            return any(entry.name.startswith("processed.") for entry in folder.iterdir())
        return True

    def _skipped(self, folder: ObjectStoragePath, doc_id: str) -> ManifestLine:
        doc = read_json(folder / DOCUMENT)
        flat = flatten(read_json(folder / EXTRACTIONS)) if (folder / EXTRACTIONS).exists() else {}
        files = sorted(
            f"{doc_id}/{entry.name}" for entry in folder.iterdir() if not entry.name.startswith(".")
        )
        return ManifestLine(
            doc_id, "skipped", doc.get("progress"), _name(doc), doc.get("creationDate"), files, flat
        )

    def _await(self, doc_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.options.pending_timeout
        while True:
            doc = self.api.get_document(doc_id)
            remaining = deadline - time.monotonic()
            if doc.get("progress") != "PENDING" or remaining <= 0:
                return doc
            time.sleep(min(self.options.poll_interval, remaining))


def _wait_some(
    futures: set[Future[ManifestLine]],
) -> tuple[set[Future[ManifestLine]], set[Future[ManifestLine]]]:
    done, rest = wait(futures, return_when=FIRST_COMPLETED)
    return set(done), set(rest)


def _name(doc: dict[str, Any]) -> str | None:
    name = doc.get("name")
    return name if isinstance(name, str) else None


def pending_error(pending: list[str], timeout: float) -> GiniError:
    shown = ", ".join(pending[:20]) + (f" and {len(pending) - 20} more" if len(pending) > 20 else "")
    return GiniProcessingTimeout(
        f"{len(pending)} document(s) were still PENDING after waiting {timeout:g} s: {shown}. "
        "They are in the manifest as 'pending'; a retry of this task pulls them.",
        document_ids=pending,
    )
