"""Errors a new try cannot fix end the task without its retries, in every operator, the sensor
and the trigger path: each try of a refused password would be one more attempt towards an
account lockout. Transient errors still get the task's retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import DEMO_USER, RunningSandbox
from tests.operators.conftest import task_states

EVERY_OPERATOR_DAG = """
from datetime import datetime, timedelta, timezone
from pathlib import Path
from airflow.sdk import DAG, task
from airflow_provider_gini.operators.documents import (
    GiniDeleteDocumentOperator, GiniGetExtractionsOperator, GiniPullDocumentsOperator,
    GiniSendFeedbackOperator, GiniUploadDocumentOperator,
)
from airflow_provider_gini.sensors.documents import GiniDocumentProcessedSensor

TRIES = Path(TRIES_FILE)
retried = {"retries": 3, "retry_delay": timedelta(seconds=0)}

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
         default_args=retried, params={"destination": DESTINATION}) as dag:
    # Templated: a fixed destination is a static Asset outlet, which Airflow 3.0's dag.test()
    # refuses as inactive before the task runs.
    GiniPullDocumentsOperator(task_id="pull", destination="{{ params.destination }}", full_history=True)
    GiniUploadDocumentOperator(task_id="upload", file=UPLOAD)
    GiniGetExtractionsOperator(task_id="extractions", document_id=DOCUMENT)
    GiniSendFeedbackOperator(task_id="feedback", document_id=DOCUMENT,
                             extractions={"amountToPay": {"value": "1.00:EUR"}})
    GiniDeleteDocumentOperator(task_id="delete", document_id=DOCUMENT)
    GiniDocumentProcessedSensor(task_id="sensor", document_id=DOCUMENT, poke_interval=1, timeout=30)
    GiniDocumentProcessedSensor(task_id="sensor_deferrable", document_id=DOCUMENT, deferrable=True,
                                timeout=30)

    @task
    def transient():
        # The control: a task that fails in a way a retry may fix gets all its tries here.
        with TRIES.open("a") as tries:
            tries.write("x")
        raise RuntimeError("transient")

    transient()
"""


def try_numbers(run: Any) -> dict[str, int]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: ti.try_number for ti in rows}


OPERATOR_TASKS = ("pull", "upload", "extractions", "feedback", "delete", "sensor", "sensor_deferrable")


def test_a_refused_password_is_tried_once_per_task_whatever_its_retries(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    [document] = [d["id"] for d in gini_connection.documents()[:1]]
    upload = tmp_path / "invoice.pdf"
    upload.write_bytes(b"%PDF-1.4 test\n")
    tries = tmp_path / "tries"
    source = (
        EVERY_OPERATOR_DAG.replace("TRIES_FILE", repr(str(tries)))
        .replace("DESTINATION", repr(str(tmp_path / "pulled")))
        .replace("UPLOAD", repr(str(upload)))
        .replace("DOCUMENT", repr(document))
    )
    dag = dag_file(source)
    gini_connection.change_password(DEMO_USER.email, "a-new-password-the-connection-does-not-have")
    gini_connection.reset_counters()
    dag_run = dag.test()
    states = task_states(dag_run)
    assert states == {**dict.fromkeys(OPERATOR_TASKS, "failed"), "transient": "failed"}, states
    assert try_numbers(dag_run) == {**dict.fromkeys(OPERATOR_TASKS, 1), "transient": 4}
    assert tries.read_text() == "xxxx"  # the control: dag.test() does run a task's retries
    counters = gini_connection.counters()
    # One refused password grant per task, not one per try (7 tasks x 4 tries = 28).
    assert counters["grants"] == {"password": len(OPERATOR_TASKS)}, counters
    assert counters["grant_errors"] == {"password:invalid_grant": len(OPERATOR_TASKS)}, counters
    assert gini_connection.document(document)["id"] == document  # nothing was deleted
    print(f"FIGURE wrong password, 7 tasks with retries=3: {counters['grants']['password']} password grants")


def test_the_trigger_marks_a_refused_password_terminal_and_the_task_fails_without_retries(
    gini_connection: RunningSandbox,
) -> None:
    from airflow_provider_gini._compat import AirflowException, AirflowFailException
    from airflow_provider_gini.operators.documents import complete_processing_event
    from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger, forget_shared_hooks

    [document] = [d["id"] for d in gini_connection.documents()[:1]]

    async def first_event() -> dict[str, Any]:
        trigger = GiniDocumentProcessedTrigger(document_id=document, poll_interval=0.1)
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger fired nothing")

    gini_connection.change_password(DEMO_USER.email, "another-new-password")
    forget_shared_hooks()
    event = asyncio.run(first_event())
    assert (event["status"], event["terminal"]) == ("error", True)
    with pytest.raises(AirflowFailException, match="refused the user credentials"):
        complete_processing_event(event)
    # A transient error event keeps the task's retries.
    with pytest.raises(AirflowException) as caught:
        complete_processing_event({**event, "terminal": False})
    assert not isinstance(caught.value, AirflowFailException)
    forget_shared_hooks()
