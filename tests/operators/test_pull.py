"""GiniPullDocumentsOperator through real DAG runs (dag.test()) against the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_gini.client.errors import GiniIncompleteListing, GiniProtocolError
from airflow_provider_gini.pull.storage import safe_id
from airflow_provider_gini.sandbox import RunningSandbox, profile
from tests.compat import CRON_DATA_INTERVAL_TIMETABLE_IMPORT
from tests.operators.conftest import task_states, xcom
from tests.profiles import EVERY_PROFILE, every_profile

UTC = timezone.utc


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def manifest_lines(result: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(result["manifest"].removeprefix("file://"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def as_sent(sandbox: RunningSandbox, path: str) -> bytes:
    """The bytes the API answers ``path`` with, fetched with plain httpx."""
    headers = {"Authorization": f"Bearer {sandbox.user_token()}", "Accept": "application/vnd.gini.v1+json"}
    answer = httpx.get(f"{sandbox.base_url}{path}", headers=headers)
    answer.raise_for_status()
    return answer.content


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


PULL_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc), catchup=True,
         max_active_runs=1) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              full_history=True, include_processed=True, max_workers=4, pending_timeout=PENDING_TIMEOUT,
                              poll_interval=0.2, hook_params={"backoff_initial": 0.01, "backoff_max": 0.05})
"""


@pytest.fixture
def pull_dag(dag_file: Callable[..., Any]) -> Callable[..., Any]:
    def make(pending_timeout: float = 10.0) -> Any:
        return dag_file(PULL_DAG.replace("PENDING_TIMEOUT", repr(pending_timeout)))

    return make


def pull_day_six(destination: Path, pending_timeout: float) -> Any:
    """The pull of 2026-01-06's documents, executed directly (no DAG run)."""
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(destination),
        created_after=day(6),
        created_before=day(7),
        pending_timeout=pending_timeout,
        poll_interval=0.1,
    )
    return operator.execute({"run_id": f"manual_{uuid.uuid4().hex[:8]}"})  # type: ignore[arg-type]


def run(dag: Any, when: datetime, destination: Path) -> Any:
    return dag.test(logical_date=when, run_conf={"destination": str(destination)})


@every_profile
def test_consecutive_scheduled_runs_cover_each_document_once(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    dag = pull_dag()
    results = []
    for n in (6, 7, 8):
        dag_run = run(dag, day(n), tmp_path)
        assert dag_run.state == "success"
        results.append(xcom(dag_run, "pull"))
    windows = [r["window"] for r in results]
    assert windows == [
        [None, day(6).isoformat()],
        [day(6).isoformat(), day(7).isoformat()],
        [day(7).isoformat(), day(8).isoformat()],
    ]
    for result, (start, end) in zip(
        results, [(None, day(6)), (day(6), day(7)), (day(7), day(8))], strict=True
    ):
        truth = gini_connection.documents(
            created_before=ms(end), **({"created_after": ms(start)} if start else {})
        )
        lines = manifest_lines(result)
        assert sorted(line["id"] for line in lines) == sorted(d["id"] for d in truth)
        assert {line["outcome"] for line in lines} <= {"pulled", "errored"}
    pulled = [line["id"] for r in results for line in manifest_lines(r)]
    assert len(pulled) == len(set(pulled))  # no overlap
    everything = gini_connection.documents(created_before=ms(day(8)))
    assert set(pulled) == {d["id"] for d in everything}  # no gap
    for doc in everything:
        folder = tmp_path / doc["id"]
        assert json.loads((folder / "document.json").read_text()) == doc
        if doc["progress"] == "COMPLETED":
            extractions = json.loads((folder / "extractions.json").read_text())
            assert extractions["extractions"]["iban"]["value"].startswith("DE")
            # Stored as Gini sent it, not re-encoded.
            assert (folder / "extractions.json").read_bytes() == as_sent(
                gini_connection, f"/documents/{doc['id']}/extractions"
            )
            processed = next(folder.glob("processed.*"))
            assert processed.read_bytes()[:4] in (b"%PDF", b"\xff\xd8\xff\xe0")
    assert not [f for f in files_under(tmp_path) if ".gini-tmp-" in f]


@every_profile
def test_error_documents_are_recorded_and_do_not_fail(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    dag = pull_dag()
    run(dag, day(7), tmp_path)
    dag_run = run(dag, day(8), tmp_path)  # the seeded ERROR document is on 2026-01-07
    assert dag_run.state == "success"
    result = xcom(dag_run, "pull")
    assert result["errored"] == 1
    errored = [line for line in manifest_lines(result) if line["outcome"] == "errored"]
    assert errored[0]["progress"] == "ERROR"
    assert errored[0]["files"] == [f"{errored[0]['id']}/document.json"]


@every_profile
def test_rerun_is_idempotent(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    dag = pull_dag()
    first = xcom(run(dag, day(7), tmp_path), "pull")
    stamps = {
        p: os.stat(tmp_path / p).st_mtime_ns
        for p in files_under(tmp_path)
        if not p.startswith(("_manifests", "_state", "_leases"))
    }
    gini_connection.reset_counters()
    # Without its watermark the same run lists the same window again: everything is skipped.
    shutil.rmtree(tmp_path / "_state")
    again = run(dag, day(7), tmp_path)
    second = xcom(again, "pull")
    assert again.state == "success"
    assert second["skipped"] == first["pulled"] + first["errored"] > 0
    assert second["pulled"] == 0
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in stamps} == stamps
    routes = gini_connection.counters()["routes"]
    assert "GET /documents/{document_id}/extractions" not in routes  # nothing was fetched again
    assert {line["outcome"] for line in manifest_lines(second)} == {"skipped"}
    assert [line for line in manifest_lines(second) if line["amountToPay"]]


@every_profile
def test_pending_document_is_waited_for(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    [doc_id] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000, readyIn=1.5)
    dag_run = run(pull_dag(), day(7), tmp_path)
    assert dag_run.state == "success"
    line = next(line for line in manifest_lines(xcom(dag_run, "pull")) if line["id"] == doc_id)
    assert line["outcome"] == "pulled"
    assert json.loads((tmp_path / doc_id / "document.json").read_text())["progress"] == "COMPLETED"


@every_profile
def test_document_still_pending_fails_the_task_by_name_and_a_retry_gets_it(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    [doc_id] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000, readyIn=3600)
    dag = pull_dag(pending_timeout=0.5)
    failed = run(dag, day(7), tmp_path)
    assert failed.state == "failed"
    assert task_states(failed) == {"pull": "failed"}
    assert not (tmp_path / doc_id).exists()
    manifests = list((tmp_path / "_manifests").glob("*.jsonl"))
    pending = [json.loads(line) for m in manifests for line in m.read_text().splitlines()]
    assert [p["outcome"] for p in pending if p["id"] == doc_id] == ["pending"]
    gini_connection.change_document(doc_id, readyIn=0)
    retried = run(dag, day(7), tmp_path)
    assert retried.state == "success"
    assert (tmp_path / doc_id / "document.json").exists()


@every_profile
def test_pending_failure_message_names_the_ids(gini_connection: RunningSandbox, tmp_path: Path) -> None:
    from airflow_provider_gini.client.errors import GiniPullIncomplete

    ids = gini_connection.insert_documents(count=2, creationDate=ms(day(6)) + 1000, readyIn=3600)
    with pytest.raises(GiniPullIncomplete) as caught:
        pull_day_six(tmp_path, pending_timeout=0.2)
    assert sorted(caught.value.pending) == sorted(ids)
    assert all(i in str(caught.value) for i in ids)


@every_profile
def test_hostile_names_stay_inside_the_destination(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    destination = tmp_path / "dest"
    names = [
        "../../escape.pdf",
        "/etc/passwd",
        "..\\..\\win.pdf",
        "a" * 1000 + ".pdf",
        "x/../../y.exe\x00.pdf",
    ]
    ids = [
        gini_connection.insert_documents(creationDate=ms(day(6)) + 1000 + i, name=n)[0]
        for i, n in enumerate(names)
    ]
    dag_run = run(pull_dag(), day(7), destination)
    assert dag_run.state == "success"
    outside = [p for p in tmp_path.rglob("*") if destination not in p.parents and p != destination]
    assert outside == []
    for doc_id, name in zip(ids, names, strict=True):
        folder = destination / doc_id
        assert json.loads((folder / "document.json").read_text())["name"] == name
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["document.json", "extractions.json", next(p.name for p in folder.glob("processed.*"))]
        )
        assert next(folder.glob("processed.*")).suffix in (".pdf", ".bin")


def test_ids_that_are_not_plain_tokens_are_refused(tmp_path: Path) -> None:
    for hostile in ("../x", "..", ".", "a/b", "", "x" * 200, "\x00", None, 7):
        with pytest.raises(GiniProtocolError):
            safe_id(hostile)
    assert safe_id("6f1c2a7e-3b0d") == "6f1c2a7e-3b0d"


@every_profile
def test_xcom_is_small_whatever_the_window(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    gini_connection.insert_documents(count=150, creationDate=ms(day(6)) + 1000, spacingMs=10)
    dag_run = run(pull_dag(), day(7), tmp_path)
    result = xcom(dag_run, "pull")
    assert result["pulled"] >= 150
    assert set(result) == {
        "manifest",
        *("pulled", "skipped", "errored", "pending", "gone", "failed"),
        *("window", "watermark", "unfinished"),
    }
    assert len(json.dumps(result)) < 600


def test_unwritable_destination_fails_before_any_request(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    from airflow_provider_gini._compat import AirflowFailException
    from airflow_provider_gini.client.errors import GiniConfigError
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    gini_connection.reset_counters()
    operator = GiniPullDocumentsOperator(
        task_id="pull", destination=str(blocked / "sub"), created_after=None, created_before=None
    )
    with pytest.raises(AirflowFailException, match="Cannot write to the destination") as caught:
        operator.execute({"run_id": "manual_2"})  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, GiniConfigError)
    assert gini_connection.counters()["requests"] == 0


@every_profile
def test_document_gone_between_list_and_get_is_recorded(
    gini_connection: RunningSandbox, pull_dag: Callable[..., Any], tmp_path: Path
) -> None:
    [doc_id] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000)
    # Listed, then gone: its extractions and the document itself answer 404.
    for path in (f"/documents/{doc_id}/extractions", f"/documents/{doc_id}"):
        gini_connection.add_fault("status", status=404, path=path)
    dag_run = run(pull_dag(), day(7), tmp_path)
    assert dag_run.state == "success"
    line = next(line for line in manifest_lines(xcom(dag_run, "pull")) if line["id"] == doc_id)
    assert line["outcome"] == "gone"
    assert not (tmp_path / doc_id / "document.json").exists()


def test_completed_document_without_extractions_fails_the_pull_by_name(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """A document that is COMPLETED and still there, whose extractions answer 404, is not gone:
    the pull fails naming it rather than dropping it from the window."""
    from airflow_provider_gini.client.errors import GiniPullIncomplete

    [doc_id] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000)
    gini_connection.add_fault("status", status=404, path=f"/documents/{doc_id}/extractions")
    with pytest.raises(
        GiniPullIncomplete, match=f"Document {doc_id} is COMPLETED, yet Gini has no extractions"
    ):
        pull_day_six(tmp_path, pending_timeout=1)


def test_operator_contract() -> None:
    from airflow_provider_gini.operators.documents import (
        GiniDeleteDocumentOperator,
        GiniGetExtractionsOperator,
        GiniPullDocumentsOperator,
        GiniSendFeedbackOperator,
        GiniUploadDocumentOperator,
    )
    from airflow_provider_gini.sensors.documents import GiniDocumentProcessedSensor

    made = [
        GiniPullDocumentsOperator(task_id="a", destination="/tmp/x", gini_conn_id="does_not_exist"),
        GiniUploadDocumentOperator(task_id="b", file="/nope.pdf", gini_conn_id="does_not_exist"),
        GiniGetExtractionsOperator(task_id="c", document_id="d", gini_conn_id="does_not_exist"),
        GiniSendFeedbackOperator(task_id="e", document_id="d", extractions={}, gini_conn_id="does_not_exist"),
        GiniDeleteDocumentOperator(task_id="f", document_id="d", gini_conn_id="does_not_exist"),
        GiniDocumentProcessedSensor(task_id="g", document_id="d", gini_conn_id="does_not_exist"),
    ]  # no I/O in __init__: a missing connection is only noticed at execute time
    for operator in made:
        assert "gini_conn_id" in operator.template_fields
    with pytest.raises(TypeError):
        GiniGetExtractionsOperator("c2", "d")  # type: ignore[misc]
    assert [str(o.uri) for o in made[0].outlets] == ["file:///tmp/x"]


@every_profile
def test_progress_is_logged(
    gini_connection: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    operator = GiniPullDocumentsOperator(
        task_id="pull", destination=f"file://{tmp_path}", full_history=True, created_before=day(8)
    )
    with caplog.at_level(logging.INFO, logger="airflow_provider_gini.pull"):
        result = operator.execute({"run_id": "manual_3"})  # type: ignore[arg-type]
    total = result["pulled"] + result["errored"]
    progress = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_gini.pull"]
    assert progress[-1].startswith(f"Gini pull: {total}/{total} documents, ")
    assert "docs/s" in progress[-1]
    assert "ETA" in progress[-1]


@every_profile
def test_window_from_a_non_empty_data_interval(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag = dag_file(
        CRON_DATA_INTERVAL_TIMETABLE_IMPORT
        + textwrap.dedent("""
    from datetime import datetime, timezone
    from airflow.sdk import DAG
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    with DAG("{dag_id}", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
             start_date=datetime(2026, 1, 5, tzinfo=timezone.utc)) as dag:
        GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                                  start="{{ data_interval_start }}")
    """)
    )
    result = xcom(run(dag, day(7), tmp_path), "pull")
    assert result["window"] == [day(6).isoformat(), day(7).isoformat()]
    truth = gini_connection.documents(created_after=ms(day(6)), created_before=ms(day(7)))
    assert sorted(line["id"] for line in manifest_lines(result)) == sorted(d["id"] for d in truth)


WINDOW_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              created_after="{{ dag_run.conf['after'] }}",
                              created_before="{{ dag_run.conf['before'] }}",
                              page_size=40, max_workers=8, pending_timeout=5, poll_interval=0.2,
                              hook_params={"backoff_initial": 0.01, "backoff_max": 0.05})
"""


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    [
        *EVERY_PROFILE,
        pytest.param(profile("pay-api", page_cap=25), id="pay-api-pages-capped-at-25"),
        pytest.param(profile("legacy", offset_param="next"), id="legacy-offset-as-next"),
        pytest.param(profile("pay-api", total_count=True, order="descending"), id="pay-api-desc-totalCount"),
    ],
)
def test_a_window_of_650_documents_is_pulled_exactly_once(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """650 documents in the window, 20 of them sharing a millisecond, with documents on both
    sides of it; pages of 40 or fewer (17 or more of them): the manifest holds exactly the
    server's own count."""
    start = ms(day(20))
    gini_connection.insert_documents(count=30, creationDate=start - 30_000, spacingMs=1000)  # before
    gini_connection.insert_documents(count=630, creationDate=start, spacingMs=700)
    gini_connection.insert_documents(count=20, creationDate=start + 200_000, spacingMs=0)  # one ms
    gini_connection.insert_documents(count=30, creationDate=start + 500_000, spacingMs=1000)  # after
    end = start + 500_000
    dag = dag_file(WINDOW_DAG)
    conf = {
        "destination": str(tmp_path),
        "after": day(20).isoformat(),
        "before": datetime.fromtimestamp(end / 1000, UTC).isoformat(),
    }
    dag_run = dag.test(run_conf=conf)
    assert dag_run.state == "success", task_states(dag_run)
    truth = {d["id"] for d in gini_connection.documents(created_after=start, created_before=end)}
    assert len(truth) == 650
    lines = manifest_lines(xcom(dag_run, "pull"))
    assert len(lines) == len(truth)
    assert {line["id"] for line in lines} == truth
    assert {line["outcome"] for line in lines} == {"pulled"}
    assert {p.name for p in tmp_path.iterdir()} == truth | {"_manifests", "_leases"}


@every_profile
def test_an_undocumented_progress_is_waited_for_and_recorded_as_pending(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    from airflow_provider_gini.client.errors import GiniPullIncomplete

    [soon] = gini_connection.insert_documents(
        creationDate=ms(day(6)) + 1000, readyIn=1, pendingProgress="QUEUED"
    )
    [stuck] = gini_connection.insert_documents(
        creationDate=ms(day(6)) + 2000, readyIn=3600, pendingProgress="QUEUED"
    )
    with pytest.raises(GiniPullIncomplete) as caught:
        pull_day_six(tmp_path, pending_timeout=2)
    assert caught.value.pending == [stuck]
    lines = {
        line["id"]: line
        for line in manifest_lines({"manifest": str(next((tmp_path / "_manifests").glob("*.jsonl")))})
    }
    assert lines[soon]["outcome"] == "pulled"
    assert (lines[stuck]["outcome"], lines[stuck]["progress"]) == ("pending", "QUEUED")


@pytest.mark.parametrize("gini_sandbox_profile", [profile("pay-api", page_cap=20)])
def test_a_list_that_cannot_be_proven_complete_fails_the_task_and_says_why(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """Gini gives pages of at most 20, and 30 documents share one millisecond: no cursor can get
    past them, so the pull fails instead of reporting the rest of the window as complete."""
    at = ms(day(20))
    gini_connection.insert_documents(count=30, creationDate=at, spacingMs=0)
    gini_connection.insert_documents(count=5, creationDate=at + 1000, spacingMs=1000)
    dag = dag_file(WINDOW_DAG)
    conf = {"destination": str(tmp_path), "after": day(20).isoformat(), "before": day(21).isoformat()}
    assert dag.test(run_conf=conf).state == "failed"
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    operator = GiniPullDocumentsOperator(
        task_id="pull", destination=str(tmp_path), created_after=day(20), created_before=day(21), page_size=40
    )
    with pytest.raises(GiniIncompleteListing, match=f"cannot be paged past creation date {at}"):
        operator.execute({"run_id": "manual_cap"})  # type: ignore[arg-type]
    # A manifest, if any, holds only what was done before the listing failed: never the window.
    for manifest in (tmp_path / "_manifests").glob("*.jsonl"):
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert len(lines) < 35
        assert all((tmp_path / line["id"] / "document.json").exists() for line in lines)
