"""A catch-up of five daily runs side by side under a real scheduler (LocalExecutor,
``parallelism=4``, ``max_active_runs=5``), each with an incremental pull and a mapped pull of its
own day's halves, all into one destination. Whatever order the runs' tasks take, the destination
ends with every document exactly once, no temporary file, and one manifest per task instance;
the incremental pulls take turns on their shared watermark, so together they list every
document of the catch-up."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.deployment import check_state_race, once_more_on_state_race
from tests.executors.test_local_executor import local_executor_deployment
from tests.reliability.helpers import assert_destination, temporary_files

pytestmark = pytest.mark.timeout(900)  # two runs from scratch at most, on a loaded machine

UTC = timezone.utc
DAG_ID = "gini_catch_up"
# Airflow 3's @daily (CronTriggerTimetable) runs at Jan 2, ..., Jan 6, 00:00: each run's pull
# ends there, so the catch-up covers [Jan 1, Jan 6).
FIRST, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)
RUNS = 5
MAPPED = 2
RUNS_TIMEOUT = 420.0

DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

utc = timezone.utc
with DAG("gini_catch_up", schedule="@daily", start_date=datetime(2026, 1, 2, tzinfo=utc),
         end_date=datetime(2026, 1, 6, tzinfo=utc), catchup=True, max_active_runs=5):
    GiniPullDocumentsOperator(task_id="pull", destination=DESTINATION, start="2026-01-01T00:00:00+00:00",
                              include_processed=True, max_workers=4)
    GiniPullDocumentsOperator.partial(
        task_id="halves", destination=DESTINATION, include_processed=True, max_workers=4
    ).expand_kwargs([
        {"created_after": "{{ logical_date.subtract(days=1) }}",
         "created_before": "{{ logical_date.subtract(hours=12) }}"},
        {"created_after": "{{ logical_date.subtract(hours=12) }}", "created_before": "{{ logical_date }}"},
    ])
"""


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_a_catch_up_side_by_side_stores_every_document_once(
    gini_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    once_more_on_state_race(
        lambda folder: catch_up(gini_sandbox, folder), tmp_path, gini_sandbox.reset_counters
    )


def catch_up(gini_sandbox: RunningSandbox, tmp_path: Path) -> None:
    home, destination = tmp_path / "airflow", tmp_path / "destination"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "gini_catch_up.py").write_text(DAG.replace("DESTINATION", repr(str(destination))))
    # Slow enough that the runs' pulls overlap in time, writing the same document folders.
    gini_sandbox.clear_faults()
    if not gini_sandbox.documents(created_after=ms(FIRST), created_before=ms(FIRST + timedelta(hours=3))):
        gini_sandbox.insert_documents(count=55, creationDate=ms(FIRST) + 3_600_000, spacingMs=7_200_000)
    gini_sandbox.add_fault("latency", path="/documents/*", delay=0.02)
    env = {**gini_sandbox.connection_env("gini_default"), "AIRFLOW__CORE__PARALLELISM": "4"}

    def finished() -> list[tuple[str, str, int, str, int]] | None:
        rows = deployment.query(
            "SELECT run_id, task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ?", DAG_ID
        )
        runs = dict(deployment.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", DAG_ID))
        if "failed" in runs.values():
            check_state_race(deployment)
            pytest.fail(f"DAG runs failed: {runs}; tasks: {sorted(rows)}\n{deployment.report()}")
        done = len(runs) == RUNS and set(runs.values()) == {"success"}
        return sorted(rows) if done else None

    with local_executor_deployment(home, env) as deployment:
        tasks = deployment.wait_for("five successful catch-up runs", finished, RUNS_TIMEOUT)
        xcoms = deployment.query(
            "SELECT run_id, task_id, map_index, value FROM xcom WHERE dag_id = ? AND key = 'return_value'",
            DAG_ID,
        )
        started = deployment.query(
            "SELECT run_id, start_date, end_date FROM task_instance WHERE dag_id = ? AND task_id = 'pull'",
            DAG_ID,
        )
    gini_sandbox.clear_faults()
    report = deployment.report()
    assert len(tasks) == RUNS * (1 + MAPPED), report
    assert {state for _, _, _, state, _ in tasks} == {"success"}, tasks

    # Every document of the catch-up exactly once, complete, and no temporary file or lease left.
    checked = assert_destination(gini_sandbox, destination, FIRST, END, processed=True)
    assert temporary_files(destination) == []
    assert list((destination / "_leases").iterdir()) == []

    # One manifest per task instance, each named for its run, task and map index.
    results = {(run, task, index): json.loads(value) for run, task, index, value in xcoms}
    assert len(results) == RUNS * (1 + MAPPED)
    manifests = sorted(p.name for p in (destination / "_manifests").iterdir())
    assert len(manifests) == RUNS * (1 + MAPPED), manifests
    assert sorted(Path(r["manifest"]).name for r in results.values()) == manifests
    for (run, task, index), result in results.items():
        label = task if index < 0 else f"{task}.{index}"
        assert re.fullmatch(
            rf"manifest-{re.escape(re.sub(r'[^A-Za-z0-9._-]+', '_', run))}\.{label}\.jsonl",
            Path(result["manifest"]).name,
        ), (run, task, index, result["manifest"])

    # The incremental pulls took turns on their watermark: together they list every document
    # once past the first (a run whose window the one before covered lists nothing new).
    listed: dict[str, int] = {}
    for (_, task, _), result in results.items():
        if task != "pull":
            continue
        path = Path(result["manifest"].removeprefix("file://"))
        for line in path.read_text().splitlines():
            listed[json.loads(line)["id"]] = listed.get(json.loads(line)["id"], 0) + 1
    assert set(listed) == set(checked.truth), sorted(set(checked.truth) ^ set(listed))
    [state] = [json.loads(p.read_text()) for p in (destination / "_state").glob("*.json")]
    assert state["key"] == f"{DAG_ID}/pull"
    assert state["outstanding"] == {}
    spans = sorted((s, e) for _, s, e in started)
    overlapping = sum(1 for (_, e1), (s2, _) in itertools.pairwise(spans) if s2 < e1)
    waited = [
        p.parent.parent.name
        for p in (home / "logs" / f"dag_id={DAG_ID}").glob("run_id=*/task_id=pull/attempt=*.log")
        if "Waiting for the pull of" in p.read_text(errors="replace")
    ]
    fetched = gini_sandbox.counters()["routes"].get("GET /documents/{document_id}/extractions", 0)
    print(
        f"FIGURE catch-up of {RUNS} runs, parallelism=4: {len(checked.complete)} documents stored once each "
        f"({len(checked.truth)} in Gini), {len(manifests)} manifests for {len(results)} task instances, "
        f"0 temporary files; incremental pulls overlapping in time: {overlapping}, of which {len(waited)} waited for their turn; most listings of one "
        f"document by the incremental pulls: {max(listed.values())}; extractions fetched {fetched} times"
    )
