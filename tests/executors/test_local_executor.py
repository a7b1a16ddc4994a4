"""The daily-pull example DAG under a real Airflow 3 deployment: api-server, scheduler with the
LocalExecutor and dag-processor as separate processes, on their own AIRFLOW_HOME and SQLite DB.
Unlike ``dag.test()``, every task runs in its own process, gets its connection from the
environment there, and reports to the scheduler through the Execution API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.deployment import (
    REPO,
    Deployment,
    airflow_deployment,
    answers,
    check_state_race,
    core_env,
    free_port,
    once_more_on_state_race,
)

# Room for a second run from scratch (tests/deployment.py's AirflowStateRace) on a loaded machine.
pytestmark = pytest.mark.timeout(600)

UTC = timezone.utc
DAG_ID = "gini_daily_pull_scheduled"
# Catch-up from START to END (both scheduled): two runs, whose windows are (-inf, Jan 6) and
# [Jan 6, Jan 7), so together they pull exactly the seeded documents of Jan 5 and Jan 6.
START, END = datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC)
RUN_IDS = [f"scheduled__{START.isoformat()}", f"scheduled__{END.isoformat()}"]
TASKS = ("pull_documents", "summarise")
RUNS_TIMEOUT = 180.0


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def write_dag(dags: Path) -> None:
    """The example, unchanged but for its id and dates: its own catch-up from 2026-01-05 to today
    would make a run a day, and the first would pull nothing (seeded days start at 07:00)."""
    source = (REPO / "example_dags" / "gini_daily_pull.py").read_text()
    start = "start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),"
    assert 'dag_id="gini_daily_pull"' in source
    assert start in source
    source = source.replace('dag_id="gini_daily_pull"', f'dag_id="{DAG_ID}"').replace(
        start,
        "start_date=datetime(2026, 1, 6, tzinfo=timezone.utc), end_date=datetime(2026, 1, 7, tzinfo=timezone.utc),",
    )
    (dags / f"{DAG_ID}.py").write_text(source)


@contextmanager
def local_executor_deployment(home: Path, extra_env: dict[str, str]) -> Iterator[Deployment]:
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **core_env(api_url),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Airflow 3.3 accepts the LocalExecutor on SQLite. With fork it starts `parallelism`
        # worker processes up front (32 by default), but this DAG runs one task at a time
        # (linear, max_active_runs=1) and SQLite takes one writer at a time anyway.
        "AIRFLOW__CORE__PARALLELISM": "1",
        **extra_env,
    }
    with airflow_deployment(home, env) as deployment:
        deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler")
        health = answers(f"{api_url}/execution/health")
        # 20-30 s on a quiet 2-core machine; over 90 s was seen with both CI sessions starting
        # deployments at once.
        deployment.wait_for("answer from the Execution API", health, timeout=240)
        yield deployment


def runs_finished(deployment: Deployment) -> Callable[[], dict[str, str] | None]:
    def check() -> dict[str, str] | None:
        import_errors = deployment.query("SELECT filename, stacktrace FROM import_error")
        if import_errors:
            pytest.fail(f"The DAG did not parse: {import_errors}")
        rows = deployment.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", DAG_ID)
        states = dict(rows)
        failed = {run: state for run, state in states.items() if state == "failed"}
        if failed:
            check_state_race(deployment)
            pytest.fail(f"DAG runs failed: {states}; tasks: {task_rows(deployment)}\n{deployment.report()}")
        if len(states) >= len(RUN_IDS) and all(state == "success" for state in states.values()):
            return states
        return None

    return check


def task_rows(deployment: Deployment) -> list[dict[str, Any]]:
    columns = ("run_id", "task_id", "state", "try_number", "pid", "hostname", "queued_by_job_id")
    rows = deployment.query(
        f"SELECT {', '.join(columns)} FROM task_instance WHERE dag_id = ? ORDER BY run_id, task_id",  # noqa: S608
        DAG_ID,
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def return_values(deployment: Deployment, task_id: str) -> dict[str, Any]:
    rows = deployment.query(
        "SELECT run_id, value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value'",
        DAG_ID,
        task_id,
    )
    return {run_id: json.loads(value) for run_id, value in rows}


def find_secrets(texts: dict[str, str], known: dict[str, list[str]]) -> list[str]:
    return [
        f"{where}: a {kind} value"
        for where, text in texts.items()
        for kind, values in known.items()
        if any(value in text for value in values)
    ]


def test_daily_pull_under_scheduler_with_local_executor(gini_sandbox: RunningSandbox, tmp_path: Path) -> None:
    once_more_on_state_race(
        lambda folder: daily_pull_under_scheduler(gini_sandbox, folder), tmp_path, gini_sandbox.reset_counters
    )


def daily_pull_under_scheduler(gini_sandbox: RunningSandbox, tmp_path: Path) -> None:
    home, destination = tmp_path / "airflow", tmp_path / "destination"
    (home / "dags").mkdir(parents=True)
    write_dag(home / "dags")
    env = {**gini_sandbox.connection_env("gini_default"), "GINI_DESTINATION": str(destination)}
    with local_executor_deployment(home, env) as deployment:
        states = deployment.wait_for("two successful DAG runs", runs_finished(deployment), RUNS_TIMEOUT)
        component_pids = {c.name: c.process.pid for c in deployment.components}
        scheduler_jobs = [
            row[0] for row in deployment.query("SELECT id FROM job WHERE job_type = 'SchedulerJob'")
        ]
        tasks = task_rows(deployment)
        pulls, summaries = return_values(deployment, "pull_documents"), return_values(deployment, "summarise")
        airflow_secrets = [
            deployment.env["AIRFLOW__API_AUTH__JWT_SECRET"],
            deployment.env["AIRFLOW__API__SECRET_KEY"],
        ]
    report = deployment.report()

    assert states == dict.fromkeys(RUN_IDS, "success")
    assert [(t["run_id"], t["task_id"], t["state"], t["try_number"]) for t in tasks] == [
        (run_id, task_id, "success", 1) for run_id in RUN_IDS for task_id in TASKS
    ], report

    # Queued by the scheduler, each task ran in a process of its own: not the scheduler's, not
    # another component's, not another task's. Each try left its own log file.
    assert {t["queued_by_job_id"] for t in tasks} == set(scheduler_jobs), (tasks, scheduler_jobs)
    task_pids = [t["pid"] for t in tasks]
    assert all(task_pids), tasks
    assert all(t["hostname"] for t in tasks), tasks
    assert len(set(task_pids)) == len(tasks), tasks
    assert not set(task_pids) & set(component_pids.values()), (tasks, component_pids)
    task_logs = sorted((home / "logs" / f"dag_id={DAG_ID}").rglob("*.log"))
    assert [str(p.relative_to(home / "logs" / f"dag_id={DAG_ID}")) for p in task_logs] == [
        f"run_id={run_id}/task_id={task_id}/attempt=1.log" for run_id in RUN_IDS for task_id in TASKS
    ]
    assert all("Gini pull done" in p.read_text() for p in task_logs if "pull_documents" in str(p))

    # Each run pulled its own window: (-inf, Jan 6), then [Jan 6, Jan 7). Together exactly the
    # seeded documents of Jan 5 and Jan 6, each stored with both files, each in one manifest.
    windows = {RUN_IDS[0]: [None, START.isoformat()], RUN_IDS[1]: [START.isoformat(), END.isoformat()]}
    truth = {
        RUN_IDS[0]: {d["id"] for d in gini_sandbox.documents(created_before=ms(START))},
        RUN_IDS[1]: {
            d["id"] for d in gini_sandbox.documents(created_after=ms(START), created_before=ms(END))
        },
    }
    assert all(truth.values()), truth
    for run_id in RUN_IDS:
        pull, summary = pulls[run_id], summaries[run_id]
        assert pull["window"] == summary["window"] == windows[run_id], (pull, summary)
        assert summary["counts"] == {
            "pulled": len(truth[run_id]),
            "skipped": 0,
            "errored": 0,
            "pending": 0,
            "gone": 0,
            "failed": 0,
        }
        assert summary["totals"], summary
        assert all(total.endswith(":EUR") for total in summary["totals"].values()), summary
        manifest = Path(pull["manifest"].removeprefix("file://"))
        assert manifest.parent == destination / "_manifests", pull
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(truth[run_id])
        assert {line["outcome"] for line in lines} == {"pulled"}
    assert len(list((destination / "_manifests").iterdir())) == len(RUN_IDS)
    every = truth[RUN_IDS[0]] | truth[RUN_IDS[1]]
    assert {p.name for p in destination.iterdir()} == every | {"_manifests", "_state", "_leases"}
    for document_id in every:
        assert {p.name for p in (destination / document_id).iterdir()} == {
            "document.json",
            "extractions.json",
        }
        assert json.loads((destination / document_id / "document.json").read_text())["id"] == document_id

    # One sign-in per pull task, as each runs in a fresh process; summarise never calls Gini.
    counters = gini_sandbox.counters()
    assert counters["grants"] == {"password": len(RUN_IDS)}, counters
    assert counters["grant_errors"] == {}, counters
    assert set(counters["statuses"]) == {"200"}, counters
    assert counters["routes"]["GET /documents/{document_id}/extractions"] == len(every), counters

    # No secret in any task log, nor in the components' output (which carries the tasks' too).
    known = {kind: [s for s in values if s] for kind, values in gini_sandbox.secrets().items()}
    known["airflow secret"] = airflow_secrets
    assert all(known[kind] for kind in ("passwords", "client_secrets", "issued_tokens")), known.keys()
    texts = {
        str(p.relative_to(home)): p.read_text(errors="replace")
        for p in [*(home / "logs").rglob("*"), *home.glob("*.log")]
        if p.is_file()
    }
    assert len(texts) >= len(task_logs) + len(component_pids)
    assert find_secrets(texts, known) == []
