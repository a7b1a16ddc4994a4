"""Every document of a creation-date window, each exactly once, on every paging contract
Gini's sources show, or an error that says why the list cannot be proven complete.

The sources disagree (docs/gini-compat.md, "GET /documents"):

- the Pay API docs page with ``?limit=&next=<a creation date in ms>`` and answer only
  ``{"documents": [...]}``: no cursor and no count come back;
- the SDKs page with ``?limit=&offset=`` and read ``{"totalCount", "documents"}``, except
  gini-api-ruby, which sends the offset as ``next``;
- nothing documents the order (every recorded list is oldest first), whether ``next`` includes
  its own millisecond, or that two documents never share a millisecond.

So none of it is assumed. The first request carries neither cursor nor offset, which starts
the list under every contract. A ``totalCount`` in its answer means paging by position, once a
second page proves that positions work; otherwise the creation-date cursor. The order is read
off the creation dates and every later page is checked against it. The listing ends only on
proof: ``totalCount`` reached, a document beyond the window in the order seen, or a page with
nothing new that is shorter than a full one. Anything else raises :class:`GiniIncompleteListing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_gini.client.errors import (
    GiniConfigError,
    GiniIncompleteListing,
    GiniProtocolError,
    GiniRejected,
)

ASCENDING, DESCENDING, UNORDERED = 1, -1, 0
ORDER_NAMES = {ASCENDING: "ascending", DESCENDING: "descending", UNORDERED: "unordered"}
Fetch = Callable[[dict[str, int]], Mapping[str, Any]]
Doc = dict[str, Any]
# A page may grow to this many times the page size to get past documents sharing one millisecond.
MAX_GROWTH = 8
# How often in a row an offset listing may step back to find its place after deletions.
MAX_RESYNCS = 5
# Gini's documented default page size. A server may give fewer documents than asked (a page size
# of its own), but not fewer than its own default, so a page this short is the list's last.
MIN_SERVER_PAGE = 20


@dataclass
class ListingStats:
    contract: str | None = None  # "cursor" or "offset"
    order: str | None = None  # "ascending", "descending", "unordered", or None: not seen
    requests: int = 0
    documents: int = 0  # yielded: inside the window
    total: int | None = None  # the last totalCount seen (offset contract)

    def describe(self) -> str:
        paging = {"cursor": "creation-date cursor", "offset": "offset"}.get(self.contract or "", "?")
        total = f", totalCount {self.total}" if self.total is not None else ""
        return (
            f"{self.documents} document(s) listed in {self.requests} request(s); {paging} paging, "
            f"{self.order or 'order not seen'}{total}"
        )


def created(doc: Any) -> int:
    date = doc.get("creationDate") if isinstance(doc, dict) else None
    if isinstance(date, bool) or not isinstance(date, int):
        raise GiniProtocolError("Gini listed a document without an integer creationDate")
    return date


def _ident(doc: Doc) -> str:
    ident = doc.get("id")
    if not isinstance(ident, str) or not ident:
        raise GiniProtocolError("Gini listed a document without an id")
    return ident


class _NotPositional(Exception):
    """A list with a totalCount that pages neither by 'offset' nor by 'next' as an offset."""


class DocumentListing:
    """Iterate over the documents created in ``[created_after, created_before)`` (epoch ms,
    None for unbounded), in the order Gini lists them. ``stats`` says what it took."""

    def __init__(
        self, fetch: Fetch, created_after: int | None, created_before: int | None, page_size: int
    ) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise GiniConfigError(f"page_size must be a positive integer, got {page_size!r}")
        self._fetch = fetch
        self.lower, self.upper = created_after, created_before
        # Two at least: an offset page repeats the last document of the page before.
        self.limit = max(page_size, 2)
        self.stats = ListingStats()
        self._order: int | None = None
        self._may_jump = True

    def __iter__(self) -> Iterator[Doc]:
        docs, total = self._page(limit=self.limit)
        if total is None:
            self.stats.contract = "cursor"
            listing = self._by_cursor(docs)
        else:
            self.stats.contract = "offset"
            listing = self._by_offset(docs, total)
        for doc in listing:
            self.stats.documents += 1
            yield doc

    # --- shared -------------------------------------------------------------------------------

    def _page(self, **params: int) -> tuple[list[Doc], int | None]:
        """One page: its documents, checked, and its totalCount (None when it has none)."""
        page = self._fetch(params)
        self.stats.requests += 1
        docs = page.get("documents")
        if not isinstance(docs, list):
            raise GiniProtocolError("Gini answered a document list without a 'documents' list")
        if len(docs) > params["limit"]:
            raise GiniProtocolError(f"Gini answered {len(docs)} documents to a request for {params['limit']}")
        for doc in docs:
            created(doc)
            _ident(doc)
        total = page.get("totalCount")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            raise GiniProtocolError("Gini answered a document list whose totalCount is not a count")
        return docs, total

    def _see(self, docs: list[Doc]) -> int | None:
        """Learn or check the order from one page's creation dates; return it."""
        for a, b in itertools.pairwise(docs):
            step = (created(b) > created(a)) - (created(b) < created(a))
            if step and self._order is None:
                self._order = step
            elif step and step != self._order:
                self._order = UNORDERED
        self.stats.order = None if self._order is None else ORDER_NAMES[self._order]
        return self._order

    def _inside(self, date: int) -> bool:
        return (self.lower is None or date >= self.lower) and (self.upper is None or date < self.upper)

    def _past(self, date: int) -> bool:
        """Beyond the window's far end in the order seen: every later document is too."""
        if self._order == ASCENDING:
            return self.upper is not None and date >= self.upper
        if self._order == DESCENDING:
            return self.lower is not None and date < self.lower
        return False

    def _before(self, date: int) -> bool:
        """Short of the window's near end in the order seen."""
        if self._order == ASCENDING:
            return self.lower is not None and date < self.lower
        if self._order == DESCENDING:
            return self.upper is not None and date >= self.upper
        return False

    def _grow(self, limit: int, docs: list[Doc], **at: int) -> tuple[int, list[Doc]]:
        """A full page brought nothing new: more than a page of documents share one millisecond.
        Ask again for a bigger page, up to MAX_GROWTH times the page size."""
        grown, date = limit * 2, created(docs[-1])
        if grown > self.limit * MAX_GROWTH:
            raise GiniIncompleteListing(
                f"Gini's document list cannot be paged past creation date {date}: pages of {limit} "
                f"brought nothing new there (more documents share that millisecond than a page "
                f"holds, or Gini gives smaller pages than asked). {self.stats.describe()}"
            )
        try:
            return grown, self._page(limit=grown, **at)[0]
        except GiniRejected as exc:
            raise GiniIncompleteListing(
                f"Gini's document list cannot be paged past creation date {date}: {limit} or more "
                f"documents share it and Gini refused a page of {grown} ({exc})"
            ) from exc

    # --- the creation-date cursor ---------------------------------------------------------------

    def _by_cursor(self, docs: list[Doc]) -> Iterator[Doc]:
        limit = self.limit
        while self._see(docs) is None and len(docs) == limit:
            limit, docs = self._grow(limit, docs)
        if self._order == UNORDERED:
            raise self._unordered()
        if not docs:
            return  # the list's start is empty: there are no documents
        edge = _Edge(self._order or ASCENDING)
        cursor: int | None = None
        if self._order is None:  # one millisecond only, on a page that is not full
            probed = yield from self._probe(docs, edge, limit)
            if probed is None:
                return
            cursor, docs, limit = probed
        yield from self._follow(edge, cursor, docs, limit)

    def _probe(
        self, docs: list[Doc], edge: _Edge, limit: int
    ) -> Generator[Doc, None, tuple[int, list[Doc], int] | None]:
        """Every document so far shares one millisecond b, so the order is unknown. A cursor a
        millisecond below b lists from b upwards if the list is ascending, whether or not the
        cursor includes its own millisecond; one above b lists from b downwards if it is
        descending. Nothing beyond b either way: the list is complete."""
        b = created(docs[0])
        for doc in docs:
            if edge.take(_ident(doc), b) and self._inside(b):
                yield doc
        for cursor, direction in ((b - 1, ASCENDING), (b + 1, DESCENDING)):
            reply, _ = self._page(limit=limit, next=cursor)
            while True:
                # A document at the cursor's own millisecond tells nothing: a cursor that
                # includes it brings it in either order.
                dates = [created(d) for d in reply if created(d) != cursor]
                signs = {(date > b) - (date < b) for date in dates} - {0}
                if len(signs) > 1:
                    raise self._unordered()
                if signs:
                    break
                for doc in reply:  # more of millisecond b: the first page was cut short
                    if edge.take(_ident(doc), created(doc)) and self._inside(created(doc)):
                        yield doc
                if len(reply) < min(limit, MIN_SERVER_PAGE):
                    break
                limit, reply = self._grow(limit, reply, next=cursor)
            if signs == {direction}:
                self._order = edge.order = direction
                return cursor, reply, limit
        return None

    def _follow(self, edge: _Edge, cursor: int | None, docs: list[Doc], limit: int) -> Iterator[Doc]:
        order = edge.order
        near_end = self.lower if order == ASCENDING else None if self.upper is None else self.upper - 1
        # A page shorter than asked is the last once Gini has shown it gives full pages, or when
        # it is shorter than any page size Gini could have of its own. Otherwise the next page
        # tells: if it brings more, that short size is Gini's page size from then on.
        tested, short = False, 0
        expected: set[str] = set()  # the edge's documents: a cursor from the edge brings them again
        while True:
            if self._see(docs) == UNORDERED:
                raise self._unordered()
            if cursor is not None:
                self._check_side(docs, cursor, order)
                if expected and not expected & {_ident(d) for d in docs}:
                    raise GiniIncompleteListing(
                        f"Gini's answer to next={cursor} left out the documents created at {edge.at}, "
                        "which that cursor includes: it does not page by creation date, or they were "
                        f"deleted meanwhile (run again). {self.stats.describe()}"
                    )
            progress = False
            for doc in docs:
                date = created(doc)
                if self._past(date):
                    return
                ahead = edge.at is None or order * (date - edge.at) >= 0
                if edge.take(_ident(doc), date):
                    progress = progress or ahead
                    if self._inside(date):
                        yield doc
            last = len(docs) < limit and (tested or len(docs) < MIN_SERVER_PAGE)
            if not progress:
                if last:
                    return  # nothing new on a page shorter than a full one: the end of the list
                limit, docs = self._grow(limit, docs, **({} if cursor is None else {"next": cursor}))
                tested = False  # Gini has not yet shown it gives pages of the new size
                continue
            if short:
                limit, tested = short, True
            if len(docs) < limit:
                if last or tested:
                    return
                short = len(docs)
            else:
                tested, short = True, 0
            assert edge.at is not None
            expected = {i for i, d in edge.near.items() if d == edge.at}
            if near_end is not None and self._may_jump and self._before(edge.at):
                edge.jump(near_end)  # to the window, instead of paging up to it
                expected = set()
            cursor = edge.cursor()
            docs, _ = self._page(limit=limit, next=cursor)

    def _check_side(self, docs: list[Doc], cursor: int, order: int) -> None:
        wrong = [created(d) for d in docs if order * (created(d) - cursor) < 0]
        if wrong:
            raise GiniIncompleteListing(
                f"Gini listed a document created at {wrong[0]} for next={cursor}, on the wrong side "
                f"of the cursor for a list in {self.stats.order} order: it does not page by creation "
                f"date. {self.stats.describe()}"
            )

    def _unordered(self) -> GiniIncompleteListing:
        return GiniIncompleteListing(
            "Gini's document list is not in creation-date order, so its 'next' cursor cannot be "
            f"followed without skipping documents. {self.stats.describe()}"
        )

    # --- positions ----------------------------------------------------------------------------

    def _by_offset(self, first: list[Doc], total: int) -> Iterator[Doc]:
        self.stats.total = total
        self._see(first)
        stop = next((i for i, d in enumerate(first) if self._past(created(d))), None)
        if stop is not None or len(first) >= total:
            yield from (d for d in first[:stop] if self._inside(created(d)))
            return
        if not first:
            raise GiniIncompleteListing(
                f"Gini listed no documents on the first page of a list whose totalCount is {total}"
            )
        pages = _Positions(self, first, total)
        try:
            if self._before(created(first[-1])):  # the window starts further on: look for it
                offset, docs, total = pages.seek(len(first) - 1, total)
                previous = None
            else:
                offset = len(first) - 1
                docs, total = pages.probe(offset)
                previous = {_ident(d) for d in first}
        except _NotPositional:
            # A totalCount, from a server that pages by the creation-date cursor. Nothing of the
            # first page has been yielded yet, so the cursor listing can start from it. It does
            # not jump ahead: every cursor then continues from documents seen, whose coming
            # again proves the cursor is read as a creation date.
            self.stats.contract, self.stats.total = "cursor", None
            self._may_jump = False
            yield from self._by_cursor(first)
            return
        if previous is not None:
            yield from (d for d in first if self._inside(created(d)))
        yield from self._positions(pages, offset, docs, total, previous)

    def _positions(
        self, pages: _Positions, offset: int, docs: list[Doc], total: int, previous: set[str] | None
    ) -> Iterator[Doc]:
        """Page by position from ``docs``, found at ``offset``. Each page must hold a document of
        the page before (``previous``; None for a page that starts before the window), which
        proves no position was skipped, whatever was added or deleted meanwhile."""
        sought, stepped = previous is None, False
        while True:
            self.stats.total = total
            if self._see(docs) == UNORDERED and sought:
                raise GiniIncompleteListing(
                    "Gini's document list left creation-date order after its first pages had shown "
                    "one, so the pages skipped on the strength of that order may hold documents. "
                    f"{self.stats.describe()}"
                )
            if previous is None:
                fresh = docs
            else:
                pos = max((i for i, d in enumerate(docs) if _ident(d) in previous), default=None)
                if pos is None:  # documents before this page were deleted: step back to our place
                    offset = pages.step_back(offset)
                    docs, total = pages.at(offset)
                    stepped = True
                    continue
                if pos and pos >= (len(docs) - 1) / 2 and not stepped:
                    raise GiniIncompleteListing(
                        f"Gini's page at offset {offset} mostly repeats the page before: it does not "
                        f"page by {pages.param!r}, or many documents were added meanwhile (run again). "
                        f"{self.stats.describe()}"
                    )
                fresh, stepped, pages.resyncs = docs[pos + 1 :], False, 0
            end = offset + len(docs)
            if not sought and fresh and self._before(created(fresh[-1])) and end < total:
                # Still short of the window: look for its start instead of paging up to it.
                sought = True
                offset, docs, total = pages.seek(end - 1, total)
                previous = None
                continue
            for doc in fresh:
                date = created(doc)
                if self._past(date):
                    return
                if self._inside(date):
                    yield doc
            if end >= total:
                return  # every position up to totalCount has been listed
            if not fresh:
                raise GiniIncompleteListing(
                    f"Gini listed {len(docs)} document(s) at offset {offset} and none after the "
                    f"previous page's, short of its totalCount {total}. {self.stats.describe()}"
                )
            previous = {_ident(d) for d in docs}
            offset = end - 1
            docs, total = pages.at(offset)


class _Edge:
    """How far a cursor listing has got: the furthest creation date listed, and the documents
    listed within a millisecond of it. The next cursor is a millisecond short of the edge, so
    that a cursor which excludes its own millisecond cannot skip documents sharing the edge's;
    those within its reach may come again and are recognised."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.at: int | None = None
        self.near: dict[str, int] = {}

    def cursor(self) -> int:
        assert self.at is not None
        return self.at - self.order

    def jump(self, to: int) -> None:
        self.at = to
        self.near.clear()

    def take(self, ident: str, date: int) -> bool:
        """Whether the document is new to the listing; moves the edge."""
        if ident in self.near:
            return False
        if self.at is None or self.order * (date - self.at) > 0:
            self.at = date
            self.near = {i: d for i, d in self.near.items() if abs(date - d) <= 1}
        if abs(date - self.at) <= 1:
            self.near[ident] = date
        return True


def _moved_on(first: list[Doc], offset: int, docs: list[Doc], total: int) -> bool:
    """Whether ``docs``, asked for at ``offset``, is where positional paging puts it, whatever
    was added or deleted meanwhile. At the first page's last position: that document has moved
    up to the front, or the first page's documents are all behind, or the list has shrunk to
    end before it. Further on: none of the first page's documents, or nothing if the count has
    shrunk to nothing there; and nothing that comes before the first page's last document in
    the first page's order (documents added at the list's head move an ignored offset's answer
    off the first page, but not behind it)."""
    ids = [_ident(d) for d in docs]
    if offset == len(first) - 1 and _ident(first[-1]) in ids:
        # at the front, give or take what was added meanwhile; not where it was
        return ids.index(_ident(first[-1])) == 0 or ids.index(_ident(first[-1])) < offset / 2
    if docs:
        order = (created(first[-1]) > created(first[0])) - (created(first[-1]) < created(first[0]))
        behind = any(order * (created(d) - created(first[-1])) < 0 for d in docs)
        return not behind and not {_ident(d) for d in first} & set(ids)
    return total <= offset


class _Positions:
    """Pages by position: which parameter carries the offset (``offset``, or ``next`` as
    gini-api-ruby sends it), stepping back after deletions, and finding where a window starts."""

    def __init__(self, listing: DocumentListing, first: list[Doc], total: int) -> None:
        self.listing, self.first, self.first_total = listing, first, total
        self.limit = listing.limit
        self.param = "offset"
        self.resyncs = 0

    def at(self, offset: int) -> tuple[list[Doc], int]:
        docs, total = self.listing._page(limit=self.limit, **({self.param: offset} if offset else {}))
        if total is None:
            raise GiniProtocolError("Gini answered a page of the document list without its totalCount")
        return docs, total

    def probe(self, offset: int) -> tuple[list[Doc], int]:
        """The page at ``offset``, proving that positions work: with ``offset``, and failing
        that with ``next`` as gini-api-ruby sends it. A server that reads neither answers the
        first page again, or (reading ``next`` as a creation date, so small a one) nothing."""
        while True:
            docs, total = self.at(offset)
            if not offset or _moved_on(self.first, offset, docs, total):
                return docs, total
            if self.param == "next":
                raise _NotPositional
            self.param = "next"

    def step_back(self, offset: int) -> int:
        self.resyncs += 1
        if offset == 0 or self.resyncs > MAX_RESYNCS:
            raise GiniIncompleteListing(
                "Gini's document list changed under the listing: the documents of the previous page "
                f"were no longer where they were, {self.resyncs} time(s). Run it again. "
                f"{self.listing.stats.describe()}"
            )
        return max(0, offset - (self.limit - 1))

    def seek(self, lo: int, total: int) -> tuple[int, list[Doc], int]:
        """The page where the window starts: it begins with a document before the window (in the
        order seen), found by bisecting positions, the tail first when the list is oldest first,
        since that is where a recent window is."""
        listing = self.listing
        hi, tail, totals = total, listing._order == ASCENDING, {total}
        while hi - lo > self.limit - 1:
            mid = max(lo + 1, hi - self.limit + 1) if tail else (lo + hi) // 2
            tail = False
            docs, total = self.probe(mid)
            hi, totals = min(hi, total), totals | {total}
            if not docs or not listing._before(created(docs[0])):
                hi = min(hi, mid)
            elif listing._before(created(docs[-1])):
                lo = mid + len(docs) - 1
            else:
                return mid, docs, total
        if lo >= hi - 1 and totals == {hi}:
            return total, [], total  # the list's last document is before the window: it is empty
        offset = lo
        while True:
            docs, total = self.probe(offset)
            if (docs and listing._before(created(docs[0]))) or (not docs and not offset):
                return offset, docs, total
            offset = self.step_back(offset)  # deleted documents moved the window's start back
