"""Uploads are not idempotent at Gini: a retry must never create a second document. Through
GiniUploadDocumentOperator with task retries, in real DAG runs, counted by the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import EXAMPLES, xcom
from tests.reliability import figures

pytestmark = pytest.mark.timeout(120)  # a hang fails the case instead of stalling the suite

SAMPLE = EXAMPLES / "sample_documents" / "rechnung-sample-1.pdf"

UPLOAD_DAG = f"""
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniUploadDocumentOperator(
        task_id="upload", file="{SAMPLE}", retries=2, retry_delay=timedelta(seconds=RETRY_DELAY),
        hook_params=HOOK_PARAMS,
    )
"""


@dataclass
class UploadCase:
    rule: dict[str, Any]
    posts: int | tuple[int, ...]  # POST /documents requests that reached the sandbox
    tries: int  # the try that succeeded
    hook_params: dict[str, Any] = field(default_factory=dict)
    retry_delay: float = 0.0


CASES = {
    # The case: Gini stored the upload, then the connection was reset before the answer.
    # The task cannot know; it fails without re-sending, and its retry adopts the stored document.
    "reset after Gini stored the upload": UploadCase(
        {"kind": "reset", "path": "/documents", "method": "POST", "first": 1, "after_handler": True},
        posts=1,
        tries=2,
    ),
    # Gini was slow: the client gave up (read timeout) before any answer, so it cannot know
    # whether Gini stored the upload (with the sandbox's server it does not, the client having
    # hung up). Either way the retry, which comes after Gini is done, as Airflow's retry_delay (5
    # min by default) makes sure, here 2 s against a 1 s stall, leaves exactly one document.
    "read timeout on the upload": UploadCase(
        {"kind": "latency", "path": "/documents", "method": "POST", "first": 1, "delay": 1.0},
        posts=(1, 2),
        tries=2,
        hook_params={"read_timeout": 0.3},
        retry_delay=2.0,
    ),
    # Reset before Gini handled it: nothing stored, so the retry uploads once more.
    "reset before Gini handled the upload": UploadCase(
        {"kind": "reset", "path": "/documents", "method": "POST", "first": 1}, posts=2, tries=2
    ),
    # A 503 answer to an upload is not retried in-task (it is not provably unprocessed); the
    # task retry finds no document and uploads.
    "503 to the upload": UploadCase(
        {"kind": "status", "status": 503, "path": "/documents", "method": "POST", "first": 1},
        posts=2,
        tries=2,
    ),
    # 429: Gini refused it unprocessed, so the client itself may send it again.
    "429 to the upload": UploadCase(
        {"kind": "retry_after", "path": "/documents", "method": "POST", "first": 1, "retry_after": 0},
        posts=2,
        tries=1,
    ),
}


def try_number(run: Any, task_id: str) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        )
        return int(ti.try_number)


@pytest.mark.parametrize("name", list(CASES))
def test_upload_never_duplicates(
    name: str, gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    case = CASES[name]
    rule = dict(case.rule)
    kind = rule.pop("kind")
    gini_connection.add_fault(kind, **rule)
    dag = dag_file(
        UPLOAD_DAG.replace("RETRY_DELAY", repr(case.retry_delay)).replace(
            "HOOK_PARAMS", repr({"backoff_initial": 0.01, "backoff_max": 0.05, **case.hook_params})
        )
    )
    before = {d["id"] for d in gini_connection.documents()}
    run = dag.test()
    after = gini_connection.documents()
    created = [d for d in after if d["id"] not in before]
    figures.COUNTS["upload_runs"] += 1
    figures.COUNTS["uploads_created"] += len(created)
    figures.COUNTS["duplicates"] += max(0, len(created) - 1)
    assert run.state == "success"
    assert len(created) == 1, [d["name"] for d in created]
    assert created[0]["name"] == SAMPLE.name
    assert xcom(run, "upload") == created[0]["id"]
    posts = gini_connection.counters()["routes"]["POST /documents"]
    assert posts in (case.posts if isinstance(case.posts, tuple) else (case.posts,))
    assert try_number(run, "upload") == case.tries
