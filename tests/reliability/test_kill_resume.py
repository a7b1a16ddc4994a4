"""Kill and resume: a pull in its own process is SIGKILLed mid-way (as a worker's OOM killer or
a lost node would), then Airflow's retry of the task (same DAG run, so same run_id) runs it again
as a real DAG run. The destination must end complete and consistent, with no temporary file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import xcom
from tests.reliability import figures
from tests.reliability.conftest import Evidence, PullRun
from tests.reliability.helpers import (
    assert_destination,
    assert_no_document_created,
    day,
    kill_mid_way,
    manifests,
    ms,
    temporary_files,
)

pytestmark = pytest.mark.timeout(120)  # a hang fails the case instead of stalling the suite

START, END = day(6), day(8)
RERUN_AT = day(8)  # dag.test(logical_date=RERUN_AT, run_after=RERUN_AT) runs as manual__<RERUN_AT>
RUN_ID = f"manual__{RERUN_AT.isoformat()}"
OPTIONS = {"include_processed": True, "max_workers": 4}

CHILD = textwrap.dedent(
    """
    import json, logging, sys
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    logging.getLogger().setLevel(logging.DEBUG)
    destination, after, before, run_id, options = sys.argv[1:6]
    operator = GiniPullDocumentsOperator(
        task_id="pull", destination=destination, created_after=after, created_before=before,
        hook_params={"backoff_initial": 0.01, "backoff_max": 0.05}, **json.loads(options),
    )
    print("pulling", flush=True)
    print(json.dumps(operator.execute({"run_id": run_id})), flush=True)
    """
)


def complete_documents(root: Path) -> int:
    return len(list(root.glob("*/document.json")))


def test_killed_pull_resumes_to_a_complete_destination(
    gini_connection: RunningSandbox,
    pull_dag: Callable[..., Any],
    run_pull: Callable[..., PullRun],
    evidence: Evidence,
    tmp_path: Path,
) -> None:
    gini_connection.insert_documents(count=60, creationDate=ms(START) + 60_000, spacingMs=60_000)
    total = len(gini_connection.documents(created_after=ms(START), created_before=ms(END)))
    # Slow enough that the child is surely mid-way when killed; the rerun is as slow.
    gini_connection.add_fault("latency", path="/documents/*", delay=0.05)
    destination = tmp_path / "destination"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log_path = tmp_path / "child.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                str(script),
                str(destination),
                START.isoformat(),
                END.isoformat(),
                RUN_ID,
                json.dumps(OPTIONS),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),  # AIRFLOW_HOME and AIRFLOW_CONN_GINI_DEFAULT for this sandbox
        )
        kill_mid_way(child, log_path, destination, 15)
    evidence.texts["killed child's log"] = log_path.read_text(errors="replace")
    done_at_kill = complete_documents(destination)
    left_at_kill = temporary_files(destination)
    assert 15 <= done_at_kill < total, "the kill did not land mid-way"
    assert manifests(destination) == []  # the killed run never committed a manifest
    figures.COUNTS["kill_temporaries"] += len(left_at_kill)

    # What the kill left is never mistaken for a complete document.
    assert_destination(gini_connection, destination, START, END, exact=False, processed=True, killed=True)

    dag = pull_dag(**OPTIONS)
    run = run_pull(dag, destination, START, END, logical_date=RERUN_AT, run_after=RERUN_AT)
    assert run.state == "success", run.errors
    assert run.dag_run.run_id == RUN_ID
    checked = assert_destination(gini_connection, destination, START, END, processed=True)
    assert len(checked.complete) == total
    assert temporary_files(destination) == []
    result = xcom(run.dag_run, "pull")
    assert result["skipped"] >= done_at_kill
    assert result["pulled"] + result["errored"] + result["skipped"] == total
    [lines] = manifests(destination)
    assert sorted(line["id"] for line in lines) == sorted(checked.truth)
    assert_no_document_created(gini_connection)
    figures.COUNTS["kill_resume_correct"] += 1
