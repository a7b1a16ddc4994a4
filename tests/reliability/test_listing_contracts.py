"""The listing against models of every paging contract Gini's sources show (docs/gini-compat.md),
with what no sandbox run covers in one go: any order, either reading of the cursor, pages cut
short by the server, totalCount where none is documented, the offset sent as ``next``, creation
dates shared by many documents, and documents added and deleted between any two requests.

Whatever the server: every document of the window that exists throughout is listed, none twice,
none from outside the window; or GiniIncompleteListing, and only where no client could prove the
list complete (documents changing under it, or more documents in one millisecond than pages can
get past)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_gini.client.errors import GiniIncompleteListing
from airflow_provider_gini.client.listing import MIN_SERVER_PAGE, DocumentListing

BASE = 1_767_225_600_000  # creation dates as Gini sends them: epoch milliseconds


@dataclass
class Server:
    """One paging contract over (creationDate, id) pairs, optionally changing between requests."""

    docs: dict[str, int]
    contract: str  # "cursor" (the Pay API docs) or "offset" (the SDKs)
    ascending: bool
    inclusive: bool  # cursor: does next=<ms> list documents of <ms>
    cap: int | None  # answer at most this many a page, whatever the limit
    offset_param: str  # offset: "offset", or "next" as gini-api-ruby sends it
    total_count: bool  # cursor: also answer a totalCount
    churn: random.Random | None  # add and delete documents between requests
    ties: random.Random | None  # order documents of one millisecond anew for every request
    deleted: set[str] = field(default_factory=set)
    ever: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    def __call__(self, params: dict[str, int]) -> dict[str, Any]:
        self.requests += 1
        assert self.requests < 3000, "the listing does not end"
        if self.churn is not None and self.requests > 1:
            self._change(self.churn)
        # Documents of one millisecond in id order, or (as an SQL ORDER BY without a tiebreaker
        # may) in any order, anew for every request.
        items = sorted(self.docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=not self.ascending)
        if self.ties is not None:
            rng = self.ties
            items.sort(key=lambda kv: (kv[1] if self.ascending else -kv[1], rng.random()))
        limit = min(params["limit"], self.cap or params["limit"])
        body: dict[str, Any] = {}
        if self.contract == "offset":
            start = params.get(self.offset_param, 0)
            page, body["totalCount"] = items[start : start + limit], len(items)
        else:
            cursor = params.get("next", 0)
            if cursor:
                sign = 1 if self.ascending else -1
                items = [kv for kv in items if sign * (kv[1] - cursor) >= (0 if self.inclusive else 1)]
            page = items[:limit]
            if self.total_count:
                body["totalCount"] = len(self.docs)
        body["documents"] = [{"id": i, "creationDate": d} for i, d in page]
        return body

    def _change(self, rng: random.Random) -> None:
        for _ in range(rng.randint(0, 2)):
            if rng.random() < 0.5 and self.docs:
                victim = rng.choice(sorted(self.docs))
                del self.docs[victim]
                self.deleted.add(victim)
            else:  # an upload: created now, at or after everything else
                new = f"new-{len(self.ever)}"
                self.docs[new] = self.ever[new] = max(self.docs.values(), default=BASE) + rng.randint(0, 3)


CASES = st.fixed_dictionaries(
    {
        "dates": st.lists(st.integers(min_value=0, max_value=1000), max_size=300),
        "spread": st.sampled_from([1, 2, 5, 50, 1000]),
        "contract": st.sampled_from(["cursor", "offset"]),
        "ascending": st.booleans(),
        "inclusive": st.booleans(),
        "cap": st.sampled_from([None, None, MIN_SERVER_PAGE, 25]),
        "offset_param": st.sampled_from(["offset", "next"]),
        "total_count": st.booleans(),
        "churn": st.none() | st.integers(min_value=0, max_value=2**32),
        "ties": st.none() | st.integers(min_value=0, max_value=2**32),
        "page_size": st.sampled_from([1, 2, 3, 4, 7, 20, 30, 50]),
        "lower": st.none() | st.integers(min_value=0, max_value=1000),
        "upper": st.none() | st.integers(min_value=0, max_value=1100),
    }
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CASES)
def test_every_contract_lists_the_window_exactly_once_or_says_why_not(case: dict[str, Any]) -> None:
    docs = {f"d{i}": BASE + d % case["spread"] for i, d in enumerate(case["dates"])}
    lower = None if case["lower"] is None else BASE + case["lower"] % max(case["spread"], 2)
    upper = None if case["upper"] is None else BASE + case["upper"] % (case["spread"] + 2)
    if lower is not None and upper is not None and lower > upper:
        lower, upper = upper, lower
    churn = None if case["churn"] is None else random.Random(case["churn"])
    server = Server(
        dict(docs),
        case["contract"],
        case["ascending"],
        case["inclusive"],
        case["cap"],
        case["offset_param"],
        case["total_count"],
        churn,
        None if case["ties"] is None else random.Random(case["ties"]),
        ever=dict(docs),
    )
    listing = DocumentListing(server, lower, upper, case["page_size"])
    try:
        got = [doc["id"] for doc in listing]
    except GiniIncompleteListing:
        counts = Counter(docs.values())
        crowded = max((counts[d] + counts.get(d + 1, 0) for d in counts), default=0)
        page = min(max(case["page_size"], 3), case["cap"] or 10**9)
        # Only where no client could prove the list complete: documents changing under it, or
        # one millisecond (and the next) holding about as many documents as a page.
        assert churn is not None or crowded >= min(page, MIN_SERVER_PAGE) - 1
        return

    def inside(date: int) -> bool:
        return (lower is None or date >= lower) and (upper is None or date < upper)

    assert len(got) == len(set(got)), "a document listed twice"
    assert all(inside(server.ever[i]) for i in got), "a document from outside the window"
    stable = {i for i, d in docs.items() if inside(d) and i not in server.deleted}
    assert stable <= set(got), f"missing {sorted(stable - set(got))[:5]}; {listing.stats.describe()}"


@pytest.mark.parametrize(
    ("contract", "ascending", "param"),
    [
        ("cursor", True, "offset"),
        ("cursor", False, "offset"),
        ("offset", True, "offset"),
        ("offset", False, "next"),
    ],
)
def test_a_few_changes_while_paging_are_followed(contract: str, ascending: bool, param: str) -> None:
    """Realistic churn (an upload or a deletion now and then, pages of 50 of 600 documents)
    must not make the listing give up: every document there throughout is listed, once."""
    docs = {f"d{i:03}": BASE + i * 1000 for i in range(600)}
    rng = random.Random(7)

    class Occasional(Server):
        def _change(self, _: random.Random) -> None:
            if rng.random() < 0.4:
                victim = rng.choice(sorted(self.docs))
                del self.docs[victim]
                self.deleted.add(victim)
            if rng.random() < 0.4:
                new = f"new-{len(self.ever)}"
                self.docs[new] = self.ever[new] = max(self.docs.values()) + 1000

    server = Occasional(dict(docs), contract, ascending, True, None, param, False, rng, None, ever=dict(docs))
    got = [doc["id"] for doc in DocumentListing(server, None, None, 50)]
    assert len(got) == len(set(got))
    assert set(docs) - server.deleted <= set(got)
