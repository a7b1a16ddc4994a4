"""OpenLineage: with the ``openlineage`` extra installed, a real Airflow run of the pull operator
emits events naming the Gini API as input and the destination as output.

The run goes through ``airflow dags test`` in a child process because the OpenLineage provider
reads and caches its transport configuration once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.operators.lineage import dataset_name
from airflow_provider_gini.sandbox import RunningSandbox
from tests.compat import AIRFLOW_V_3_1_PLUS

pytest.importorskip("airflow.providers.openlineage", reason="needs the openlineage extra")

PULL_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    GiniPullDocumentsOperator(task_id="pull", destination=%r, full_history=True, max_workers=2)
"""


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_pull_emits_openlineage_datasets(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    destination = tmp_path / "documents"
    dag = dag_file(PULL_DAG % str(destination))
    log = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(log), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "gini-tests",
    }
    airflow = Path(sys.executable).with_name("airflow")
    if not AIRFLOW_V_3_1_PLUS:
        # Registers the DAG and activates its outlet Asset, as a dag-processor would: Airflow
        # 3.0's `dags test` refuses a task whose outlets are not active assets.
        subprocess.run(  # noqa: S603
            [str(airflow), "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=240
        )
    done = subprocess.run(  # noqa: S603
        [str(airflow), "dags", "test", dag.dag_id, "2026-01-07"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    events = [e for e in _events(log) if e["job"]["name"] == f"{dag.dag_id}.pull"]
    complete = [e for e in events if e["eventType"] == "COMPLETE"]
    assert len(complete) == 1, [e["eventType"] for e in events]
    [event] = complete
    [source] = event["inputs"]
    assert source["namespace"] == gini_connection.base_url
    assert source["name"] == "documents"
    assert "2026-01-07" in source["facets"]["documentation"]["description"]
    [target] = event["outputs"]
    assert (target["namespace"], target["name"]) == ("file", str(destination))
    stored = [p for p in destination.iterdir() if (p / "document.json").exists()]
    assert stored, "the run pulled nothing"
    assert target["outputFacets"]["outputStatistics"]["rowCount"] == len(stored)
    assert event["run"]["facets"]["airflow"]["task"]["operator_class"] == "GiniPullDocumentsOperator"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/gini", ("file", "/data/gini")),
        ("/data/gini", ("file", "/data/gini")),
        ("s3://bucket/prefix/gini", ("s3://bucket", "prefix/gini")),
        ("gs://bucket", ("gs://bucket", "/")),
    ],
)
def test_dataset_names_follow_the_openlineage_naming_spec(uri: str, expected: tuple[str, str]) -> None:
    assert dataset_name(uri) == expected
