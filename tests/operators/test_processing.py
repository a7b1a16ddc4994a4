"""Upload, wait (poke, reschedule, deferred), extractions, feedback, delete, and the trigger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox, profile
from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger
from tests.compat import sdk_exception
from tests.operators.conftest import EXAMPLES, task_states, xcom

SAMPLE = EXAMPLES / "sample_documents" / "rechnung-sample-1.pdf"
FAST = '{"backoff_initial": 0.01, "backoff_max": 0.05}'


def events(trigger: GiniDocumentProcessedTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_trigger_serializes_to_plain_values_and_round_trips() -> None:
    trigger = GiniDocumentProcessedTrigger(
        document_id="d1", gini_conn_id="c", poll_interval=2, timeout=600, hook_params={"read_timeout": 5}
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_gini.triggers.documents.GiniDocumentProcessedTrigger"
    assert kwargs == {
        "document_id": "d1",
        "gini_conn_id": "c",
        "poll_interval": 2.0,
        "timeout": 600.0,
        "end_time": None,
        "hook_params": {"read_timeout": 5},
    }
    assert GiniDocumentProcessedTrigger(**kwargs).serialize() == (path, kwargs)
    # A trigger an earlier version serialized (already in the DB): an end_time and no timeout.
    earlier = {
        "document_id": "d1",
        "gini_conn_id": "c",
        "poll_interval": 2.0,
        "end_time": 1.5e9,
        "hook_params": {},
    }
    path, kwargs = GiniDocumentProcessedTrigger(**earlier).serialize()
    assert kwargs == {**earlier, "timeout": None}
    assert GiniDocumentProcessedTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_events(gini_connection: RunningSandbox) -> None:
    ok = gini_connection.insert_documents(readyIn=0.5)[0]
    failing = gini_connection.insert_documents(readyIn=0.5, outcome="ERROR")[0]
    stuck = gini_connection.insert_documents(readyIn=3600)[0]
    started = time.monotonic()
    assert events(GiniDocumentProcessedTrigger(document_id=ok, poll_interval=0.1)) == [
        {
            "status": "success",
            "document_id": ok,
            "progress": "COMPLETED",
            "message": f"Document {ok} is COMPLETED",
            "terminal": False,
        }
    ]
    assert time.monotonic() - started < 5
    [failed] = events(GiniDocumentProcessedTrigger(document_id=failing, poll_interval=0.1))
    assert (failed["status"], failed["progress"]) == ("failed", "ERROR")
    [timeout] = events(GiniDocumentProcessedTrigger(document_id=stuck, poll_interval=0.1, timeout=0.3))
    assert (timeout["status"], timeout["progress"]) == ("timeout", "PENDING")
    # An end_time (what earlier versions serialized) still ends the wait.
    [timeout] = events(
        GiniDocumentProcessedTrigger(document_id=stuck, poll_interval=0.1, end_time=time.time() + 0.3)
    )
    assert (timeout["status"], timeout["progress"]) == ("timeout", "PENDING")
    [missing] = events(GiniDocumentProcessedTrigger(document_id="no-such-document", poll_interval=0.1))
    assert missing["status"] == "error"
    assert "404" in missing["message"]
    assert missing["terminal"] is True  # a document that does not exist: no retries


def test_many_triggers_share_one_token(gini_connection: RunningSandbox) -> None:
    ids = gini_connection.insert_documents(count=50, readyIn=0.3)

    async def run_all() -> list[Any]:
        async def first(trigger: GiniDocumentProcessedTrigger) -> Any:
            async for event in trigger.run():
                return event.payload
            return None

        return await asyncio.gather(
            *(
                first(
                    GiniDocumentProcessedTrigger(
                        document_id=i,
                        poll_interval=0.1,
                        gini_conn_id="gini_default",
                        hook_params={"pool_size": 16},
                    )
                )
                for i in ids
            )
        )

    results = asyncio.run(run_all())
    assert [r["status"] for r in results] == ["success"] * 50
    assert sum(gini_connection.counters()["grants"].values()) == 1


UPLOAD_DAG = f"""
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator
from airflow_provider_gini.sensors.documents import GiniDocumentProcessedSensor

with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    upload = GiniUploadDocumentOperator(
        task_id="upload", file="{SAMPLE}", hook_params={FAST}, retries=RETRIES, retry_delay=0, filename=FILENAME
    )
    GiniDocumentProcessedSensor(
        task_id="wait", document_id=upload.output, MODE, poke_interval=0.2, timeout=TIMEOUT
    )
"""


@pytest.fixture
def upload_dag(dag_file: Callable[..., Any]) -> Callable[..., Any]:
    def make(mode: str, timeout: float = 30, retries: int = 0, filename: str | None = None) -> Any:
        source = (
            UPLOAD_DAG.replace("MODE", mode)
            .replace("TIMEOUT", repr(timeout))
            .replace("RETRIES", str(retries))
            .replace("FILENAME", repr(filename))
        )
        return dag_file(source)

    return make


@pytest.mark.parametrize("mode", ['mode="poke"', 'mode="reschedule"', "deferrable=True"])
def test_sensor_waits_for_processing(
    gini_connection: RunningSandbox, upload_dag: Callable[..., Any], mode: str
) -> None:
    gini_connection.settings(processing_delay=1.0)
    dag_run = upload_dag(mode).test()
    assert dag_run.state == "success"
    document_id = xcom(dag_run, "upload")
    assert xcom(dag_run, "wait") == document_id
    assert gini_connection.document(document_id)["progress"] == "COMPLETED"
    assert gini_connection.document(document_id)["name"] == SAMPLE.name


@pytest.mark.parametrize("mode", ['mode="poke"', "deferrable=True"])
def test_sensor_fails_on_error(
    gini_connection: RunningSandbox, upload_dag: Callable[..., Any], mode: str
) -> None:
    gini_connection.settings(processing_delay=0.5)
    # The sandbox ends an upload in ERROR when its name carries the error marker.
    dag_run = upload_dag(mode, filename="scan-gini-error.pdf").test()
    assert dag_run.state == "failed"
    assert task_states(dag_run) == {"upload": "success", "wait": "failed"}
    assert gini_connection.document(xcom(dag_run, "upload"))["progress"] == "ERROR"


@pytest.mark.parametrize("mode", ['mode="poke"', "deferrable=True"])
def test_sensor_times_out(gini_connection: RunningSandbox, upload_dag: Callable[..., Any], mode: str) -> None:
    gini_connection.settings(processing_delay=3600)
    dag_run = upload_dag(mode, timeout=1).test()
    assert dag_run.state == "failed"
    assert task_states(dag_run) == {"upload": "success", "wait": "failed"}


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    [profile("pay-api", echo_metadata=True), profile("pay-api")],
    ids=["tag echoed", "gini-like"],
)
def test_upload_retry_adopts_only_a_proven_upload(
    gini_connection: RunningSandbox, upload_dag: Callable[..., Any]
) -> None:
    """The retry adopts the first try's document only when Gini returns its upload tag (the
    sandbox's echo_metadata switch); Gini is not known to, and then the retry uploads again
    (tests/reliability/test_uploads.py has the warning it logs, and more cases)."""
    echo = gini_connection.state.config.api.echo_metadata
    before = len(gini_connection.documents())
    # The first upload reaches Gini, then the connection is reset: the task cannot know it landed.
    gini_connection.add_fault("reset", path="/documents", method="POST", first=1, after_handler=True)
    dag_run = upload_dag('mode="poke"', retries=1).test()
    assert dag_run.state == "success"
    expected = 1 if echo else 2
    assert len(gini_connection.documents()) == before + expected
    assert gini_connection.counters()["routes"]["POST /documents"] == expected
    assert xcom(dag_run, "wait") == xcom(dag_run, "upload")


def test_extractions_feedback_and_delete(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    dag = dag_file(f"""
    from datetime import datetime, timezone
    from airflow.sdk import DAG
    from airflow_provider_gini.operators.documents import (
        GiniDeleteDocumentOperator, GiniGetExtractionsOperator, GiniSendFeedbackOperator, GiniUploadDocumentOperator)

    with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
        upload = GiniUploadDocumentOperator(task_id="upload", file="{SAMPLE}", wait_for_processing=True,
                                            deferrable=False, poll_interval=0.2)
        full = GiniGetExtractionsOperator(task_id="full", document_id=upload.output)
        flat = GiniGetExtractionsOperator(task_id="flat", document_id=upload.output, flatten=True)
        feedback = GiniSendFeedbackOperator(task_id="feedback", document_id=upload.output,
                                            extractions={{"amountToPay": {{"value": "{{{{ ti.xcom_pull('flat')['amountToPay'] }}}}"}}}})
        delete = GiniDeleteDocumentOperator(task_id="delete", document_id=upload.output)
        again = GiniDeleteDocumentOperator(task_id="again", document_id=upload.output)
        [full, flat] >> feedback >> delete >> again
    """)
    dag_run = dag.test()
    assert dag_run.state == "success", task_states(dag_run)
    document_id = xcom(dag_run, "upload")
    flat = xcom(dag_run, "flat")
    assert flat["iban"].startswith("DE")
    assert xcom(dag_run, "full")["extractions"]["amountToPay"]["value"] == flat["amountToPay"]
    routes = gini_connection.counters()["routes"]
    assert routes["POST /documents/{document_id}/extractions/feedback"] == 1
    assert routes["DELETE /documents/{document_id}"] == 2
    assert document_id not in {d["id"] for d in gini_connection.documents()}


def test_upload_of_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    operator = GiniUploadDocumentOperator(task_id="u", file=str(tmp_path / "missing.pdf"))
    with pytest.raises(sdk_exception("AirflowFailException"), match="no such file"):
        operator.execute({})  # type: ignore[arg-type]
