"""Which window each kind of DAG run pulls, under a real scheduler (LocalExecutor): catch-up
runs, a backfill (``airflow backfill create``) that reprocesses dates already pulled (Airflow
clears those runs and runs them again: the older pulls nothing new, the one that moved the
watermark lists its window again), a manual run
without a logical date (``airflow dags trigger`` without ``-l``) and an asset-triggered run. Two
DAGs share one watermark (``watermark_key``) in one destination; over the whole sequence every
document the sandbox holds from ``start`` to the last run's end is pulled exactly once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.deployment import Deployment, check_state_race, once_more_on_state_race
from tests.executors.test_local_executor import local_executor_deployment

pytestmark = pytest.mark.timeout(1500)  # two runs from scratch at most, on a loaded machine

UTC = timezone.utc
START = datetime(2026, 1, 5, tzinfo=UTC)
JAN6, JAN7 = datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC)
# One step of the sequence: a backfill on Airflow 3.0 took over 180 s on a loaded machine.
STEP_TIMEOUT = 300.0

DAGS = """
from datetime import datetime, timezone
from airflow.sdk import DAG, Asset, task
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

READY = Asset("gini://inbox-ready")
utc = timezone.utc


def pull():
    return GiniPullDocumentsOperator(task_id="pull", destination=DESTINATION, watermark_key="inbox",
                                     start="2026-01-05T00:00:00+00:00", max_workers=4)


with DAG("gini_runs_scheduled", schedule="@daily", start_date=datetime(2026, 1, 6, tzinfo=utc),
         end_date=datetime(2026, 1, 7, tzinfo=utc), catchup=True, max_active_runs=1):
    pull()

with DAG("gini_runs_producer", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=utc)):
    @task(outlets=[READY])
    def announce():
        return "ready"

    announce()

with DAG("gini_runs_on_asset", schedule=[READY], start_date=datetime(2026, 1, 1, tzinfo=utc)):
    pull()
"""


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def pull_tries(deployment: Deployment, dag_id: str) -> dict[str, tuple[str, int]]:
    rows = deployment.query(
        "SELECT run_id, state, try_number FROM task_instance WHERE dag_id = ? AND task_id = 'pull'", dag_id
    )
    return {run_id: (state, try_number) for run_id, state, try_number in rows}


def settled(
    deployment: Deployment, dag_id: str, runs: int, tries: int = 1
) -> Callable[[], dict[str, tuple[str, int]] | None]:
    """The pull tasks of ``dag_id`` once ``runs`` of them reached try ``tries`` and succeeded."""

    def check() -> dict[str, tuple[str, int]] | None:
        found = pull_tries(deployment, dag_id)
        failed = {r: s for r, s in found.items() if s[0] in ("failed", "upstream_failed")}
        if failed:
            check_state_race(deployment)
            pytest.fail(f"pull failed: {failed}\n{deployment.report()}")
        done = {
            r: s for r, s in found.items() if s == ("success", tries) or (s[0] == "success" and s[1] > tries)
        }
        return found if len(done) >= runs and len(found) >= runs else None

    return check


def windows(home: Path, dag_id: str) -> dict[tuple[str, int], str]:
    """What each try of each run said it pulled, from its task log."""
    found = {}
    for log in (home / "logs" / f"dag_id={dag_id}").glob("run_id=*/task_id=pull/attempt=*.log"):
        run_id = log.parent.parent.name.removeprefix("run_id=")
        attempt = int(log.stem.removeprefix("attempt="))
        said = re.search(r"Pulling Gini documents created in (.+?), and \d+ unfinished", log.read_text())
        assert said, log
        found[(run_id, attempt)] = said.group(1)
    return found


def bounds(window: str) -> tuple[str, str]:
    """The start and end of a window as a task log shows it: ``[start, end) (why)``."""
    found = re.match(r"\[(.+?), (.+?)\) \(", window)
    assert found, window
    return found.group(1), found.group(2)


def backfill_both_days(deployment: Deployment) -> None:
    """``airflow backfill create`` for Jan 6 and 7, again for the days left until both runs are
    in a backfill.

    Before 3.3, Airflow commits the backfill's row before it creates or clears its runs, and
    clearing a run commits too: when SQLite answers "database is locked" half-way, the CLI exits 1
    and leaves a backfill with some of its runs or none (apache/airflow#66726, fixed in 3.3 by
    #67900, which removes such a backfill). Seen in CI: six tries, each stopped after Jan 6. A
    new one is refused ("Another backfill is running") until the scheduler marks the last one
    complete, which it checks every 30 s. What is done is read from the DB, not the exit code."""
    days = {JAN6.date().isoformat(): JAN6, JAN7.date().isoformat(): JAN7}

    def left() -> list[datetime]:
        found = deployment.query(
            "SELECT DISTINCT r.logical_date FROM backfill_dag_run r JOIN backfill b ON b.id = r.backfill_id "
            "WHERE b.dag_id = 'gini_runs_scheduled' AND r.dag_run_id IS NOT NULL"
        )
        done = {str(logical_date)[:10] for (logical_date,) in found}
        return [day for key, day in days.items() if key not in done]

    deadline = time.monotonic() + 2 * STEP_TIMEOUT
    while todo := left():
        result = deployment.airflow(
            *("backfill", "create", "--dag-id", "gini_runs_scheduled"),
            *("--from-date", min(todo).isoformat(), "--to-date", max(todo).isoformat()),
            *("--reprocess-behavior", "completed"),
        )
        if not left():
            return
        if time.monotonic() > deadline:
            said = (result.stdout + result.stderr)[-3000:]
            pytest.fail(
                f"backfill create left {todo} (exit {result.returncode}):\n{said}\n{deployment.report()}"
            )
        time.sleep(5)


def test_every_run_type_pulls_its_own_window_with_no_gap_and_no_overlap(
    gini_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    once_more_on_state_race(lambda folder: every_run_type(gini_sandbox, folder), tmp_path)


def every_run_type(gini_sandbox: RunningSandbox, tmp_path: Path) -> None:
    home, destination = tmp_path / "airflow", tmp_path / "destination"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "gini_runs.py").write_text(DAGS.replace("DESTINATION", repr(str(destination))))
    with local_executor_deployment(home, gini_sandbox.connection_env("gini_default")) as deployment:
        # Catch-up: the scheduled runs of Jan 6 and Jan 7, the first from start.
        deployment.wait_for("two catch-up runs", settled(deployment, "gini_runs_scheduled", 2), STEP_TIMEOUT)
        # A backfill that reprocesses both dates (Airflow clears their runs and runs them again):
        # their ends are at or before the watermark, so they pull nothing new.
        backfill_both_days(deployment)
        deployment.wait_for(
            "the backfill", settled(deployment, "gini_runs_scheduled", 2, tries=2), STEP_TIMEOUT
        )
        # A manual run without a logical date: from the watermark to its run_after.
        runs_before = len(deployment.query("SELECT run_id FROM dag_run WHERE dag_id = 'gini_runs_scheduled'"))
        manual = deployment.airflow_write(
            *("dags", "trigger", "gini_runs_scheduled"),
            done=lambda: (
                len(deployment.query("SELECT run_id FROM dag_run WHERE dag_id = 'gini_runs_scheduled'"))
                > runs_before
            ),
        )
        assert manual.returncode == 0, manual.stdout + manual.stderr
        deployment.wait_for("the manual run", settled(deployment, "gini_runs_scheduled", 3), STEP_TIMEOUT)
        # New documents, then an asset event: the asset-triggered run pulls them.
        time.sleep(1)
        new = gini_sandbox.insert_documents(count=5, creationDate=int(time.time() * 1000), spacingMs=10)
        time.sleep(1)
        produced = deployment.airflow_write(
            *("dags", "trigger", "gini_runs_producer"),
            done=lambda: bool(
                deployment.query("SELECT run_id FROM dag_run WHERE dag_id = 'gini_runs_producer'")
            ),
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr
        deployment.wait_for(
            "the asset-triggered run", settled(deployment, "gini_runs_on_asset", 1), STEP_TIMEOUT
        )
        runs = deployment.query(
            "SELECT dag_id, run_id, run_type, logical_date, run_after FROM dag_run "
            "WHERE dag_id IN ('gini_runs_scheduled', 'gini_runs_on_asset')"
        )
    report = deployment.report()
    kinds = {
        run_id: (dag_id, run_type, logical_date, run_after)
        for dag_id, run_id, run_type, logical_date, run_after in runs
    }
    [manual_run] = [r for r, k in kinds.items() if k[0] == "gini_runs_scheduled" and k[2] is None]
    [asset_run] = [r for r, k in kinds.items() if k[0] == "gini_runs_on_asset"]
    assert (kinds[asset_run][1], kinds[asset_run][2]) == ("asset_triggered", None), kinds
    manual_after = datetime.fromisoformat(kinds[manual_run][3]).replace(tzinfo=UTC)
    asset_after = datetime.fromisoformat(kinds[asset_run][3]).replace(tzinfo=UTC)

    said = {**windows(home, "gini_runs_scheduled"), **windows(home, "gini_runs_on_asset")}
    jan6, jan7 = f"scheduled__{JAN6.isoformat()}", f"scheduled__{JAN7.isoformat()}"
    assert said[(jan6, 1)] == f"[{START.isoformat()}, {JAN6.isoformat()}) (first pull, from start)", said
    assert said[(jan7, 1)] == f"[{JAN6.isoformat()}, {JAN7.isoformat()}) (from the watermark)", said
    # The backfill: Jan 6 is behind the watermark, so nothing new; Jan 7 is the run that moved the
    # watermark, so its new try lists its window again (all of it skipped, as stored).
    nothing_new = "nothing new (the watermark is at or past this run's end, {})"
    assert said[(jan6, 2)] == nothing_new.format(JAN6.isoformat()), said
    assert said[(jan7, 2)] == said[(jan7, 1)], said
    assert said[(manual_run, 1)].startswith(f"[{JAN7.isoformat()}, "), said
    manual_end = bounds(said[(manual_run, 1)])[1]
    # From the watermark the manual run left: its end, less watermark_lag (300 s) before its
    # listing began, so the asset-triggered run lists that overlap again and skips it.
    assert bounds(said[(asset_run, 1)])[0] <= manual_end, said
    assert datetime.fromisoformat(manual_end) >= manual_after

    # Over the sequence: every document from start to the last run's end pulled exactly once.
    pulled: list[str] = []
    for manifest in (destination / "_manifests").glob("*.jsonl"):
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        pulled += [line["id"] for line in lines if line["outcome"] in ("pulled", "errored")]
    assert len(pulled) == len(set(pulled)), "a document was pulled twice"
    [again] = (destination / "_manifests").glob("manifest-scheduled__2026-01-07*.try2.jsonl")
    outcomes = [json.loads(line)["outcome"] for line in again.read_text().splitlines()]
    assert outcomes, again
    assert set(outcomes) == {"skipped"}, outcomes
    asset_end = datetime.fromisoformat(bounds(said[(asset_run, 1)])[1])
    truth = {d["id"] for d in gini_sandbox.documents(created_after=ms(START), created_before=ms(asset_end))}
    assert set(new) <= truth
    assert set(pulled) == truth, report
    assert {p.parent.name for p in destination.glob("*/document.json")} == truth
    assert asset_after >= manual_after
