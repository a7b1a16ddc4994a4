"""New documents of an account, found by polling its document list, and what has been announced
of them, kept in a small JSON file so that a restarted triggerer goes on where it stopped.

A document is *announced* once, when it is first seen COMPLETED and was created at or after
``since`` (the first poll's time, unless given). ERROR documents are settled without an
announcement; PENDING ones (and progresses Gini does not document) are remembered and looked at
again on every poll until they finish or are gone.

Each poll lists the documents created from ``high - lag`` on (``high``: the latest creation date
seen), through the listing's conformance rules (client/listing.py), so a document Gini lists a
little late is still found, and only recent documents are paged through. Between those listings
a poll may look at the first page only: when it is unchanged and can show a new document (a list
with a ``totalCount``, or newest first), nothing is new. What a first page cannot show (one
document deleted and one uploaded between two polls, in an oldest-first list) is caught by the
full listing every ``full_listing_every`` seconds.

Announced until stored. An event can be lost on its way to a DAG run: a triggerer that stops
right after handing it over, or Airflow's scheduler, which queues one run per asset and
consumes only the events up to the first one queued, so an event that arrives while that run is
being created starts no run. So a document stays announced until the pull has stored it
(``<destination>/<id>/document.json``): after ``reannounce_after`` seconds it is announced again
(``"redelivered": true``), then after twice as long each time, up to a day, unless Gini no
longer has it; the pull skips what is already stored. The state is written after
each event has been handed over; a stop before that announces the event's documents again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_gini.client.api import SAFE_ID, GiniAPI, safe_id
from airflow_provider_gini.client.errors import (
    GiniAuthError,
    GiniCancelled,
    GiniConfigError,
    GiniError,
    GiniNotFound,
    shown,
)
from airflow_provider_gini.client.listing import MIN_SERVER_PAGE, DocumentListing, created
from airflow_provider_gini.pull.state import keyed_name
from airflow_provider_gini.pull.storage import Store, json_bytes

log = logging.getLogger("airflow_provider_gini.arrivals")

EVENTS = "_events"  # under the destination; apart from _state/, which pulls sweep
KIND = "gini.new_documents"  # the payload's "kind", by which a pull finds its ids
VERSION = 1
# Announced documents waiting to be stored that the state keeps, about 60 bytes each.
MAX_UNSTORED = 20_000
MAX_REANNOUNCE = 86_400.0  # seconds between announcements of a document the pull never stores
MAX_DUE_CHECKS = 100  # announced documents looked at again per poll
# Errors that end a poll (and undo it): nothing else about this account can succeed past them.
POLL_ENDING = (GiniAuthError, GiniConfigError, GiniCancelled)


@dataclass
class ArrivalState:
    key: str
    since: int  # epoch ms: documents created from here on are announced
    high: int  # epoch ms: the latest creation date seen
    seen: dict[str, int] = field(default_factory=dict)  # announced or settled, within the lag
    pending: dict[str, int] = field(default_factory=dict)  # listed, not finished yet
    # Announced, not stored yet: id -> [when last announced (epoch s), how often announced].
    unstored: dict[str, list[float]] = field(default_factory=dict)
    probe: list[Any] | None = None  # the first page at the last full listing
    listed_at: float = 0.0  # epoch s of the last full listing
    batches: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, body: Any, key: str) -> ArrivalState:
        if not isinstance(body, dict) or body.get("version") != VERSION or body.get("key") != key:
            raise ValueError(f"not a version {VERSION} state of key {key!r}")
        state = cls(**{name: body[name] for name in cls.__dataclass_fields__ if name in body})
        ints = (state.since, state.high, state.batches)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ValueError("since, high and batches must be integers")
        for name in ("seen", "pending"):
            entries = getattr(state, name)
            if not isinstance(entries, dict) or not all(isinstance(v, int) for v in entries.values()):
                raise ValueError(f"{name} must map ids to creation dates")
        if not isinstance(state.unstored, dict) or not all(
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            for v in state.unstored.values()
        ):
            raise ValueError("unstored must map ids to [when announced, how often]")
        return state


class ArrivalStore:
    """The state's file, ``<destination>/_events/<key>-<digest>.json``, written atomically."""

    def __init__(self, store: Store, key: str) -> None:
        if not isinstance(key, str) or not key.strip():
            raise GiniConfigError("The new-documents key must be a non-empty string")
        self.store, self.key = store, key
        self.relative = f"{EVENTS}/{keyed_name(key)}"
        self.uri = store.uri(self.relative)
        self._written: bytes | None = None  # what the file holds, as this store last wrote it

    def load(self) -> ArrivalState | None:
        """The state, None when there is none yet. An unreadable one is an error, never a start
        from nothing, which would announce again or skip what arrived meanwhile."""
        if not self.store.exists(self.relative):
            return None
        try:
            return ArrivalState.from_json(self.store.read_json(self.relative), self.key)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise GiniConfigError(
                f"The new-documents state {self.uri} cannot be read ({type(exc).__name__}: {exc}). "
                "Restore it, or delete it and set since= to say from when documents are new"
            ) from None

    def save(self, state: ArrivalState) -> None:
        """Write the state, unless the file already holds it as this store last wrote it (a
        poll that changed nothing writes nothing)."""
        data = json_bytes(state.to_json(), separators=(",", ":"))
        if data == self._written:
            return
        self.store.makedirs(EVENTS)
        self.store.write_bytes(self.relative, data)
        self._written = data


def _probe(page: dict[str, Any]) -> tuple[list[Any], bool]:
    """A first page's fingerprint, and whether an unchanged one proves that nothing is new: its
    list has a totalCount (an upload changes it), or is newest first (an upload leads it)."""
    docs = page["documents"]
    dates = [created(d) for d in docs]
    total = page.get("totalCount")
    fingerprint = [total, [[d.get("id"), c] for d, c in zip(docs, dates, strict=True)]]
    # Newest first only on as much evidence as the listing wants before it relies on an order.
    descending = (
        len(dates) >= MIN_SERVER_PAGE
        and len(set(dates)) > 1
        and all(a >= b for a, b in itertools.pairwise(dates))
    )
    return fingerprint, total is not None or descending


class Arrivals:
    """One account's new documents, polled through ``api``, with ``state`` updated in place."""

    def __init__(
        self,
        api: GiniAPI,
        state: ArrivalState,
        *,
        lag: float = 300.0,
        page_size: int = 100,
        full_listing_every: float = 300.0,
        reannounce_after: float = 300.0,
        clock: Any = time.time,
    ) -> None:
        self.api, self.state = api, state
        self.lag_ms = int(lag * 1000)
        self.page_size = page_size
        self.full_listing_every = full_listing_every
        self.reannounce_after = reannounce_after
        self.clock = clock
        self.requests = 0  # of the last poll, for its log line

    def poll(self, stored: Callable[[str], bool] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """The documents newly COMPLETED since the last poll, oldest first, as ``{"id",
        "creationDate", "name"}``, and the ids to announce again (``stored``: whether the pull
        has stored a document; None: never announce again). The state is updated but not
        saved, and only when the whole poll succeeds: a poll that fails half-way (a listing
        that cannot be proven complete, a 5xx) leaves it as it was, so the next poll finds the
        same documents again instead of having marked them seen without announcing them."""
        state = self.state
        # What a poll changes: the maps (entries added or deleted, never changed in place), the
        # probe and the numbers; so copies of the maps are enough to undo it.
        before = dataclasses.replace(
            state, seen=dict(state.seen), pending=dict(state.pending), unstored=dict(state.unstored)
        )
        self.requests = 0
        try:
            found = self._new()
            if stored is None:
                self.state.unstored.clear()
                return found, []
            return found, self._due(stored)
        except BaseException:
            self.state = before
            raise

    def _new(self) -> list[dict[str, Any]]:
        state, now = self.state, self.clock()
        found: dict[str, dict[str, Any]] = {}
        listed: set[str] = set()
        limit = max(self.page_size, 3)  # the listing's own first page, so it can start from it
        page = self.api.list_documents(limit=limit)
        self.requests += 1
        fingerprint, telling = _probe(page)
        quiet = telling and fingerprint == state.probe and now - state.listed_at < self.full_listing_every
        if not quiet:
            lower = max(state.since, state.high - self.lag_ms)
            first: list[dict[str, Any]] = [page]

            def fetch(params: dict[str, int]) -> dict[str, Any]:
                # The listing starts with the page the probe just fetched.
                return (
                    first.pop()
                    if first and params == {"limit": limit}
                    else self.api.list_documents(**_named(params))
                )

            listing = DocumentListing(fetch, lower, None, limit)
            for doc in listing:
                listed.add(self._take(doc, found))
            self.requests += listing.stats.requests - 1
            state.probe, state.listed_at = fingerprint, now
        # Still processing when last seen, and not in this listing: looked at one by one.
        for document_id in [i for i in state.pending if i not in listed]:
            self._recheck(document_id, found)
        floor = state.high - self.lag_ms
        state.seen = {i: c for i, c in state.seen.items() if c >= floor}
        return sorted(found.values(), key=lambda d: (d["creationDate"], d["id"]))

    def _take(self, doc: dict[str, Any], found: dict[str, dict[str, Any]]) -> str:
        state = self.state
        document_id = safe_id(doc.get("id"), "listed document id")
        date = created(doc)
        state.high = max(state.high, date)
        if date < state.since or document_id in state.seen:
            return document_id
        progress = doc.get("progress")
        if progress == "COMPLETED":
            found[document_id] = {"id": document_id, "creationDate": date, "name": doc.get("name")}
        elif progress == "ERROR":
            log.warning("Gini document %s ended in ERROR: not announced", document_id)
        else:  # PENDING, or a progress Gini does not document: waited for like PENDING
            state.pending[document_id] = date
            return document_id
        state.pending.pop(document_id, None)
        state.seen[document_id] = date
        return document_id

    def _recheck(self, document_id: str, found: dict[str, dict[str, Any]]) -> None:
        try:
            doc = self.api.get_document(document_id)
        except GiniNotFound:
            log.info("Gini document %s, still processing when last seen, is gone", document_id)
            self.state.pending.pop(document_id, None)
            return
        except POLL_ENDING:
            raise
        except GiniError as exc:
            # That document's own: it stays pending, and holds back no other document.
            log.warning(
                "Looking at Gini document %s again failed, next poll tries again: %s", document_id, exc
            )
            return
        finally:
            self.requests += 1
        self._take(doc, found)

    def announced(self, ids: Iterable[str]) -> None:
        """Record a batch handed to the triggerer; the oldest beyond MAX_UNSTORED are let go."""
        now = self.clock()
        self.state.batches += 1
        unstored = self.state.unstored
        for document_id in ids:
            _, times = unstored.pop(document_id, (0.0, 0))
            unstored[document_id] = [now, times + 1]
        if len(unstored) > MAX_UNSTORED:
            dropped = list(unstored)[: len(unstored) - MAX_UNSTORED]
            log.warning(
                "%d announced Gini documents are still not stored; no longer announcing the %d oldest "
                "again (first: %s): pull them by id, or with a scheduled pull",
                len(unstored),
                len(dropped),
                dropped[0],
            )
            for document_id in dropped:
                del unstored[document_id]

    def _due(self, stored: Callable[[str], bool]) -> list[str]:
        """Announced documents not stored yet whose last announcement is old enough to announce
        them again: ``reannounce_after`` seconds, doubling with each announcement up to a day
        (a document the pull keeps failing on must not start a run every few minutes for ever).
        Stored ones are forgotten, and so are ones Gini no longer has or that ended in ERROR
        (a pull stores neither)."""
        now, unstored = self.clock(), self.state.unstored
        due = [
            i
            for i, (at, times) in unstored.items()
            if now - at >= min(self.reannounce_after * 2 ** min(max(int(times) - 1, 0), 20), MAX_REANNOUNCE)
        ]
        # The longest-waiting first, a bounded number per poll (a request or two each).
        due = sorted(due, key=lambda i: unstored[i][0])[:MAX_DUE_CHECKS]
        failed: set[str] = set()
        for document_id in due:
            try:
                # Only the due ones are looked for in the destination (a request each on S3).
                if stored(document_id):
                    del unstored[document_id]
                    continue
                self.requests += 1
                progress = self.api.get_document(document_id).get("progress")
            except GiniNotFound:
                progress = None
            except POLL_ENDING:
                raise
            except (GiniError, OSError) as exc:
                # That document's own: looked at again at the next poll; no other is held back.
                log.warning(
                    "Checking announced Gini document %s failed, next poll tries again: %s", document_id, exc
                )
                failed.add(document_id)
                continue
            if progress != "COMPLETED":
                log.info(
                    "Announced Gini document %s is %s: not announcing it again",
                    document_id,
                    progress or "gone",
                )
                del unstored[document_id]
        return [i for i in due if i in unstored and i not in failed]


def _named(params: dict[str, int]) -> dict[str, Any]:
    """A listing's request parameters as ``list_documents`` names them."""
    return {"limit": params["limit"], "offset": params.get("offset"), "next_cursor": params.get("next")}


def payload(
    documents: list[dict[str, Any]],
    gini_conn_id: str,
    destination: str,
    batch: int,
    redelivered: bool = False,
) -> dict[str, Any]:
    """A new-documents event's payload: plain values only, no credential. ``destination`` is
    where the trigger looks for stored documents (its public URI, no connection id)."""
    dates = [d["creationDate"] for d in documents if isinstance(d.get("creationDate"), int)]
    return {
        "kind": KIND,
        "gini_conn_id": gini_conn_id,
        "destination": destination,
        "document_ids": [d["id"] for d in documents],
        "count": len(documents),
        "first_created": min(dates) if dates else None,
        "last_created": max(dates) if dates else None,
        "batch": batch,
        "redelivered": redelivered,
    }


def announcements(events: Iterable[Any], gini_conn_id: str) -> tuple[list[dict[str, Any]], int]:
    """The new-documents payloads of ``gini_conn_id`` among asset events' extras, checked, and
    how many other connections' there were. One of this connection that is malformed is an
    error: its documents would be lost."""
    found, others = [], 0
    for extra in events:
        body = extra.get("payload") if isinstance(extra, dict) else None
        if not isinstance(body, dict) or body.get("kind") != KIND:
            continue
        if body.get("gini_conn_id") != gini_conn_id:
            others += 1
            continue
        listed = body.get("document_ids")
        if not isinstance(listed, list) or len(listed) != body.get("count"):
            raise GiniConfigError(
                f"A Gini new-documents event is malformed (document_ids {shown(str(listed), 80)}, "
                f"count {body.get('count')!r}): its documents cannot be pulled by id"
            )
        for document_id in listed:
            if not isinstance(document_id, str) or not SAFE_ID.fullmatch(document_id):
                raise GiniConfigError(
                    f"A Gini new-documents event names an id that is not one: {document_id!r}"
                )
        found.append(body)
    return found, others
