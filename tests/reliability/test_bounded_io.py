"""Bounded I/O (issue #15, item 3): every request has a total deadline, every body a size limit,
and nothing is decompressed, against a hostile server over real HTTP (tests/reliability/hostile.py)."""

from __future__ import annotations

import io
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.client.errors import (
    GiniCancelled,
    GiniError,
    GiniHTTPError,
    GiniProtocolError,
    GiniRefusedAnswer,
    GiniRetryError,
    GiniTransportError,
)
from tests.reliability.hostile import (
    TOKEN,
    Answer,
    Client,
    HostileGini,
    gzip_bomb,
    hostile_gini,
    json_answer,
    repeated,
    trickle,
)

MiB = 1024 * 1024
PAGE = json.dumps({"documents": [{"id": "d1", "progress": "COMPLETED", "creationDate": 1}]}).encode()
ONCE = {"retry": {"max_attempts": 1}}


@pytest.fixture
def server() -> Iterator[HostileGini]:
    with hostile_gini() as running:
        yield running


def failure(call: Callable[[], Any]) -> tuple[GiniError, float]:
    """The error ``call`` raised (the last attempt's, when the retry budget ran out) and how long it took."""
    began = time.monotonic()
    with pytest.raises(GiniError) as caught:
        call()
    took = time.monotonic() - began
    error = caught.value
    if isinstance(error, GiniRetryError):
        assert isinstance(error.last, GiniError)
        return error.last, took
    return error, took


def peak_bytes(call: Callable[[], Any]) -> tuple[GiniError, float, int]:
    tracemalloc.start()
    try:
        error, took = failure(call)
        return error, took, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- 1. a total deadline per request ------------------------------------------------------------


def test_a_trickled_token_answer_ends_at_the_token_deadline(server: HostileGini) -> None:
    server.routes["/oauth/token"] = trickle(json.dumps(TOKEN).encode(), every=0.5)
    client = Client(server.session(token_deadline=2, read_timeout=30, **ONCE))
    error, took = failure(client.get_access_token)
    assert isinstance(error, GiniTransportError)
    assert "token_deadline" in str(error)
    assert "2 s" in str(error)
    assert 1.9 < took < 4, took  # not the ~120 s the trickle lasts, nor the 30 s read timeout


def test_a_trickled_listing_ends_at_the_request_deadline_and_is_retried_like_a_timeout(
    server: HostileGini,
) -> None:
    server.routes["/documents"] = trickle(PAGE, every=0.5)
    client = Client(server.session(request_deadline=1.5, retry={"max_attempts": 2}))
    error, took = failure(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniTransportError)
    assert error.sent
    assert "request_deadline" in str(error)
    assert server.hits("/documents") == 2  # idempotent: retried, as a timeout is
    assert took < 6, took


def test_a_trickled_download_ends_at_the_download_deadline(server: HostileGini, tmp_path: Path) -> None:
    server.routes["/documents/d1/processed"] = trickle(b"%PDF-" + bytes(1000), every=0.3)
    client = Client(server.session(download_deadline=1.5, request_deadline=60, **ONCE))
    target = tmp_path / "processed.pdf"
    error, took = failure(lambda: client.download_processed("d1", target))
    assert isinstance(error, GiniTransportError)
    assert "download_deadline" in str(error)
    assert took < 4, took
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cancel_cuts_off_a_download_in_progress(server: HostileGini) -> None:
    server.routes["/documents/d1/processed"] = trickle(b"%PDF-" + bytes(1000), every=0.2)
    session = server.session(download_deadline=60)
    client = Client(session)
    threading.Timer(1.0, session.cancel).start()
    error, took = failure(lambda: client.download_processed("d1", io.BytesIO()))
    assert isinstance(error, GiniCancelled)
    assert took < 3, took  # not the 60 s deadline


def test_headers_trickled_a_byte_at_a_time_end_at_the_request_deadline(server: HostileGini) -> None:
    # Each byte comes within the read timeout, so only a deadline over all the reads ends it.
    server.routes["/documents"] = Answer(headers={"Content-Length": "0"}, header_pause=0.2)
    client = Client(server.session(request_deadline=1.5, read_timeout=30, **ONCE))
    error, took = failure(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniTransportError)
    assert error.sent
    assert "did not arrive in full within the 1.5 s request_deadline" in str(error)
    assert 1.4 < took < 4, took  # not the minutes the trickle lasts, nor the 30 s read timeout


def test_a_token_answer_with_trickled_headers_ends_at_the_token_deadline(server: HostileGini) -> None:
    server.routes["/oauth/token"] = Answer(headers={"Content-Length": "0"}, header_pause=0.2)
    client = Client(server.session(token_deadline=1.5, request_deadline=60, read_timeout=30, **ONCE))
    error, took = failure(client.get_access_token)
    assert isinstance(error, GiniTransportError)
    assert "1.5 s token_deadline" in str(error)
    assert took < 4, took


def test_an_upload_gini_does_not_read_ends_at_the_request_deadline_and_is_not_resent(
    server: HostileGini,
) -> None:
    # More than the socket buffers hold, so sending blocks until the server reads; each write
    # is bounded by the 30 s timeout, so only a deadline over them all ends it.
    server.routes["/documents"] = Answer(before_reading=30, status=201)
    client = Client(server.session(request_deadline=2, read_timeout=30, retry={"max_attempts": 3}))
    document = io.BytesIO(b"%PDF-" + bytes(9 * MiB))  # under Gini's 10 MiB
    error, took = failure(lambda: client.upload_document(document, "big.pdf"))
    assert isinstance(error, GiniTransportError)
    assert error.sent  # it may have reached Gini: an upload is not sent again
    assert "2 s request_deadline" in str(error)
    assert server.hits("/documents") == 1
    assert took < 5, took


def test_cancel_cuts_off_a_request_waiting_for_its_headers(server: HostileGini) -> None:
    server.routes["/documents"] = Answer(before_headers=30)
    session = server.session(request_deadline=60, read_timeout=60)
    client = Client(session)
    threading.Timer(1.0, session.cancel).start()
    error, took = failure(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniCancelled)
    assert "was cut off: the work was cancelled" in str(error)
    assert took < 3, took  # not the 30 s until the headers, nor the 60 s read timeout
    assert server.hits("/documents") == 1  # and not asked again


def test_requests_within_their_deadline_leave_no_watch_behind(server: HostileGini) -> None:
    from airflow_provider_gini.client.watchdog import WATCHDOG

    server.routes["/documents"] = json_answer({"documents": []})
    client = Client(server.session(request_deadline=60))
    for _ in range(50):
        assert client.list_documents(limit=5) == {"documents": []}
    assert WATCHDOG._watched == set()


# --- 3. size limits per kind --------------------------------------------------------------------


def test_an_error_answer_is_read_only_as_far_as_its_limit(server: HostileGini) -> None:
    size = 512 * MiB  # announced and sent lazily, a 64 KiB piece at a time
    server.routes["/documents"] = Answer(
        500,
        {"Content-Type": "application/json", "Content-Length": str(size)},
        lambda: repeated(b"x" * 65536, size),
    )
    client = Client(server.session(**ONCE))
    error, took, peak = peak_bytes(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniHTTPError)
    assert error.status == 500
    assert "no readable error message" in str(error)
    assert peak < 4 * MiB, peak
    assert took < 5, took


def test_a_json_answer_over_its_limit_is_refused(server: HostileGini) -> None:
    # Announced: refused before a byte of it is read.
    server.routes["/documents"] = Answer(
        200,
        {"Content-Type": "application/json", "Content-Length": str(64 * MiB)},
        lambda: repeated(b" " * 65536, 64 * MiB),
    )
    client = Client(server.session(max_json_bytes=MiB, **ONCE))
    error, _, peak = peak_bytes(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniProtocolError)
    assert "67108864 bytes" in str(error)
    assert "'max_json_bytes'" in str(error)
    assert peak < 2 * MiB, peak
    # Not announced (the body ends with the connection): refused once past the limit.
    server.routes["/documents"] = Answer(
        200, {"Content-Type": "application/json"}, lambda: repeated(b" " * 65536, 64 * MiB)
    )
    error, _, peak = peak_bytes(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniProtocolError)
    assert "more bytes than the max_json_bytes limit of 1048576 bytes" in str(error)
    assert peak < 4 * MiB, peak


def test_a_download_over_its_limit_is_refused_and_nothing_is_left(
    server: HostileGini, tmp_path: Path
) -> None:
    server.routes["/documents/d1/processed"] = Answer(
        200, {"Content-Type": "application/pdf"}, lambda: repeated(b"%" * 65536, 4 * MiB)
    )
    client = Client(server.session(max_download_bytes=MiB, **ONCE))
    error, _ = failure(lambda: client.download_processed("d1", tmp_path / "processed.pdf"))
    assert isinstance(error, GiniProtocolError)
    assert "max_download_bytes" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_a_page_with_more_documents_than_asked_for_is_refused(server: HostileGini) -> None:
    documents = [{"id": f"d{n}", "progress": "COMPLETED", "creationDate": n} for n in range(50_000)]
    server.routes["/documents"] = json_answer({"documents": documents})
    client = Client(server.session(**ONCE))
    error, _ = failure(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniProtocolError)
    assert "50000 documents to a request for 5" in str(error)


def test_a_refused_answer_is_not_asked_for_again(server: HostileGini) -> None:
    # Retried, each attempt would get the same answer: the whole limit read again, or nothing.
    server.routes["/documents"] = Answer(
        200, {"Content-Type": "application/json"}, lambda: repeated(b" " * 65536, 4 * MiB)
    )
    server.routes["/documents/d1"] = Answer(
        200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, lambda: [gzip_bomb(MiB)]
    )
    client = Client(server.session(max_json_bytes=MiB, retry={"max_attempts": 5}))
    for call, path in (
        (lambda: client.list_documents(limit=5), "/documents"),
        (lambda: client.get_document("d1"), "/documents/d1"),
    ):
        error, _ = failure(call)
        assert isinstance(error, GiniRefusedAnswer), error
        assert server.hits(path) == 1


# --- 4. no transparent decompression ------------------------------------------------------------


def test_a_gzip_bomb_is_refused_undecoded_and_identity_is_asked_for(server: HostileGini) -> None:
    bomb = gzip_bomb(256 * MiB)
    assert len(bomb) < MiB
    server.routes["/documents"] = Answer(
        200,
        {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))},
        lambda: [bomb],
    )
    client = Client(server.session(**ONCE))
    error, _took, peak = peak_bytes(lambda: client.list_documents(limit=5))
    assert isinstance(error, GiniProtocolError)
    assert "Content-Encoding 'gzip'" in str(error)
    assert peak < 4 * MiB, peak
    sent = [headers for _, path, headers in server.requests if path == "/documents"]
    assert sent
    assert all(h.get("Accept-Encoding") == "identity" for h in sent)


# --- 2. execution_timeout ends a pull whose worker is stuck on the wire -------------------------

TIMEOUT_DAG = """
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 5, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", gini_conn_id="hostile", destination="{{ dag_run.conf['destination'] }}",
                              full_history=True, execution_timeout=timedelta(seconds=3))
"""


def test_execution_timeout_ends_a_pull_whose_worker_waits_on_a_silent_server(
    server: HostileGini,
    dag_file: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    evidence: Any,
) -> None:
    from tests.operators.conftest import task_states

    connection = server.connection()
    connection["extra"]["read_timeout"] = 40  # what a worker waiting for headers is held by
    monkeypatch.setenv("AIRFLOW_CONN_HOSTILE", json.dumps(connection))
    evidence.secrets["hostile"] = [
        connection["password"],
        connection["extra"]["client_secret"],
        TOKEN["access_token"],
    ]
    server.routes["/documents"] = Answer(
        200, {"Content-Type": "application/json", "Content-Length": str(len(PAGE))}, lambda: [PAGE]
    )
    # The worker fetching the extractions gets no answer at all: the task ends at its timeout, not
    # at the 40 s read timeout (cancel() cuts the wait off, and the task does not wait for it).
    server.routes["/documents/d1/extractions"] = Answer(before_headers=120)
    began = time.monotonic()
    run = dag_file(TIMEOUT_DAG).test(run_conf={"destination": str(tmp_path)})
    took = time.monotonic() - began
    assert task_states(run) == {"pull": "failed"}
    assert [type(e).__name__ for e in evidence.task_errors()] == ["AirflowTaskTimeout"]
    assert server.hits("/documents/d1/extractions") == 1
    # From the stuck request (sent within the 3 s execution_timeout) to the task's end; the task's
    # start-up before it (seconds on a loaded machine) is Airflow's.
    [ti] = run.get_task_instances()
    after = ti.end_date.timestamp() - server.arrived["/documents/d1/extractions"]
    print(
        f"execution_timeout 3 s: the task ended {after:.1f} s after the stuck request; dag.test took {took:.1f} s"
    )
    assert after < 3 + 20, after  # not the 40 s read timeout the stuck worker waits out
