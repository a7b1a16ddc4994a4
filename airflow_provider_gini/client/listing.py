"""Every document of a creation-date window, each exactly once, on every paging contract
Gini's sources show, or an error that says why the list cannot be proven complete.

The sources disagree (docs/gini-compat.md, "GET /documents"):

- the Pay API docs page with ``?limit=&next=<a creation date in ms>`` and answer only
  ``{"documents": [...]}``: no cursor and no count come back;
- the SDKs page with ``?limit=&offset=`` and read ``{"totalCount", "documents"}``, except
  gini-api-ruby, which sends the offset as ``next``;
- nothing documents the order (every recorded list is oldest first), whether ``next`` includes
  its own millisecond, that two documents never share a millisecond, or a largest page.

So none of it is assumed. The first request carries neither cursor nor offset, which starts the
list under every contract. A ``totalCount`` in its answer means paging by position, once one
request has proven that positions are read; otherwise the creation-date cursor. The order is read
off the creation dates and checked on every page; nothing is skipped on the strength of it until
it has held over a page of Gini's own size. The listing ends only on proof:

- a document beyond the window, in that order;
- positions up to ``totalCount`` listed;
- a page shorter than asked, once Gini has shown it gives longer ones or when it is shorter than
  any page size of Gini's own.

Anything else raises :class:`GiniIncompleteListing`, saying what was seen.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
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
# Gini's documented default page size. A server may give fewer documents than asked (a page size
# of its own), but not fewer than its own default: a page this short is the list's last. It is
# also how many documents in order it takes before the order is trusted to skip any.
MIN_SERVER_PAGE = 20
# A page may grow to this many times the page size to get past documents sharing one millisecond.
MAX_GROWTH = 8
# How often in a row an offset listing may step back to find its place after deletions.
MAX_RESYNCS = 5


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


def _ids(docs: list[Doc]) -> set[str]:
    return {_ident(d) for d in docs}


class _NotPositional(Exception):
    """A list with a totalCount whose server reads neither 'offset' nor 'next' as a position."""


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
        # Three at least: an offset page repeats the last two documents of the page before.
        self.limit = max(page_size, 3)
        self.stats = ListingStats()
        self._order: int | None = None
        self._in_order = 0  # documents seen consistent with the order

    def __iter__(self) -> Iterator[Doc]:
        self.stats, self._order, self._in_order = ListingStats(), None, 0
        docs, total = self._page(limit=self.limit)
        if total is None:
            self.stats.contract = "cursor"
            listing = self._by_cursor(docs)
        else:
            self.stats.contract = "offset"
            listing = self._by_offset(docs, total)
        # The window's ids, so that none is yielded twice whatever the pages repeat: documents
        # added and deleted while an offset listing pages can bring one back past its checks.
        # It grows with the window only (the manifest of a pull holds as much).
        yielded: set[str] = set()
        for doc in listing:
            if _ident(doc) not in yielded:
                yielded.add(_ident(doc))
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
        if self._order != UNORDERED:
            self._in_order += len(docs)
        self.stats.order = None if self._order is None else ORDER_NAMES[self._order]
        return self._order

    def _trusted(self) -> bool:
        """Whether the order has held long enough to skip documents on its strength."""
        return self._order in (ASCENDING, DESCENDING) and self._in_order >= MIN_SERVER_PAGE

    def _inside(self, date: int) -> bool:
        return (self.lower is None or date >= self.lower) and (self.upper is None or date < self.upper)

    def _past(self, date: int) -> bool:
        """Beyond the window's far end in the order seen: every later document is too."""
        if not self._trusted():
            return False
        if self._order == ASCENDING:
            return self.upper is not None and date >= self.upper
        return self.lower is not None and date < self.lower

    def _before(self, date: int) -> bool:
        """Short of the window's near end in the order seen."""
        if not self._trusted():
            return False
        if self._order == ASCENDING:
            return self.lower is not None and date < self.lower
        return self.upper is not None and date >= self.upper

    def _last(self, docs: list[Doc], limit: int, longest: int) -> bool:
        """Whether a page ends the list: shorter than asked, and shorter than the longest page
        Gini has given or than any page size of its own."""
        return len(docs) < min(limit, max(longest, MIN_SERVER_PAGE))

    def _grow(self, limit: int, docs: list[Doc], **at: int) -> tuple[int, list[Doc]]:
        """A full page brought nothing new: ask again for a bigger one, up to MAX_GROWTH times
        the page size."""
        grown, date = limit * 2, created(docs[-1])
        if grown > self.limit * MAX_GROWTH:
            raise GiniIncompleteListing(
                f"Gini's document list cannot be paged past creation date {date}: pages of {limit} "
                f"brought nothing new there (more documents share that millisecond and the one next "
                f"to it than a page holds, or Gini gives smaller pages than asked). "
                f"{self.stats.describe()}"
            )
        try:
            return grown, self._page(limit=grown, **at)[0]
        except GiniRejected as exc:
            raise GiniIncompleteListing(
                f"Gini's document list cannot be paged past creation date {date}: a page of {limit} "
                f"brought nothing new there and Gini refused a page of {grown} ({exc})"
            ) from exc

    # --- the creation-date cursor ---------------------------------------------------------------

    def _by_cursor(self, docs: list[Doc]) -> Iterator[Doc]:
        limit = self.limit
        while self._see(docs) is None and len(docs) == limit:  # one millisecond fills the page
            limit, docs = self._grow(limit, docs)
        if self._order == UNORDERED:
            raise self._unordered()
        if self._order is None:
            # All of it shares one millisecond, so the order cannot be read. A page shorter
            # than any page size of Gini's own is the whole list.
            if len(docs) < min(limit, MIN_SERVER_PAGE):
                yield from (d for d in docs if self._inside(created(d)))
                return
            raise GiniIncompleteListing(
                f"Gini's document list starts with {len(docs)} documents of one millisecond on a page "
                f"of {limit}, so neither its order nor its end can be told. {self.stats.describe()}"
            )
        yield from self._follow(_Edge(self._order), docs, limit)

    def _follow(self, edge: _Edge, docs: list[Doc], limit: int) -> Iterator[Doc]:
        order = edge.order
        near_end = self.lower if order == ASCENDING else None if self.upper is None else self.upper - 1
        cursor: int | None = None  # this page's cursor; None: the list's start
        expected: set[str] = set()  # the edge's documents: a cursor from the edge brings them again
        proven = False  # a cursor brought its edge's documents back: 'next' is read as a date
        before_jump: tuple[int, set[str]] | None = None  # the cursor a jump replaced, and its edge
        longest = 0
        while True:
            if self._see(docs) == UNORDERED:
                raise self._unordered()
            if cursor is not None:
                self._check_side(docs, cursor, order)
                if expected:
                    self._check_edge(docs, cursor, edge, expected)
                    proven = True
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
            longest = max(longest, len(docs))
            if self._last(docs, limit, longest):
                if not docs and before_jump is not None and not proven:
                    self._verify_jump(*before_jump, edge, limit)
                return
            assert edge.at is not None
            if not progress or edge.cursor() == cursor:  # a page full of the edge's millisecond
                limit, docs = self._grow(limit, docs, **({} if cursor is None else {"next": cursor}))
                continue
            cursor, expected = edge.cursor(), {i for i, d in edge.near.items() if d == edge.at}
            if near_end is not None and before_jump is None and self._before(edge.at):
                # Jump to the window instead of paging up to it. An empty answer could also come
                # from a server that reads 'next' as an offset: _verify_jump tells.
                before_jump = (cursor, expected)
                edge.jump(near_end)
                cursor, expected = edge.cursor(), set()
            docs, _ = self._page(limit=limit, next=cursor)

    def _check_side(self, docs: list[Doc], cursor: int, order: int) -> None:
        wrong = [created(d) for d in docs if order * (created(d) - cursor) < 0]
        if wrong:
            raise GiniIncompleteListing(
                f"Gini listed a document created at {wrong[0]} for next={cursor}, on the wrong side "
                f"of the cursor for a list in {self.stats.order} order: it does not page by creation "
                f"date. {self.stats.describe()}"
            )

    def _check_edge(self, docs: list[Doc], cursor: int, edge: _Edge, expected: set[str]) -> None:
        if not expected & _ids(docs):
            raise GiniIncompleteListing(
                f"Gini's answer to next={cursor} left out the documents created at {cursor + edge.order}, "
                "which that cursor includes: it does not page by creation date, or they were deleted "
                f"meanwhile (run again). {self.stats.describe()}"
            )

    def _verify_jump(self, cursor: int, expected: set[str], edge: _Edge, limit: int) -> None:
        """The jump to the window found nothing. Asking again from before the jump must bring
        back the documents it started from, or 'next' is not a creation date."""
        docs, _ = self._page(limit=limit, next=cursor)
        self._check_side(docs, cursor, edge.order)
        self._check_edge(docs, cursor, edge, expected)

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
            tail, total = pages.prove(total)
        except _NotPositional:
            # A totalCount, from a server that pages by the creation-date cursor. Nothing of the
            # first page has been yielded yet, so the cursor listing can start from it.
            self.stats.contract, self.stats.total = "cursor", None
            self._order, self._in_order = None, 0
            yield from self._by_cursor(first)
            return
        if self._before(created(first[-1])):  # the window starts further on
            if tail and self._before(created(tail[-1])):
                return  # the list's last document is short of the window too: nothing in it
            offset, docs, total = pages.seek(len(first) - 1, total)
            yield from self._positions(pages, offset, docs, total, trusting=True)
            return
        yield from (d for d in first if self._inside(created(d)))
        yield from self._positions(pages, 0, first, total, trusting=False, start=True)

    def _positions(
        self,
        pages: _Positions,
        offset: int,
        docs: list[Doc],
        total: int,
        trusting: bool,
        start: bool = False,
    ) -> Iterator[Doc]:
        """Page by position from ``docs``, found at ``offset``. Each next page starts at the last
        document before its predecessor's last millisecond: it must hold a document from before
        that millisecond (proof that no position was skipped, whatever was added or deleted
        meanwhile; if none, it steps back), and it brings that whole millisecond again, listed
        only once whatever order Gini gives documents of one millisecond. ``trusting``:
        documents were skipped on the strength of the order, so it must hold; ``start``:
        ``docs`` were listed already."""
        anchors: set[str] = set()  # the previous page's documents before its last millisecond
        near = _Recent()  # listed documents of the last two milliseconds
        again: set[str] = set()  # the documents of a page asked for again, bigger
        while True:
            self.stats.total = total
            if self._see(docs) == UNORDERED and trusting:
                raise GiniIncompleteListing(
                    "Gini's document list left creation-date order after showing one, so the pages "
                    f"skipped on the strength of that order may hold documents. {self.stats.describe()}"
                )
            pos = -1
            if anchors:
                found = [i for i, d in enumerate(docs) if _ident(d) in anchors]
                if not found:  # documents before this page were deleted: step back to our place
                    offset = pages.step_back(offset)
                    docs, total = pages.at(offset)
                    continue
                pos = found[-1]
            fresh = [d for d in docs[pos + 1 :] if _ident(d) not in again and near.take(d)]
            for doc in [] if start else fresh:
                date = created(doc)
                if self._past(date):
                    return
                if self._inside(date):
                    yield doc
            start = False
            if offset + len(docs) >= total:
                return  # every position up to totalCount has been listed
            pages.size = max(pages.size, len(docs))
            edge, k = created(docs[-1]), len(docs)
            while k and created(docs[k - 1]) == edge:  # k: where the page's last millisecond starts
                k -= 1
            if k < 2 or (anchors and not fresh and not pages.resyncs):
                # The page's last millisecond starts too early to place the next page after it, or
                # the page brought nothing new: a bigger page.
                again |= _ids(docs)
                docs, total = pages.grow(offset, edge)
                continue
            if fresh or not anchors:
                pages.resyncs = 0
            anchors, again = _ids(docs[:k]), set()
            offset += k - 1
            docs, total = pages.at(offset)


class _Recent:
    """The listed documents of the last two creation dates an offset listing has seen: a page
    that starts before the last one brings them again, in whatever order Gini gives documents
    of one millisecond, and they are listed only once."""

    def __init__(self) -> None:
        self.dates: list[int] = []
        self.ids: dict[str, int] = {}

    def take(self, doc: Doc) -> bool:
        """Whether the document is new to the listing."""
        ident, date = _ident(doc), created(doc)
        if ident in self.ids:
            return False
        if date not in self.dates:
            self.dates = [*self.dates[-1:], date]
            self.ids = {i: d for i, d in self.ids.items() if d in self.dates}
        self.ids[ident] = date
        return True


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


class _Positions:
    """Pages by position: which parameter carries the offset (``offset``, or ``next`` as
    gini-api-ruby sends it), stepping back after deletions, and finding where a window starts."""

    def __init__(self, listing: DocumentListing, first: list[Doc], total: int) -> None:
        self.listing, self.first = listing, _ids(first)
        # The first page's last millisecond: Gini may order its documents anew on every request,
        # so they may be found at later positions.
        self.boundary = {_ident(d) for d in first if created(d) == created(first[-1])}
        self.dates = [created(d) for d in first]
        self.first_total = total
        self.limit = listing.limit
        self.size = len(first)  # the longest page Gini has given
        self.param = "offset"
        self.resyncs = 0

    def at(self, offset: int) -> tuple[list[Doc], int]:
        docs, total = self.listing._page(limit=self.limit, **({self.param: offset} if offset else {}))
        if total is None:
            raise GiniProtocolError("Gini answered a page of the document list without its totalCount")
        return docs, total

    def prove(self, total: int) -> tuple[list[Doc], int]:
        """The page at the list's last position, asked for by ``offset`` and, failing that, by
        ``next``. A server that reads the parameter as a position answers at least one document
        and no more than remain after it, none of them the first page's (but for its last
        millisecond's), in the order the first page started; one that does not (or reads
        ``next`` as a small creation date) answers the list's start again, or nothing. A list
        that shrank past the position proves nothing: it is asked again at its new end. Where
        the list changed meanwhile, or the first page is all one millisecond, that is not proof
        enough: a position past the end must then answer nothing (or be refused), where the
        list's start would come back."""
        for self.param in ("offset", "next"):
            for _ in range(MAX_RESYNCS):
                offset = total - 1
                docs, total = self.at(offset)
                if total > offset:
                    break
                if total <= len(self.first):
                    raise self._changing()
            else:
                raise self._changing()
            dates = [*self.dates, *(created(d) for d in docs)]
            steps = {(b > a) - (b < a) for a, b in itertools.pairwise(dates)} - {0}
            if not (
                docs
                and len(docs) <= total - offset
                and len(steps) < 2  # the list's end continues its start's order
                and not _ids(docs) & self.first - self.boundary
            ):
                continue
            if total == self.first_total and self.boundary != self.first:
                return docs, total
            try:
                beyond, _ = self.at(total + self.limit)
            except GiniRejected:
                return docs, total  # an offset out of range refused: it is read as one
            if not beyond:
                return docs, total
        raise _NotPositional

    def grow(self, offset: int, date: int) -> tuple[list[Doc], int]:
        self.limit *= 2
        if self.limit > self.listing.limit * MAX_GROWTH:
            raise GiniIncompleteListing(
                f"Gini's document list cannot be paged past creation date {date}: more documents share "
                f"it than a page of {self.limit // 2} holds. {self.listing.stats.describe()}"
            )
        return self.at(offset)

    def step_back(self, offset: int) -> int:
        self.resyncs += 1
        if offset == 0 or self.resyncs > MAX_RESYNCS:
            raise self._changing()
        return max(0, offset - (self.size - 1))

    def _changing(self) -> GiniIncompleteListing:
        return GiniIncompleteListing(
            "Gini's document list changed under the listing faster than it could follow (documents "
            f"were no longer where they had been). Run it again. {self.listing.stats.describe()}"
        )

    def seek(self, lo: int, total: int) -> tuple[int, list[Doc], int]:
        """The page where the window starts: it begins with a document before the window (in the
        order seen), found by bisecting positions, the tail first when the list is oldest first,
        since that is where a recent window is. Positions before it are all before the window."""
        listing = self.listing
        hi, tail = total, listing._order == ASCENDING
        while hi - lo > self.size - 1:
            mid = max(lo + 1, hi - self.size + 1) if tail else (lo + hi) // 2
            tail = False
            docs, total = self.at(mid)
            hi = min(hi, total)
            if not docs or not listing._before(created(docs[0])):
                hi = min(hi, mid)
            elif listing._before(created(docs[-1])):
                lo = mid + len(docs) - 1
            else:
                return mid, docs, total
        offset = lo
        while True:
            docs, total = self.at(offset)
            if (docs and listing._before(created(docs[0]))) or (not docs and not offset):
                return offset, docs, total
            offset = self.step_back(offset)  # deleted documents moved the window's start back
