"""Deferred waits in a real ``airflow triggerer`` (#14): sixteen sensors wait in the triggerer on
documents whose every poll takes seconds at Gini, and one more on a document that completes while
those polls are under way. Its trigger keeps polling at its own interval, never queued behind
the slow polls, and its task ends soon after its document completes. Measured from the
sandbox's request log (when each poll reached Gini) and Airflow's metadata DB."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.deployment import check_state_race, once_more_on_state_race
from tests.executors.test_local_executor import local_executor_deployment

pytestmark = pytest.mark.timeout(900)  # two runs from scratch at most, on a loaded machine

DAG_ID = "gini_triggerer"
SLOW_POLL = 5.0  # seconds each poll of a slow document takes at Gini
HOUR = 3600.0
# More slow triggers than the four threads all triggers shared before #14: with those, every
# freed thread went to a queued slow poll, and the fast trigger's polls waited behind them.
SLOW = 16
CONTENDED = 5  # fast polls seen while four or more slow polls were at Gini, before it completes
POKE = 0.5
RUN_TIMEOUT = 300.0

DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.sensors.documents import GiniDocumentProcessedSensor

with DAG("gini_triggerer", schedule="@once", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    for name, document_id in DOCUMENTS:
        GiniDocumentProcessedSensor(task_id=name, document_id=document_id, deferrable=True,
                                    poke_interval=POKE, timeout=300)
"""


def test_a_slow_poll_in_the_triggerer_delays_no_other_trigger(
    gini_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    once_more_on_state_race(
        lambda folder: slow_and_fast(gini_sandbox, folder), tmp_path, gini_sandbox.clear_faults
    )


def slow_and_fast(gini_sandbox: RunningSandbox, tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    gini_sandbox.clear_faults()
    # Pending until the sandbox's clock is moved on by an hour, once the triggerer is polling all
    # five: then the fast document completes, the slow ones a little later. (Moving the clock
    # again later would expire the tokens of polls still under way at Gini, twice in a row.)
    slow = gini_sandbox.insert_documents(count=SLOW, readyIn=HOUR + 3 * SLOW_POLL)
    [fast] = gini_sandbox.insert_documents(readyIn=HOUR)
    for document_id in slow:
        gini_sandbox.add_fault("latency", path=f"/documents/{document_id}", method="GET", delay=SLOW_POLL)
    documents = [*((f"slow_{n}", d) for n, d in enumerate(slow)), ("fast", fast)]
    (home / "dags" / "gini_triggerer.py").write_text(
        DAG.replace("DOCUMENTS", repr(documents)).replace("POKE", repr(POKE))
    )
    gini_sandbox.reset_counters()  # and the request log
    env = {**gini_sandbox.connection_env("gini_default"), "AIRFLOW__CORE__PARALLELISM": "4"}

    def polls() -> tuple[list[float], list[tuple[float, float]]]:
        log = [
            r
            for r in gini_sandbox.requests()
            if r["method"] == "GET" and r["route"] == "/documents/{document_id}"
        ]
        fast_polls = [r["time"] for r in log if r["path"] == f"/documents/{fast}"]
        slow_calls = [
            (r["time"], r["time"] + r["duration"]) for r in log if r["path"] != f"/documents/{fast}"
        ]
        return fast_polls, slow_calls

    def contended(fast_polls: list[float], slow_calls: list[tuple[float, float]]) -> list[float]:
        """The fast document's polls made while at least four slow polls were at Gini (with 50 ms
        to spare at each end: the sandbox logs a request's end a little after it answers)."""
        return [t for t in fast_polls if sum(1 for a, b in slow_calls if a + 0.05 < t < b - 0.05) >= 4]

    def run_state() -> str | None:
        runs = dict(deployment.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", DAG_ID))
        if "failed" in runs.values():
            check_state_race(deployment)
            tasks = deployment.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", DAG_ID)
            pytest.fail(f"the run failed: {tasks}\n{deployment.report()}")
        return next(iter(runs.values()), None)

    def task_done(task_id: str) -> bool | None:
        run_state()
        rows = deployment.query(
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ?", DAG_ID, task_id
        )
        return True if rows and rows[0][0] == "success" else None

    with local_executor_deployment(home, env) as deployment:
        deployment.start("triggerer", "triggerer")
        deployment.wait_for(
            "the fast trigger polling beside the slow polls",
            lambda: True if len(contended(*polls())) >= CONTENDED else (run_state() and None),
            RUN_TIMEOUT,
        )
        completed_at = time.time()
        gini_sandbox.advance_clock(HOUR)  # the fast document completes
        deployment.wait_for("the fast sensor", lambda: task_done("fast"), RUN_TIMEOUT)
        fast_polls, slow_calls = polls()
        deployment.wait_for("the run", lambda: True if run_state() == "success" else None, RUN_TIMEOUT)
        tasks = dict(deployment.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", DAG_ID))
    assert tasks == {**{f"slow_{n}": "success" for n in range(SLOW)}, "fast": "success"}, tasks

    under_way = contended([t for t in fast_polls if t < completed_at], slow_calls)
    gaps = [b - a for a, b in itertools.pairwise(fast_polls) if a in under_way]
    after = [t - completed_at for t in fast_polls if t >= completed_at]
    print(
        f"FIGURE real triggerer, {SLOW} slow triggers polling {SLOW_POLL:g} s each: {len(under_way)} polls of "
        f"the fast document while 4 or more slow polls were at Gini, at most {max(gaps):.2f} s apart (poke_interval {POKE:g} s; before #14, the "
        f"same test: not 5 such polls in 300 s, each queued behind slow ones on the 4 shared threads); its first poll after it completed "
        f"came {after[0]:.2f} s later"
    )
    assert len(under_way) >= CONTENDED
    assert max(gaps) < SLOW_POLL / 2, gaps
    assert after
    assert after[0] < SLOW_POLL / 2
