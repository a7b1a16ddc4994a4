"""A sharded backfill on a real distributed deployment (#16): PostgreSQL as the metadata DB,
Redis as the Celery broker, the scheduler, dag-processor, api-server and triggerer, and two
Celery workers with hostnames and queues of their own (``--concurrency 2`` each), all started
here on loopback, with the Gini sandbox.

One DAG run pulls 5,000 documents in 10 daily shards (mapped pulls of one connection, spread over
both workers), then the same window in one task, and uploads a document and waits for it
deferrably (in the triggerer). Asserted from the metadata DB, the sandbox and the destination:
every document exactly once on disk, shards on both workers (``task_instance.hostname``), one
password grant per shard, the wait deferred to the triggerer and completed."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import DEMO_USER, PLAIN_CLIENT, RunningSandbox
from tests.celery_deployment import WORKERS, celery_deployment
from tests.deployment import REPO, Deployment
from tests.servers import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.timeout(1800)

UTC = timezone.utc
DAG_ID = "gini_celery_backfill"
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS, PER_DAY = 10, int(os.environ.get("GINI_CELERY_PER_DAY", "500"))
LATENCY_MS = float(os.environ.get("GINI_CELERY_LATENCY_MS", "0"))  # per API request, at the sandbox
END = START + timedelta(days=DAYS)
# benchmarks/sharded.py runs this test with a file for its figures, and may ask for more documents.
FIGURES = os.environ.get("GINI_CELERY_FIGURES")

DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator, GiniUploadDocumentOperator
from airflow_provider_gini.pull.fanout import shard_window

with DAG("DAG_ID", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    shards = GiniPullDocumentsOperator.partial(
        task_id="shard", gini_conn_id="gini_shards", destination="SHARDED", max_workers=4, page_size=250,
    ).expand_kwargs(shard_window("START", "END", by="day"))
    one = GiniPullDocumentsOperator(
        task_id="one_task", destination="SINGLE", created_after="START", created_before="END",
        max_workers=4, page_size=250,
    )
    upload = GiniUploadDocumentOperator(
        task_id="upload", file="SAMPLE", wait_for_processing=True, deferrable=True, poll_interval=1.0,
        queue="gini_b",
    )
    shards >> one >> upload
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


def test_a_sharded_backfill_runs_on_both_celery_workers(
    gini_sandbox: RunningSandbox, pg: PostgresCluster, tmp_path: Path
) -> None:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    for day in range(DAYS):
        first = int((START + timedelta(days=day)).timestamp() * 1000)
        # Spread over the day, the first at midnight: a document on every shard boundary.
        gini_sandbox.insert_documents(count=PER_DAY, creationDate=first, spacingMs=86_400_000 // PER_DAY)
    # The upload stays PENDING a while: a real deferral, long enough to see it in the triggerer.
    gini_sandbox.settings(processing_delay=10.0)
    if LATENCY_MS:
        gini_sandbox.add_fault("latency", path="/documents*", delay=LATENCY_MS / 1000)
    source = DAG
    for name, value in {
        "DAG_ID": DAG_ID,
        "SHARDED": str(sharded),
        "SINGLE": str(single),
        "START": START.isoformat(),
        "END": END.isoformat(),
        "SAMPLE": str(REPO / "example_dags" / "sample_documents" / "rechnung-sample-1.pdf"),
    }.items():
        source = source.replace(name, value)
    (home / "dags" / f"{DAG_ID}.py").write_text(source)
    # The shards sign in with one OAuth client, the other tasks with another: the sandbox counts
    # the shards' grants apart.
    env = {
        **gini_sandbox.connection_env("gini_shards"),
        **gini_sandbox.connection_env("gini_default", user=DEMO_USER, client=PLAIN_CLIENT),
    }
    truth = {
        d["id"]
        for d in gini_sandbox.documents(
            created_after=int(START.timestamp() * 1000), created_before=int(END.timestamp() * 1000)
        )
    }
    assert len(truth) == DAYS * PER_DAY
    started = time.monotonic()
    with celery_deployment(home, pg, env) as deployment:
        ready = time.monotonic() - started
        deployment.wait_for("the DAG parsed", lambda: parsed(deployment), 300)
        gini_sandbox.reset_counters()
        triggered = deployment.airflow("dags", "trigger", DAG_ID, timeout=300)
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        deferred: dict[str, Any] = {}
        deployment.wait_for("the DAG run", lambda: run_done(deployment, deferred), 900)
        tasks = task_rows(deployment)
        # A task reports success to the api-server before its Celery task returns and the
        # worker stores the result: wait for the result backend to catch up.
        ids = [t["external_executor_id"] for t in tasks]
        # The Celery result backend in PostgreSQL holds every task's result, SUCCESS.
        deployment.wait_for(
            "every task's result in the Celery result backend",
            lambda: stored_results(deployment, ids),
            120,
        )
        report = deployment.report()

    shards = [t for t in tasks if t["task_id"] == "shard"]
    assert len(shards) == DAYS, report
    assert all(t["state"] == "success" and t["try_number"] == 1 for t in tasks), tasks
    # Both workers ran shards, each only from the queues it serves.
    by_worker = {h: sorted(t["map_index"] for t in shards if t["hostname"] == h) for h in WORKERS}
    assert all(by_worker.values()), by_worker
    assert sum(len(v) for v in by_worker.values()) == DAYS, by_worker
    upload = next(t for t in tasks if t["task_id"] == "upload")
    assert upload["hostname"] == "gini-worker-b"  # its queue, gini_b, is only b's
    # The upload's wait was deferred to the triggerer, which took its trigger, and completed.
    assert deferred.get("triggerer_id") is not None, deferred

    # Every document of the window exactly once, in the sharded destination and the single one.
    for root in (sharded, single):
        stored = {p.parent.name for p in root.glob("*/document.json")}
        assert stored == truth, (root, len(stored), len(truth))
    manifests = sorted((sharded / "_manifests").glob("*.jsonl"))
    assert len(manifests) == DAYS
    ids = [json.loads(line)["id"] for m in manifests for line in m.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(truth)  # no document in two shards

    grants = [
        r for r in gini_sandbox.requests() if r["route"] == "/oauth/token" and r["grantType"] == "password"
    ]
    shard_grants = [r for r in grants if r["clientId"] != PLAIN_CLIENT.client_id]
    assert len(shard_grants) == DAYS, [(r["clientId"], r["grantType"]) for r in grants]

    sharded_seconds = span(shards)
    single_seconds = span([t for t in tasks if t["task_id"] == "one_task"])
    figures = {
        "documents": len(truth),
        "shards": DAYS,
        "deployment_ready_seconds": round(ready, 1),
        "sharded_seconds": round(sharded_seconds, 2),
        "single_seconds": round(single_seconds, 2),
        "sharded_docs_per_second": round(len(truth) / sharded_seconds, 1),
        "single_docs_per_second": round(len(truth) / single_seconds, 1),
        "shards_per_worker": {h: len(v) for h, v in by_worker.items()},
        "latency_ms": LATENCY_MS,
    }
    if FIGURES:
        Path(FIGURES).write_text(json.dumps(figures))
    print(f"FIGURE celery deployment: {json.dumps(figures)}")


def stored_results(deployment: Deployment, ids: list[str]) -> dict[str, int] | None:
    rows = deployment.query(
        "SELECT status, count(*) FROM celery_taskmeta WHERE task_id IN ({}) GROUP BY status".format(  # noqa: S608
            ",".join("?" * len(ids))
        ),
        *ids,
    )
    counts = {str(status): int(n) for status, n in rows}
    if set(counts) - {"SUCCESS", "STARTED", "PENDING", "RECEIVED"}:
        pytest.fail(f"a Celery task did not succeed: {counts}\n{deployment.report()}")
    return counts if counts.get("SUCCESS") == len(ids) else None


def parsed(deployment: Deployment) -> bool | None:
    errors = deployment.query("SELECT filename, stacktrace FROM import_error")
    if errors:
        pytest.fail(f"the DAG did not parse: {errors}")
    return True if deployment.query("SELECT dag_id FROM serialized_dag WHERE dag_id = ?", DAG_ID) else None


def run_done(deployment: Deployment, deferred: dict[str, Any]) -> bool | None:
    rows = deployment.query(
        "SELECT t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
        "WHERE ti.dag_id = ? AND ti.task_id = 'upload' AND ti.state = 'deferred'",
        DAG_ID,
    )
    if rows and rows[0][0] is not None:
        deferred["triggerer_id"] = rows[0][0]
    states = [state for (state,) in deployment.query("SELECT state FROM dag_run WHERE dag_id = ?", DAG_ID)]
    if "failed" in states:
        pytest.fail(f"the run failed: {task_rows(deployment)}\n{deployment.report()}")
    return True if states == ["success"] else None


def task_rows(deployment: Deployment) -> list[dict[str, Any]]:
    columns = ("task_id", "map_index", "state", "try_number", "hostname", "queue", "external_executor_id",
               "start_date", "end_date")  # fmt: skip
    rows = deployment.query(
        f"SELECT {', '.join(columns)} FROM task_instance WHERE dag_id = ? ORDER BY task_id, map_index",  # noqa: S608
        DAG_ID,
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def span(tasks: list[dict[str, Any]]) -> float:
    """From the first task's start to the last one's end."""
    return float((max(t["end_date"] for t in tasks) - min(t["start_date"] for t in tasks)).total_seconds())
