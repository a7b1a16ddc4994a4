"""Kind to Gini under a rate limit: a pull paces itself to what Gini accepts instead of retrying
into the limit (client/throttle.py), honours Retry-After for all its threads, and keeps under
max_requests_per_second. Over real HTTP against the sandbox's token-bucket rate limit."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.client.throttle import MIN_RATE, Throttle
from airflow_provider_gini.sandbox import RunningSandbox
from tests.reliability.helpers import day, ms

pytestmark = pytest.mark.timeout(180)


def pull_day_20(destination: Path, **options: Any) -> dict[str, Any]:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(destination),
        created_after=day(20),
        created_before=day(21),
        **options,
    )
    result: dict[str, Any] = operator.execute({"run_id": f"manual_{uuid.uuid4().hex[:8]}"})  # type: ignore[arg-type]
    result["throttle"] = operator.hook.gini.throttle
    return result


def statuses(sandbox: RunningSandbox) -> dict[str, int]:
    return {str(k): v for k, v in sandbox.counters()["statuses"].items()}


def test_a_pull_with_more_workers_than_the_limit_allows_paces_itself_to_it(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """16 workers against 25 requests/s: without pacing each worker's retries go on hitting the
    empty bucket (most requests would be answered 429); paced, only the first burst is."""
    n, rate = 250, 25.0
    gini_connection.insert_documents(count=n, creationDate=ms(day(20)) + 1000, spacingMs=100)
    gini_connection.reset_counters()
    gini_connection.add_fault("rate_limit", rate=rate, path="/documents*")
    result = pull_day_20(tmp_path, max_workers=16)
    assert result["pulled"] == n
    seen = statuses(gini_connection)
    refused, accepted = seen.get("429", 0), seen.get("200", 0)
    share = refused / (refused + accepted)
    throttle: Throttle = result["throttle"]
    print(
        f"FIGURE rate limit {rate:.0f}/s, 16 workers: {refused} of {refused + accepted} requests 429 ({share:.1%}); {throttle.describe()}"
    )
    assert throttle.refused == refused
    assert throttle.rate is not None
    assert throttle.cuts >= 1
    assert share < 0.15, f"{refused} of {refused + accepted} requests were answered 429"


def test_retry_after_on_a_429_holds_every_thread_of_the_pull(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """One 429 saying Retry-After: 4 stops the whole pull for 4 s, not only the refused request:
    without the hold, the other 7 workers would go on through the 50 documents meanwhile."""
    gini_connection.insert_documents(count=50, creationDate=ms(day(20)) + 1000, spacingMs=100)
    gini_connection.reset_counters()
    gini_connection.add_fault("retry_after", retry_after=4, first=1, path="/documents/*")
    result = pull_day_20(tmp_path, max_workers=8)
    assert result["pulled"] == 50
    log = [r for r in gini_connection.requests() if r["path"].startswith("/documents/")]
    [refused] = [r["time"] for r in log if r["status"] == 429]
    # Requests already on their way when the 429 came may arrive just after it; none may start
    # well inside the 4 s the answer asked for.
    inside = [r for r in log if refused + 1.0 < r["time"] < refused + 3.5]
    assert inside == [], inside
    assert len([r for r in log if r["time"] >= refused + 3.5]) >= 30


def test_max_requests_per_second_is_a_ceiling_from_the_start(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    gini_connection.insert_documents(count=30, creationDate=ms(day(20)) + 1000, spacingMs=100)
    gini_connection.reset_counters()
    began = time.monotonic()
    result = pull_day_20(tmp_path, max_workers=16, max_requests_per_second=10)
    took = time.monotonic() - began
    assert result["pulled"] == 30
    requests = sum(
        n for route, n in gini_connection.counters()["routes"].items() if route != "POST /oauth/token"
    )
    assert requests >= 31  # a list page and 30 extractions
    # Spaced 0.1 s apart, the last of them goes out (requests - 1) / 10 s after the first.
    assert took >= (requests - 1) / 10 - 0.05, f"{requests} requests in {took:.2f} s"


def test_max_requests_per_second_is_checked() -> None:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    for bad in (0, -1, 0.001, float("inf"), float("nan"), True, "10"):
        with pytest.raises(GiniConfigError, match="max_requests_per_second"):
            GiniPullDocumentsOperator(task_id="pull", destination="/tmp/x", max_requests_per_second=bad)


# The pacing rules, on a clock the test moves.


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Waits(threading.Event):
    """A cancel event whose wait() moves the clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        return False


def test_unpaced_until_a_429_then_cut_below_what_gini_accepted() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock)
    waits = Waits(clock)
    for _ in range(20):  # 20 accepted in 1 s: unpaced, nobody waits
        pace = throttle.turn(waits)
        clock.now += 0.05
        throttle.answered(pace, 200)
    assert throttle.rate is None
    throttle.answered(throttle.turn(waits), 429)
    assert throttle.rate == pytest.approx(20 * 0.9)
    # Requests given their turn before the cut do not cut again; one given it after does.
    late = throttle.turn(waits)
    throttle.answered(pace, 429)
    assert throttle.cuts == 1
    throttle.answered(late, 429)
    assert throttle.cuts == 2
    assert throttle.rate == pytest.approx(20 * 0.9 * 0.9)


def test_turns_are_spaced_by_the_ceiling_and_never_above_it() -> None:
    clock = Clock()
    throttle = Throttle(ceiling=10.0, clock=clock)
    waits = Waits(clock)
    starts = []
    for _ in range(50):
        throttle.answered(throttle.turn(waits), 200)
        starts.append(clock.now)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(starts)}
    assert gaps == {0.1}
    assert throttle.rate == 10.0


def test_the_pace_grows_only_while_it_holds_the_session_back() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock)
    waits = Waits(clock)
    for _ in range(20):
        pace = throttle.turn(waits)
        clock.now += 0.05
        throttle.answered(pace, 200)
    throttle.answered(throttle.turn(waits), 429)
    cut = throttle.rate
    assert cut is not None
    for _ in range(50):  # sending as fast as the pace allows: it grows, 2 % a second
        throttle.answered(throttle.turn(waits), 200)
    grown = throttle.rate
    assert grown is not None
    assert cut * 1.02 < grown < cut * 1.1
    clock.now += 60
    for _ in range(3):  # sending less than the pace allows: it stays
        clock.now += 10
        throttle.answered(throttle.turn(waits), 200)
    assert throttle.rate == grown


def test_retry_after_holds_every_turn_up_to_the_cap() -> None:
    clock = Clock()
    throttle = Throttle(hold_cap=30.0, clock=clock)
    waits = Waits(clock)
    throttle.answered(throttle.turn(waits), 429, retry_after=5.0)
    before = clock.now
    throttle.turn(waits)
    assert clock.now - before == pytest.approx(5.0)
    throttle.answered(throttle.turn(waits), 429, retry_after=3600.0)
    before = clock.now
    throttle.turn(waits)
    assert clock.now - before == pytest.approx(30.0)
    assert throttle.rate is not None
    assert throttle.rate >= MIN_RATE
