"""GiniNewDocumentsTrigger: an event trigger for ``AssetWatcher`` that fires when documents
arrive in a Gini account, so a DAG scheduled on the asset runs minutes, not a day, after an upload.

What is new, how the list is polled and what is kept across triggerer restarts is the pull
package's rule (pull/arrivals.py). This module runs it in the triggerer: each blocking step on
the trigger's own thread through the shared hook of its connection (triggers/documents.py), the
state in ``<destination>/_events/``, one event per batch of at most ``max_batch`` documents.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_gini._compat import AirflowNotFoundException
from airflow_provider_gini.client.api import epoch_ms
from airflow_provider_gini.client.errors import GiniConfigError, GiniError, is_terminal
from airflow_provider_gini.pull.arrivals import Arrivals, ArrivalState, ArrivalStore, payload
from airflow_provider_gini.pull.storage import DOCUMENT, Store, destination_path
from airflow_provider_gini.pull.window import moment
from airflow_provider_gini.triggers.documents import _admitted, _nothing, _on, shared_hook

T = TypeVar("T")
log = logging.getLogger("airflow_provider_gini.triggers.arrivals")
# A failing poll is tried again after this long, doubling up to MAX_BACKOFF: the watcher never
# gives up (a fixed password or a Gini back from an outage resumes it), but says so each time.
MIN_BACKOFF, MAX_BACKOFF = 5.0, 600.0


class GiniNewDocumentsTrigger(BaseEventTrigger):
    """Fires ``{"kind": "gini.new_documents", "gini_conn_id", "document_ids", "count",
    "first_created", "last_created", "batch", "redelivered"}`` for each batch of documents that
    became COMPLETED in the account, at least once each (pull/arrivals.py says how).

    - ``destination``: where the state is kept (``<destination>/_events/``), a folder or any
      ObjectStoragePath URL, with ``destination_conn_id``; the pull's destination is a good
      place. One trigger per ``key`` (default ``new-documents/<gini_conn_id>``) and destination.
    - ``since``: documents created from then on are new (a datetime or an ISO 8601 string).
      Default: when the trigger first runs, on the triggerer's clock; documents created before
      are left to scheduled pulls.
    - ``until_stored`` (default True): a document is announced again after ``reannounce_after``
      seconds (then twice as long each time, up to a day) until GiniPullDocumentsOperator has
      stored it in ``destination`` or Gini no longer has it (an event can be
      lost on its way to a run, pull/arrivals.py says how). Set it False when the DAG does not
      pull into ``destination``: then an event the triggerer had not yet stored when it was
      killed (it stores events about once a second) is lost.
    - ``poll_interval`` seconds between polls (+-10 %); ``lag`` seconds of creation dates listed
      again on every poll, for documents Gini lists late; ``full_listing_every`` seconds at most
      between listings when the first page says nothing changed.
    """

    def __init__(
        self,
        *,
        destination: str,
        gini_conn_id: str = "gini_default",
        destination_conn_id: str | None = None,
        key: str | None = None,
        since: str | datetime | None = None,
        poll_interval: float = 60.0,
        lag: float = 300.0,
        full_listing_every: float = 300.0,
        reannounce_after: float = 300.0,
        until_stored: bool = True,
        page_size: int = 100,
        max_batch: int = 500,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(destination, str) or not destination.strip():
            raise GiniConfigError("GiniNewDocumentsTrigger needs destination=, where it keeps its state")
        if not 1 <= int(page_size) <= 250 or int(max_batch) < 1:
            raise GiniConfigError("page_size must be 1 to 250 and max_batch 1 or more")
        if float(poll_interval) < 0.1 or float(reannounce_after) < 0.1:
            raise GiniConfigError("poll_interval and reannounce_after must be 0.1 s or more")
        if float(lag) < 0 or float(full_listing_every) < 0:
            raise GiniConfigError("lag and full_listing_every must be 0 or more seconds")
        self.destination = destination
        self.gini_conn_id = gini_conn_id
        self.destination_conn_id = destination_conn_id
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise GiniConfigError("key must be a non-empty string (default: new-documents/<gini_conn_id>)")
        self.key = key or f"new-documents/{gini_conn_id}"
        found = moment(since, "since")
        self.since = found.isoformat() if found is not None else None
        self.poll_interval = float(poll_interval)
        self.lag = float(lag)
        self.full_listing_every = float(full_listing_every)
        self.reannounce_after = float(reannounce_after)
        self.until_stored = bool(until_stored)
        self.page_size = int(page_size)
        self.max_batch = int(max_batch)
        self.hook_params = dict(hook_params or {})
        self._where = ""  # the destination's public URI, once opened

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "destination": self.destination,
                "gini_conn_id": self.gini_conn_id,
                "destination_conn_id": self.destination_conn_id,
                "key": self.key,
                "since": self.since,
                "poll_interval": self.poll_interval,
                "lag": self.lag,
                "full_listing_every": self.full_listing_every,
                "reannounce_after": self.reannounce_after,
                "until_stored": self.until_stored,
                "page_size": self.page_size,
                "max_batch": self.max_batch,
                "hook_params": self.hook_params,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gini-arrivals")
        loop = asyncio.get_running_loop()
        try:
            await _admitted(lambda: loop.run_in_executor(None, poller.submit, _nothing))
            opened: tuple[Arrivals, ArrivalStore] | None = None
            backoff = MIN_BACKOFF
            # Nothing ends this loop but the triggerer: a run() that raised would be started
            # again at once by the triggerer, again and again, its traceback logged each time.
            while True:
                try:
                    if opened is None:
                        opened = await self._blocking(poller, self._open)
                    arrivals, store = opened
                    found, again = await self._blocking(poller, self._poll, arrivals, store)
                except Exception as exc:
                    self._failed(exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = MIN_BACKOFF
                # One event per poll (or per max_batch documents): events in quick succession
                # are what Airflow's scheduler can leave without a run (pull/arrivals.py).
                documents = found + [{"id": i} for i in again]
                for start in range(0, len(documents), self.max_batch):
                    batch = documents[start : start + self.max_batch]
                    yield self._event(batch, arrivals.state.batches + 1, any(d["id"] in again for d in batch))
                    # Recorded once the triggerer has it: a stop before the save below
                    # announces the batch again (at least once), never loses it.
                    arrivals.announced(d["id"] for d in batch)
                try:
                    # On the trigger's thread: serialising a large state would hold up the loop.
                    await self._blocking(poller, store.save, arrivals.state)
                except Exception as exc:
                    # Kept in memory and saved at the next poll; a restart before that finds
                    # these documents again and announces them again.
                    self._failed(exc, self.poll_interval, f"saving its state to {store.uri}")
                await asyncio.sleep(self.poll_interval * random.uniform(0.9, 1.1))
        finally:
            poller.shutdown(wait=False, cancel_futures=True)

    def _failed(self, exc: BaseException, retry_in: float, doing: str = "polling Gini") -> None:
        if isinstance(exc, AirflowNotFoundException):
            reason = (
                f"the connection {self.gini_conn_id!r} is not defined where the triggerer runs: add it "
                "to the metadata database, or to the triggerer's environment or secrets backend"
            )
        elif isinstance(exc, GiniError):
            # Only our own errors' messages, which carry no credential: a secrets backend's may
            # carry a URL or a password.
            reason = f"{type(exc).__name__}: {exc}"
            reason += " (fix it: retrying alone cannot help)" if is_terminal(exc) else ""
        elif isinstance(exc, OSError):
            reason = f"{type(exc).__name__}: {exc}"  # a path, never a credential
        else:
            reason = type(exc).__name__
        log.error(
            "GiniNewDocumentsTrigger (connection %r, state %s): %s failed; trying again in %.0f s: %s",
            self.gini_conn_id,
            self.destination,
            doing,
            retry_in,
            reason,
        )

    async def _blocking(self, poller: ThreadPoolExecutor, call: Callable[..., T], *args: Any) -> T:
        return await _admitted(lambda: _on(poller, call, *args))

    def _open(self) -> tuple[Arrivals, ArrivalStore]:
        """The poller and the state file; a first run's state is saved at once, so its ``since``
        holds across restarts."""
        store = ArrivalStore(Store(destination_path(self.destination, self.destination_conn_id)), self.key)
        state = store.load()
        first = state is None
        given = moment(self.since, "since")
        if state is None:
            since = epoch_ms(given) if given is not None else int(time.time() * 1000)
            state = ArrivalState(self.key, since=since, high=since)
        elif given is not None and epoch_ms(given) != state.since:
            log.warning(
                "since=%s differs from the state's %s (%s): the state is kept. To start again from "
                "since, delete the state file",
                self.since,
                since_text(state),
                store.uri,
            )
        arrivals = Arrivals(
            shared_hook(self.gini_conn_id, self.hook_params),
            state,
            lag=self.lag,
            page_size=self.page_size,
            full_listing_every=self.full_listing_every,
            reannounce_after=self.reannounce_after,
        )
        if first:
            store.save(state)
            # Loud: a state lost (a triggerer's disk that did not last, a changed destination or
            # key) looks just like a first start, and what arrived meanwhile is not announced.
            log.warning(
                "No state in %s yet: announcing Gini documents created from %s on%s. If this "
                "trigger ran before, its state was lost: pull the gap with a scheduled or explicit "
                "window pull into the same destination",
                store.uri,
                since_text(state),
                "" if given is not None else " (now; set since= to choose)",
            )
        self._where = store.store.uri()
        return arrivals, store

    def _poll(self, arrivals: Arrivals, store: ArrivalStore) -> tuple[list[dict[str, Any]], list[str]]:
        """The new documents, and the announced ones to announce again (not stored yet)."""
        # The connection's hook again: a changed connection (rotated secret) gets a new one.
        arrivals.api = shared_hook(self.gini_conn_id, self.hook_params)
        stored = (lambda i: bool(store.store.exists(f"{i}/{DOCUMENT}"))) if self.until_stored else None
        found, again = arrivals.poll(stored)
        log.info(
            "Gini account %r: %d new document(s), %d still processing, %d announced again "
            "(not stored yet) (%d request(s))",
            self.gini_conn_id,
            len(found),
            len(arrivals.state.pending),
            len(again),
            arrivals.requests,
        )
        return found, again

    def _event(self, documents: list[dict[str, Any]], batch: int, redelivered: bool = False) -> TriggerEvent:
        body = payload(documents, self.gini_conn_id, self._where, batch, redelivered)
        return TriggerEvent(body)  # type: ignore[no-untyped-call]


def since_text(state: ArrivalState) -> str:
    return datetime.fromtimestamp(state.since / 1000, timezone.utc).isoformat(timespec="seconds")
