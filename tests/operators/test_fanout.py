"""One pull as many: a window cut into shards (no gap, no overlap, whatever the cut), and one
pull per account, each with its own folder and watermark, whatever the order of the list."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.fanout import per_account, shard_window
from airflow_provider_gini.pull.state import default_key
from airflow_provider_gini.sandbox import OTHER_USER, RunningSandbox
from tests.operators.conftest import task_states, xcom

UTC = timezone.utc


def windows(shards: list[dict[str, str]]) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(s["created_after"]), datetime.fromisoformat(s["created_before"]))
        for s in shards
    ]


def assert_tiles(shards: list[dict[str, str]], start: datetime, end: datetime) -> None:
    """Consecutive, non-empty, from start to end: every instant in exactly one shard."""
    spans = windows(shards)
    assert spans[0][0] == start
    assert spans[-1][1] == end
    for (a, b), (c, _) in itertools.pairwise(spans):
        assert a < b
        assert b == c
    # The boundaries are the same strings, so the window rule reads them the same way.
    for left, right in itertools.pairwise(shards):
        assert left["created_before"] == right["created_after"]


def test_by_day_cuts_at_midnights_and_keeps_partial_ends() -> None:
    start, end = datetime(2026, 1, 5, 13, 30, tzinfo=UTC), datetime(2026, 1, 8, 6, tzinfo=UTC)
    shards = shard_window(start, end, by="day")
    assert_tiles(shards, start, end)
    assert [b for _, b in windows(shards)][:-1] == [datetime(2026, 1, d, tzinfo=UTC) for d in (6, 7, 8)]


def test_by_week_cuts_at_mondays() -> None:
    shards = shard_window("2026-01-01", "2026-02-01", by="week")  # a Thursday to a Sunday
    assert_tiles(shards, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert all(b.weekday() == 0 for _, b in windows(shards)[:-1])
    assert len(shards) == 5


def test_by_day_follows_the_starts_timezone() -> None:
    berlin = timezone(timedelta(hours=1))
    shards = shard_window(
        datetime(2026, 1, 5, 12, tzinfo=berlin), datetime(2026, 1, 7, tzinfo=berlin), by="day"
    )
    assert [b for _, b in windows(shards)][:-1] == [datetime(2026, 1, 6, tzinfo=berlin)]


def test_daylight_saving_changes_neither_gap_nor_overlap() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    for start, end in [
        (datetime(2025, 3, 29, 12, tzinfo=berlin), datetime(2025, 4, 2, tzinfo=berlin)),  # 23-hour day
        (datetime(2025, 10, 25, 12, tzinfo=berlin), datetime(2025, 10, 28, tzinfo=berlin)),  # 25-hour day
        (datetime(2025, 3, 30, 0, tzinfo=berlin), datetime(2025, 3, 30, 4, tzinfo=berlin)),  # 3 real hours
    ]:
        for kwargs in ({"by": "day"}, {"by": "week"}, {"by": timedelta(minutes=30)}, {"parts": 7}):
            shards = shard_window(start, end, **kwargs)
            assert_tiles(shards, start, end)
        midnights = [b for _, b in windows(shard_window(start, end, by="day"))][:-1]
        assert all(m.astimezone(berlin).time() == time(0) for m in midnights)
    real = [
        b - a
        for a, b in windows(
            shard_window(*[datetime(2025, 3, 30, h, tzinfo=berlin) for h in (0, 4)], by=timedelta(minutes=30))
        )
    ]
    assert real == [timedelta(minutes=30)] * 6  # 3 elapsed hours, not 4 wall-clock ones


def test_more_shards_than_airflow_maps_is_refused() -> None:
    with pytest.raises(GiniConfigError, match="max_shards"):
        shard_window("2020-01-01", "2026-01-01", by="day")
    with pytest.raises(GiniConfigError, match="max_shards"):
        shard_window("2026-01-01", "2026-01-02", by=timedelta(milliseconds=1))
    assert len(shard_window("2020-01-01", "2026-01-01", by="day", max_shards=3000)) == 2192


def test_parts_are_equal_whole_milliseconds_and_tile_the_window() -> None:
    rng = random.Random(16)
    for _ in range(200):
        start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(10**11))
        end = start + timedelta(milliseconds=rng.randrange(1, 10**10))
        parts = rng.randint(1, min(64, (end - start) // timedelta(milliseconds=1)))
        shards = shard_window(start, end, parts=parts)
        assert len(shards) == parts
        assert_tiles(shards, start, end)
        lengths = {b - a for a, b in windows(shards)}
        assert max(lengths) - min(lengths) <= timedelta(milliseconds=1)
        assert all((a - start) % timedelta(milliseconds=1) == timedelta(0) for a, _ in windows(shards))


def test_a_timedelta_cuts_every_so_long_from_the_start() -> None:
    start = datetime(2026, 1, 5, 1, tzinfo=UTC)
    shards = shard_window(start, start + timedelta(hours=13), by=timedelta(hours=6))
    assert [b - a for a, b in windows(shards)] == [timedelta(hours=6), timedelta(hours=6), timedelta(hours=1)]


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("2026-01-02", "2026-01-01"), {"by": "day"}, "empty"),
        (("2026-01-01", "2026-01-01"), {"parts": 2}, "empty"),
        (("2026-01-01", "2026-01-02"), {}, "one of them"),
        (("2026-01-01", "2026-01-02"), {"by": "day", "parts": 2}, "one of them"),
        (("2026-01-01", "2026-01-02"), {"by": "month"}, "'day', 'week' or a timedelta"),
        (("2026-01-01", "2026-01-02"), {"parts": 0}, "at least 1"),
        (("2026-01-01", "2026-01-02"), {"parts": 2.5}, "whole number"),
        (("2026-01-01T00:00:00", "2026-01-01T00:00:00.002"), {"parts": 3}, "no millisecond"),
        (("2026-01-01", "2026-01-02"), {"by": timedelta(microseconds=10)}, "milliseconds"),
        (("yesterday", "2026-01-02"), {"by": "day"}, "ISO 8601"),
        ((None, "2026-01-02"), {"by": "day"}, "needs a start and an end"),
    ],
)
def test_a_cut_that_cannot_tile_the_window_says_why(
    args: tuple[Any, ...], kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(GiniConfigError, match=says):
        shard_window(*args, **kwargs)


def test_per_account_gives_each_connection_its_own_folder() -> None:
    assert per_account(["gini_a", "gini_b"], "s3://bucket/gini/", include_processed=True) == [
        {"gini_conn_id": "gini_a", "destination": "s3://bucket/gini/gini_a", "include_processed": True},
        {"gini_conn_id": "gini_b", "destination": "s3://bucket/gini/gini_b", "include_processed": True},
    ]
    for bad in ([], ["a", "a"], ["../x"], [".."], [""]):
        with pytest.raises(GiniConfigError, match="per_account"):
            per_account(bad, "/tmp/x")
    with pytest.raises(GiniConfigError, match="gini_conn_id"):
        per_account(["a"], "/tmp/x", gini_conn_id="b")


def test_a_mapped_pulls_watermark_is_its_connections_not_its_map_index() -> None:
    def context(map_index: int) -> dict[str, Any]:
        return {"ti": SimpleNamespace(dag_id="d", task_id="pull", map_index=map_index)}

    assert default_key(context(-1), "gini_a") == "d/pull"
    assert default_key(context(0), "gini_a") == default_key(context(1), "gini_a") == "d/pull/gini_a"
    assert default_key(context(0), "gini_a") != default_key(context(0), "gini_b")


ACCOUNTS_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG, task, get_current_context
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    @task
    def accounts():
        return get_current_context()["dag_run"].conf["accounts"]

    GiniPullDocumentsOperator.partial(
        task_id="pull", destination="{{ dag_run.conf['destination'] }}", start="2026-01-01", max_workers=2,
        created_before="{{ dag_run.conf['before'] }}",
    ).expand(gini_conn_id=accounts())
"""


def test_accounts_in_one_destination_keep_their_watermarks_when_the_list_changes_order(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run 1 pulls account a, and b's pull fails (a wrong password), so only a has a watermark.
    Run 2 lists b first: keyed by map index, b would take a's watermark and skip its documents."""
    from airflow_provider_gini.sandbox.server import connection_dict

    b_right = connection_dict(gini_connection.base_url, user=OTHER_USER)
    b_wrong = {**b_right, "password": "not-the-password"}  # pragma: allowlist secret
    monkeypatch.setenv("AIRFLOW_CONN_GINI_A", gini_connection.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_GINI_B", json.dumps(b_wrong))
    dag = dag_file(ACCOUNTS_DAG)
    conf = {"destination": str(tmp_path), "before": "2026-01-09T00:00:00+00:00"}
    first = dag.test(run_conf={**conf, "accounts": ["gini_a", "gini_b"]})
    assert task_states(first)["pull[0]"] == "success"
    assert task_states(first)["pull[1]"] == "failed"
    monkeypatch.setenv("AIRFLOW_CONN_GINI_B", json.dumps(b_right))
    second = dag.test(run_conf={**conf, "accounts": ["gini_b", "gini_a"]})
    assert second.state == "success", task_states(second)
    b_result = xcom(second, "pull", map_index=0)
    before = int(datetime(2026, 1, 9, tzinfo=UTC).timestamp() * 1000)
    b_truth = {d["id"] for d in gini_connection.documents(owner=OTHER_USER.email, created_before=before)}
    assert b_truth
    assert b_result["pulled"] == len(b_truth)
    assert b_truth <= {p.name for p in tmp_path.iterdir()}
    assert xcom(second, "pull", map_index=1)["pulled"] == 0  # a: nothing new since its watermark
