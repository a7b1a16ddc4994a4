"""The event-driven example (example_dags/gini_on_new_documents.py) in a real deployment: the
triggerer runs GiniNewDocumentsTrigger as the asset's watcher, the scheduler starts a run for
each asset event, and the LocalExecutor's task pulls exactly the announced documents.

Documents are uploaded over the API, as a user would, with three seconds of processing at the
sandbox; the test prints the delay from each upload to its document on disk. Between the second
and the third upload the triggerer is stopped and started again: it goes on from its state in
the destination, so it announces the third document and never pulls an earlier one twice."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.deployment import REPO, Deployment, _terminate, check_state_race, once_more_on_state_race
from tests.executors.test_local_executor import local_executor_deployment

pytestmark = pytest.mark.timeout(900)

DAG_ID = "gini_on_new_documents"
SAMPLE = REPO / "example_dags" / "sample_documents" / "rechnung-sample-1.pdf"
POLL = 1.0
PROCESSING = 3.0
TIMEOUT = 240.0


def upload(sandbox: RunningSandbox, name: str) -> tuple[str, float]:
    """A document uploaded as a user's app would; its id and when the upload began."""
    started = time.time()
    answer = httpx.post(
        f"{sandbox.base_url}/documents",
        params={"filename": name},
        content=SAMPLE.read_bytes(),
        headers={
            "Authorization": f"Bearer {sandbox.user_token()}",
            "Accept": "application/vnd.gini.v1+json",
            "Content-Type": "application/pdf",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1], started


def test_uploaded_documents_are_pulled_by_the_asset_triggered_dag(
    gini_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    once_more_on_state_race(lambda folder: scenario(gini_sandbox, folder), tmp_path)


def scenario(sandbox: RunningSandbox, tmp_path: Path) -> None:
    home, destination = tmp_path / "airflow", tmp_path / "documents"
    (home / "dags").mkdir(parents=True)
    source = (REPO / "example_dags" / f"{DAG_ID}.py").read_text()
    (home / "dags" / f"{DAG_ID}.py").write_text(source)
    sandbox.settings(processing_delay=PROCESSING)
    env = {
        **sandbox.connection_env("gini_default"),
        "GINI_DESTINATION": str(destination),
        "GINI_POLL_INTERVAL": str(POLL),
        # Airflow 3.0 registers an asset's watchers when it parses the DAG file a second time
        # (at the first, the asset has no active consumer yet); the test's default is 600 s.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    }

    def runs(deployment: Deployment) -> list[tuple[str, str]]:
        rows = deployment.query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", DAG_ID)
        if any(state == "failed" for _, state in rows):
            check_state_race(deployment)
            pytest.fail(f"a run failed: {rows}\n{deployment.report()}")
        return [(r, s) for r, s in rows]

    def stored(document_id: str) -> float | None:
        path = destination / document_id / "document.json"
        return path.stat().st_mtime if path.exists() else None

    def settled(deployment: Deployment) -> list[tuple[str, str]] | None:
        rows = runs(deployment)
        return rows if rows and all(state == "success" for _, state in rows) else None

    delays: list[float] = []
    with local_executor_deployment(home, env) as deployment:
        triggerer = deployment.start("triggerer", "triggerer")
        deployment.wait_for(
            "the watcher's state", lambda: next((destination / "_events").glob("*.json"), None), TIMEOUT
        )
        first, second, third = [], [], []
        for batch, name in ((first, "first.pdf"), (second, "second.pdf")):
            document_id, started = upload(sandbox, name)
            batch.append(document_id)
            at = deployment.wait_for(f"{name} on disk", lambda d=document_id: stored(d), TIMEOUT)
            delays.append(at - started)
            deployment.wait_for("the run's end", lambda: settled(deployment), TIMEOUT)

        # A restart: the state in the destination says what was announced.
        _terminate(triggerer.process)
        deployment.components.remove(triggerer)
        deployment.start("triggerer-2", "triggerer")
        document_id, started = upload(sandbox, "third.pdf")
        third.append(document_id)
        at = deployment.wait_for("third.pdf on disk", lambda: stored(document_id), TIMEOUT)
        delays.append(at - started)
        rows = deployment.wait_for("every run's end", lambda: settled(deployment), TIMEOUT)
        results = pulls(deployment)

    uploaded = first + second + third
    pulled = [i for r in results for i in r["pulled_ids"]]
    # Each upload pulled exactly once (a batch announced again after the restart is skipped),
    # and nothing else: not one of the 35 seeded documents, created before the watcher ran.
    assert sorted(pulled) == sorted(uploaded), results
    assert all(r["failed"] == 0 and r["pending"] == 0 for r in results), results
    assert sorted(p.name for p in destination.iterdir() if not p.name.startswith("_")) == sorted(uploaded)
    assert len(rows) >= 3
    print(
        f"FIGURE event-driven pull (poll_interval {POLL:g} s, {PROCESSING:g} s of processing at Gini): "
        f"upload to document on disk {', '.join(f'{d:.1f}' for d in delays)} s "
        f"(the third after a triggerer restart); {len(rows)} asset-triggered runs"
    )


def pulls(deployment: Deployment) -> list[dict[str, Any]]:
    """Each run's pull result (XCom), with the ids its manifest says it pulled."""
    found = []
    for (value,) in deployment.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'pull_new_documents' AND key = 'return_value'",
        DAG_ID,
    ):
        result = json.loads(value if isinstance(value, str) else value.decode())
        manifest = Path(result["manifest"].removeprefix("file://"))
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        result["pulled_ids"] = [line["id"] for line in lines if line["outcome"] == "pulled"]
        found.append(result)
    return found
