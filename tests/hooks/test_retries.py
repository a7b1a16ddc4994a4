"""The one retry policy, driven by the sandbox's faults over real HTTP."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_gini.client import (
    GiniConflict,
    GiniHTTPError,
    GiniNotFound,
    GiniRejected,
    GiniRetryError,
    GiniTransportError,
)
from airflow_provider_gini.client.errors import GiniError
from airflow_provider_gini.client.retry import RetryPolicy
from airflow_provider_gini.client.settings import RetrySettings
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import RunningSandbox, SandboxConfig, run_sandbox

MakeHook = Callable[..., GiniHook]
PDF = b"%PDF-1.4\n%%EOF\n"


def route_count(sandbox: RunningSandbox, route: str) -> int:
    return int(sandbox.counters()["routes"].get(route, 0))


@pytest.fixture
def signed_in(gini_connection: RunningSandbox, make_hook: MakeHook) -> Iterator[GiniHook]:
    hook = make_hook()
    hook.get_access_token()
    gini_connection.reset_counters()
    return hook


def test_503_burst_is_ridden_out_with_one_warning_per_retry(
    gini_connection: RunningSandbox, signed_in: GiniHook, caplog: pytest.LogCaptureFixture
) -> None:
    gini_connection.add_fault("status", status=503, path="/documents", first=3)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_gini.client"):
        page = signed_in.list_documents(limit=2)
    assert len(page["documents"]) == 2
    assert route_count(gini_connection, "GET /documents") == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "attempt 1 of 8" in warnings[0]
    assert "503" in warnings[0]
    assert "X-Request-Id" in warnings[0]
    request_ids = {entry["requestId"] for entry in gini_connection.requests() if entry["status"] == 503}
    assert any(rid in warnings[0] for rid in request_ids)


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_transient_statuses_are_retried(
    gini_connection: RunningSandbox, signed_in: GiniHook, status: int
) -> None:
    gini_connection.add_fault("status", status=status, path="/documents/*", first=1)
    doc_id = gini_connection.documents()[0]["id"]
    assert signed_in.get_document(doc_id)["id"] == doc_id
    assert route_count(gini_connection, "GET /documents/{document_id}") == 2


@pytest.mark.parametrize(
    ("status", "error"), [(400, GiniRejected), (404, GiniNotFound), (409, GiniConflict), (418, GiniHTTPError)]
)
def test_other_4xx_are_not_retried(
    gini_connection: RunningSandbox, signed_in: GiniHook, status: int, error: type[GiniError]
) -> None:
    gini_connection.add_fault("status", status=status, path="/documents", first=5)
    with pytest.raises(error) as caught:
        signed_in.list_documents()
    assert caught.value.status == status
    assert route_count(gini_connection, "GET /documents") == 1


def test_a_real_404_names_the_request_id(gini_connection: RunningSandbox, signed_in: GiniHook) -> None:
    with pytest.raises(GiniNotFound) as caught:
        signed_in.get_document("00000000-0000-0000-0000-000000000000")
    logged = gini_connection.requests()[-1]
    assert caught.value.request_id == logged["requestId"]
    assert logged["requestId"] in str(caught.value)
    assert route_count(gini_connection, "GET /documents/{document_id}") == 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(gini_connection: RunningSandbox, signed_in: GiniHook, form: str) -> None:
    gini_connection.add_fault("retry_after", path="/documents", first=1, retry_after=2, retry_after_form=form)
    started = time.monotonic()
    signed_in.list_documents(limit=1)
    waited = time.monotonic() - started
    assert waited >= 0.9  # an HTTP date has whole seconds, so "in 2 s" may mean a little over 1 s
    assert waited < 10  # room for a loaded machine; the cap (60 s) is far above
    assert route_count(gini_connection, "GET /documents") == 2


def test_retry_after_beyond_the_budget_gives_up_at_once(
    gini_connection: RunningSandbox, signed_in: GiniHook
) -> None:
    gini_connection.add_fault("retry_after", path="/documents", first=1, retry_after=3600)
    started = time.monotonic()
    with pytest.raises(GiniRetryError) as caught:
        signed_in.list_documents(limit=1)
    assert time.monotonic() - started < 20  # not the 60 s Retry-After cap, let alone 3600 s
    assert route_count(gini_connection, "GET /documents") == 1
    assert "3600 s" in str(caught.value)
    assert caught.value.status == 429
    assert route_count(gini_connection, "GET /documents") == 1


def test_giving_up_says_attempts_status_and_request_id(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook(max_attempts=3)
    hook.get_access_token()
    gini_connection.add_fault("status", status=503, path="/documents")
    with pytest.raises(GiniRetryError) as caught:
        hook.list_documents()
    message = str(caught.value)
    assert caught.value.attempts == 3
    assert "failed 3 times" in message
    assert "HTTP 503" in message
    assert caught.value.request_id == gini_connection.requests()[-1]["requestId"]
    assert caught.value.request_id in message


def test_total_time_bound(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook(max_attempts=1000, max_elapsed=1.0, backoff_initial=0.2, backoff_max=0.2)
    hook.get_access_token()
    gini_connection.add_fault("status", status=503, path="/documents")
    started = time.monotonic()
    with pytest.raises(GiniRetryError):
        hook.list_documents()
    assert time.monotonic() - started < 15  # unbounded, 1000 attempts would take minutes


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("reset", {}),
        ("close_mid_body", {}),
        ("truncate", {}),
        ("html", {"status": 200}),
        ("html", {"status": 502}),
        ("slow_body", {"delay": 2.0}),
    ],
)
def test_broken_answers_to_reads_are_retried(
    gini_connection: RunningSandbox, make_hook: MakeHook, kind: str, extra: dict[str, object]
) -> None:
    hook = make_hook(read_timeout=0.5)
    hook.get_access_token()
    gini_connection.reset_counters()
    gini_connection.add_fault(kind, path="/documents", first=1, **extra)
    page = hook.list_documents(limit=3)
    assert len(page["documents"]) == 3
    time.sleep(float(extra.get("delay", 0)))  # the stalled answer is counted when it ends
    assert route_count(gini_connection, "GET /documents") == 2


def test_token_endpoint_faults_are_retried(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    gini_connection.add_fault("status", status=503, path="/oauth/token", first=2)
    gini_connection.add_fault("truncate", path="/oauth/token", first=1)
    make_hook().list_documents(limit=1)
    counters = gini_connection.counters()
    assert counters["routes"]["POST /oauth/token"] == 4
    assert counters["grants_issued"] == {"password": 2}  # one truncated answer, one used


def test_token_endpoint_has_a_read_timeout(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    gini_connection.add_fault("slow_body", path="/oauth/token", first=1, delay=8.0)
    started = time.monotonic()
    make_hook(read_timeout=0.5).list_documents(limit=1)
    assert time.monotonic() - started < 6  # not the 8 s the stalled answer takes
    # The stalled answer is counted when it ends.
    give_up = time.monotonic() + 20
    while gini_connection.counters()["routes"].get("POST /oauth/token") != 2:
        assert time.monotonic() < give_up, gini_connection.counters()["routes"]
        time.sleep(0.2)


@pytest.mark.parametrize(("kind", "extra"), [("status", {"status": 503}), ("reset", {"after_handler": True})])
def test_uploads_are_not_retried_once_sent(
    gini_connection: RunningSandbox, signed_in: GiniHook, kind: str, extra: dict[str, object]
) -> None:
    before = len(gini_connection.documents())
    gini_connection.add_fault(kind, path="/documents", method="POST", first=1, **extra)
    with pytest.raises((GiniHTTPError, GiniTransportError)):
        signed_in.upload_document(PDF, filename="once.pdf")
    assert route_count(gini_connection, "POST /documents") == 1
    created = len(gini_connection.documents()) - before
    assert created == (1 if extra.get("after_handler") else 0)


def test_upload_is_retried_after_429(gini_connection: RunningSandbox, signed_in: GiniHook) -> None:
    before = len(gini_connection.documents())
    gini_connection.add_fault("retry_after", path="/documents", method="POST", first=1, retry_after=0)
    signed_in.upload_document(PDF, filename="limited.pdf")
    assert len(gini_connection.documents()) == before + 1


def test_upload_is_retried_when_the_connection_cannot_be_made(
    make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, RunningSandbox] = {}

    def serve_later() -> None:
        time.sleep(0.5)
        with run_sandbox(SandboxConfig(seed=False), port=port) as late:
            box["sandbox"] = late
            started.set()
            stop.wait(30)

    thread = threading.Thread(target=serve_later)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        set_connection("gini_late", {**RunningSandbox(url, None).connection(), "host": url})  # type: ignore[arg-type]
        # Attempts enough to wait out the sandbox's start, which takes seconds on a loaded machine
        # (8 attempts, about 3 s, ran out once in CI).
        hook = make_hook("gini_late", backoff_initial=0.2, backoff_max=0.5, max_attempts=120)
        doc_id = hook.upload_document(PDF, filename="late.pdf")
        assert started.is_set()
        assert [d["id"] for d in box["sandbox"].documents()] == [doc_id]
    finally:
        stop.set()
        thread.join()


def test_unreachable_gini_gives_up_with_a_typed_error(
    make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    set_connection("gini_nowhere", {**RunningSandbox(url, None).connection(), "host": url})  # type: ignore[arg-type]
    with pytest.raises(GiniRetryError) as caught:
        make_hook("gini_nowhere", max_attempts=3).list_documents()
    assert caught.value.attempts == 3
    assert isinstance(caught.value.last, GiniTransportError)
    assert "Could not connect" in str(caught.value)


def test_default_policy_rides_out_thirty_seconds_of_503() -> None:
    waits: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if sum(waits) < 30:  # Gini is down for the first 30 s
            raise GiniHTTPError("down", status=503)
        return "up"

    assert RetryPolicy(RetrySettings(), sleep=waits.append).run(flaky, idempotent=True, what="GET") == "up"
    assert sum(waits) >= 30
    assert calls <= RetrySettings().max_attempts
    assert all(later >= earlier * 0.9 for earlier, later in itertools.pairwise(waits))


def test_transport_errors_do_not_carry_the_request(
    gini_connection: RunningSandbox, signed_in: GiniHook
) -> None:
    gini_connection.add_fault("reset", path="/documents", method="POST")
    with pytest.raises(GiniTransportError) as caught:
        signed_in.upload_document(PDF, filename="reset.pdf")
    # A requests exception holds the prepared request with its Authorization header.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert caught.value.sent is True
