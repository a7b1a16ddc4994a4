"""Fault injection, observed over real HTTP against a running sandbox."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest
import requests

from airflow_provider_gini.sandbox import (
    DEMO_CLIENT,
    DEMO_USER,
    OTHER_USER,
    PLAIN_CLIENT,
    FaultRule,
    RunningSandbox,
    SandboxConfig,
    run_sandbox,
)
from tests.sandbox.helpers import api_headers, token

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def headers(gini_sandbox: RunningSandbox) -> dict[str, str]:
    """API headers with a fresh user token (taken before any fault is set)."""
    return api_headers(token(gini_sandbox))


def _get(sandbox: RunningSandbox, path: str, headers: dict[str, str], **kwargs: object) -> requests.Response:
    return requests.get(f"{sandbox.base_url}{path}", headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


# latency


def _timed_get(sandbox: RunningSandbox, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = _get(sandbox, path, headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    return elapsed


def test_latency_adds_fixed_delay(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    baseline = min(_timed_get(gini_sandbox, "/documents", headers) for _ in range(3))
    gini_sandbox.add_fault("latency", delay=0.3, path="/documents")
    delayed = [_timed_get(gini_sandbox, "/documents", headers) for _ in range(2)]
    for elapsed in delayed:
        assert elapsed >= 0.3
        assert elapsed - baseline >= 0.25
        assert elapsed < 0.3 + baseline + 1.5  # room for a loaded machine's stalls
    # the log's durations include the delay too
    durations = [entry["duration"] for entry in gini_sandbox.requests()[-2:]]
    assert all(d >= 0.3 for d in durations)


def test_latency_only_on_matching_path(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("latency", delay=1.0, path="/payment*")
    assert _timed_get(gini_sandbox, "/documents", headers) < 0.8
    assert _timed_get(gini_sandbox, "/paymentRequests", headers) >= 1.0


def test_latency_jitter_is_bounded(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("latency", delay=0.05, jitter=0.1, path="/documents")
    for _ in range(4):
        _get(gini_sandbox, "/documents", headers)
    durations = [entry["duration"] for entry in gini_sandbox.requests() if entry["path"] == "/documents"]
    assert len(durations) == 4
    for duration in durations:
        assert 0.05 <= duration <= 0.15 + 0.1


def test_latency_rules_add_up(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("latency", delay=0.15)
    gini_sandbox.add_fault("latency", delay=0.15, path="/documents")
    assert _timed_get(gini_sandbox, "/documents", headers) >= 0.3


# status


def test_status_first_n_then_normal(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    rule = gini_sandbox.add_fault("status", status=503, first=2, path="/documents")
    statuses = []
    for _ in range(4):
        response = _get(gini_sandbox, "/documents", headers)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert set(body) == {"message", "requestId"}
            assert "503" in body["message"]
            assert body["requestId"] == response.headers["x-request-id"]
        else:
            assert "documents" in response.json()
    assert statuses == [503, 503, 200, 200]
    assert gini_sandbox.counters()["faults"][rule["id"]] == {"kind": "status", "matched": 4, "fired": 2}


def test_status_does_not_run_the_handler(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    before = len(gini_sandbox.documents())
    gini_sandbox.add_fault("status", status=500, first=1, method="POST", path="/documents")
    url = f"{gini_sandbox.base_url}/documents"
    upload_headers = headers | {"Content-Type": "application/pdf"}
    response = requests.post(url, data=PDF, headers=upload_headers, timeout=10)
    assert response.status_code == 500
    assert len(gini_sandbox.documents()) == before
    response = requests.post(url, data=PDF, headers=upload_headers, timeout=10)
    assert response.status_code == 201
    assert len(gini_sandbox.documents()) == before + 1


def test_status_every_k(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("status", status=502, every=3, path="/documents")
    statuses = [_get(gini_sandbox, "/documents", headers).status_code for _ in range(7)]
    assert statuses == [200, 200, 502, 200, 200, 502, 200]


def test_status_times_caps_firing(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    rule = gini_sandbox.add_fault("status", status=500, times=2, path="/documents")
    statuses = [_get(gini_sandbox, "/documents", headers).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert gini_sandbox.counters()["faults"][rule["id"]]["fired"] == 2


def test_status_every_with_times(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("status", status=500, every=2, times=1, path="/documents")
    statuses = [_get(gini_sandbox, "/documents", headers).status_code for _ in range(4)]
    assert statuses == [200, 500, 200, 200]


def test_status_default_is_503(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("status", first=1)
    assert _get(gini_sandbox, "/documents", headers).status_code == 503


def test_status_method_matching(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("status", status=503, method="post", path="/documents")
    assert _get(gini_sandbox, "/documents", headers).status_code == 200
    response = requests.post(
        f"{gini_sandbox.base_url}/documents",
        data=PDF,
        headers=headers | {"Content-Type": "application/pdf"},
        timeout=10,
    )
    assert response.status_code == 503


def test_status_path_glob_matching(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    doc_id = gini_sandbox.documents()[0]["id"]
    gini_sandbox.add_fault("status", status=504, path="/documents/*")
    assert _get(gini_sandbox, "/documents", headers).status_code == 200
    assert _get(gini_sandbox, f"/documents/{doc_id}", headers).status_code == 504
    assert _get(gini_sandbox, f"/documents/{doc_id}/extractions", headers).status_code == 504
    assert _get(gini_sandbox, "/paymentRequests", headers).status_code == 200
    # the token endpoint is untouched as well
    assert token(gini_sandbox)


def test_status_first_matching_rule_decides(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    first = gini_sandbox.add_fault("status", status=500, path="/documents")
    second = gini_sandbox.add_fault("status", status=502, path="/documents")
    assert _get(gini_sandbox, "/documents", headers).status_code == 500
    faults = gini_sandbox.counters()["faults"]
    assert faults[first["id"]]["fired"] == 1
    assert faults[second["id"]]["fired"] == 0


def test_401_storm(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("status", status=401, every=2, path="/documents*")
    responses = [_get(gini_sandbox, "/documents", headers) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 401] * 3
    for response in responses[1::2]:
        assert "invalid_token" in response.headers["www-authenticate"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["requestId"] == response.headers["x-request-id"]
    for response in responses[::2]:
        assert "www-authenticate" not in response.headers


def test_faults_set_at_start() -> None:
    config = SandboxConfig(faults=[FaultRule(kind="status", status=503, first=1, path="/documents")])
    with run_sandbox(config) as sandbox:
        headers = api_headers(token(sandbox))
        assert _get(sandbox, "/documents", headers).status_code == 503
        assert _get(sandbox, "/documents", headers).status_code == 200
        (rule,) = sandbox.admin.get("/faults").json()
        assert rule["id"]
        assert (rule["matched"], rule["fired"]) == (2, 1)


# retry_after


def test_retry_after_seconds(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("retry_after", retry_after=7, first=1, path="/documents")
    response = _get(gini_sandbox, "/documents", headers)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert set(response.json()) == {"message", "requestId"}
    assert _get(gini_sandbox, "/documents", headers).status_code == 200


def test_retry_after_fractional_seconds_round_up(
    gini_sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    gini_sandbox.add_fault("retry_after", retry_after=0.2, status=503, path="/documents")
    response = _get(gini_sandbox, "/documents", headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_retry_after_http_date(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("retry_after", retry_after=120, retry_after_form="http-date", path="/documents")
    response = _get(gini_sandbox, "/documents", headers)
    assert response.status_code == 429
    when = parsedate_to_datetime(response.headers["retry-after"])
    assert when.tzinfo is not None
    assert response.headers["retry-after"].endswith("GMT")
    delta = (when - datetime.now(timezone.utc)).total_seconds()
    assert 110 <= delta <= 125


# rate_limit: a token bucket per OAuth client (or per client and user)


def test_rate_limit_answers_429_with_the_v5_body_once_the_clients_bucket_is_empty(
    gini_sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    # One token per 100 s: nothing refills while the test runs, however slow the machine.
    rule = gini_sandbox.add_fault("rate_limit", rate=0.01, burst=3, path="/documents")
    answers = [_get(gini_sandbox, "/documents", headers) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[-1]
    body = refused.json()
    assert body == {
        "items": [{"code": "2400", "message": "Too many requests"}],
        "requestId": refused.headers["x-request-id"],
    }
    assert "retry-after" not in refused.headers  # Gini documents no header; only on request
    # The same client for another user shares the bucket; another client has its own.
    other_user = api_headers(token(gini_sandbox, OTHER_USER))
    assert _get(gini_sandbox, "/documents", other_user).status_code == 429
    other_client = api_headers(token(gini_sandbox, DEMO_USER, PLAIN_CLIENT))
    assert _get(gini_sandbox, "/documents", other_client).status_code == 200
    # Only paths the rule matches count.
    assert _get(gini_sandbox, "/documents/unknown", headers).status_code == 404
    assert gini_sandbox.counters()["faults"][rule["id"]] == {"kind": "rate_limit", "matched": 7, "fired": 3}


def test_rate_limit_per_user_keeps_a_bucket_per_client_and_user(
    gini_sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    gini_sandbox.add_fault("rate_limit", rate=0.01, burst=1, per="user", path="/documents")
    assert _get(gini_sandbox, "/documents", headers).status_code == 200
    assert _get(gini_sandbox, "/documents", headers).status_code == 429
    other_user = api_headers(token(gini_sandbox, OTHER_USER))
    assert _get(gini_sandbox, "/documents", other_user).status_code == 200


def test_rate_limit_refills_at_its_rate_and_can_say_when(
    gini_sandbox: RunningSandbox, headers: dict[str, str]
) -> None:
    gini_sandbox.add_fault("rate_limit", rate=0.5, burst=1, retry_after_header=True, path="/documents")
    assert _get(gini_sandbox, "/documents", headers).status_code == 200
    refused = _get(gini_sandbox, "/documents", headers)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] in ("1", "2")  # the 2 s a token takes, less time passed
    time.sleep(2.1)
    assert _get(gini_sandbox, "/documents", headers).status_code == 200


def test_rate_limit_counts_token_requests_by_their_basic_client(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.add_fault("rate_limit", rate=0.01, burst=1, path="/oauth/token")
    token(gini_sandbox)
    response = httpx.post(
        f"{gini_sandbox.base_url}/oauth/token",
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": DEMO_USER.password},
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
    )
    assert response.status_code == 429
    token(gini_sandbox, DEMO_USER, PLAIN_CLIENT)  # another client: its own bucket


def test_rate_limit_lets_unauthenticated_requests_through_to_their_401(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.add_fault("rate_limit", rate=0.01, burst=1, path="/documents")
    for _ in range(3):
        assert _get(gini_sandbox, "/documents", {"Authorization": "Bearer nonsense"}).status_code == 401


# reset


def test_reset_gives_connection_error(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("reset", first=1, path="/documents")
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(gini_sandbox, "/documents", headers)
    # the next request is served normally
    assert _get(gini_sandbox, "/documents", headers).status_code == 200
    log = gini_sandbox.requests()
    assert [entry["status"] for entry in log[-2:]] == ["reset", 200]


def test_reset_is_a_tcp_reset(gini_sandbox: RunningSandbox) -> None:
    """On a raw socket: not a single byte of response, then RST (not an orderly FIN)."""
    gini_sandbox.add_fault("reset", path="/documents")
    port = int(gini_sandbox.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /documents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)


def test_close_mid_body_is_an_orderly_close(gini_sandbox: RunningSandbox) -> None:
    """On a raw socket: headers and part of the body, then EOF."""
    gini_sandbox.add_fault("close_mid_body", path="/paymentProviders")
    port = int(gini_sandbox.base_url.rsplit(":", 1)[1])
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /paymentProviders HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 ")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[
            1
        ]
    )
    assert 0 < len(body) < length


def test_reset_with_httpx(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("reset", first=1, path="/documents")
    with httpx.Client(base_url=gini_sandbox.base_url, headers=headers, timeout=10) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get("/documents")
        assert client.get("/documents").status_code == 200


def test_reset_before_handler_does_not_create(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    before = len(gini_sandbox.documents())
    gini_sandbox.add_fault("reset", method="POST", path="/documents")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{gini_sandbox.base_url}/documents",
            data=PDF,
            headers=headers | {"Content-Type": "application/pdf"},
            timeout=10,
        )
    assert len(gini_sandbox.documents()) == before


def test_reset_after_handler_creates_document(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    before = gini_sandbox.documents()
    gini_sandbox.add_fault("reset", after_handler=True, method="POST", path="/documents")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{gini_sandbox.base_url}/documents",
            params={"filename": "reset-after.pdf"},
            data=PDF,
            headers=headers | {"Content-Type": "application/pdf"},
            timeout=10,
        )
    after = gini_sandbox.documents()
    assert len(after) == len(before) + 1
    new = {d["id"] for d in after} - {d["id"] for d in before}
    (created,) = [d for d in after if d["id"] in new]
    assert created["name"] == "reset-after.pdf"


# close_mid_body and slow_body


def test_close_mid_body(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("close_mid_body", first=1, path="/documents")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _get(gini_sandbox, "/documents", headers)
    assert _get(gini_sandbox, "/documents", headers).json()["documents"]


def test_close_mid_body_streamed_part_arrives(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    full = _get(gini_sandbox, "/documents", headers).content
    gini_sandbox.add_fault("close_mid_body", first=1, path="/documents")
    with httpx.Client(base_url=gini_sandbox.base_url, headers=headers, timeout=10) as client:
        received: list[bytes] = []
        with client.stream("GET", "/documents") as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == len(full)
            with pytest.raises(httpx.RemoteProtocolError):
                received.extend(response.iter_bytes())
        assert 0 < len(b"".join(received)) < len(full)
        assert full.startswith(b"".join(received))


def test_slow_body_short_timeout(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    # The body stalls far longer than the timeout, so a loaded machine cannot blur the two.
    gini_sandbox.add_fault("slow_body", delay=3.0, first=1, path="/documents")
    with httpx.Client(base_url=gini_sandbox.base_url, headers=headers) as client:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/documents", timeout=httpx.Timeout(10, read=0.2))
        assert time.perf_counter() - started < 2.0


def test_slow_body_long_timeout(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    full = _get(gini_sandbox, "/documents", headers).content
    gini_sandbox.add_fault("slow_body", delay=0.4, path="/documents")
    with httpx.Client(base_url=gini_sandbox.base_url, headers=headers) as client:
        started = time.perf_counter()
        response = client.get("/documents", timeout=httpx.Timeout(10, read=2))
        assert time.perf_counter() - started >= 0.4
    assert response.status_code == 200
    assert response.content == full
    assert response.json()["documents"]
    assert len(response.content) == int(response.headers["content-length"])


def test_slow_body_requests_read_timeout(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("slow_body", delay=0.6, first=1, path="/documents")
    # requests reports a read timeout inside the body as a ConnectionError
    with pytest.raises((requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
        requests.get(f"{gini_sandbox.base_url}/documents", headers=headers, timeout=(5, 0.2))


# html and truncate


@pytest.mark.parametrize("status", [200, 502])
def test_html(gini_sandbox: RunningSandbox, headers: dict[str, str], status: int) -> None:
    gini_sandbox.add_fault("html", status=status, first=1, path="/documents")
    response = _get(gini_sandbox, "/documents", headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html")
    assert not _is_json(response.content)
    with pytest.raises(ValueError):  # noqa: PT011 - requests' JSONDecodeError is a ValueError
        response.json()
    assert _get(gini_sandbox, "/documents", headers).headers["content-type"].startswith("application/")


def test_html_default_status_is_502(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    gini_sandbox.add_fault("html", first=1)
    assert _get(gini_sandbox, "/documents", headers).status_code == 502


def test_truncate(gini_sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    full = _get(gini_sandbox, "/documents", headers).content
    assert _is_json(full)
    gini_sandbox.add_fault("truncate", first=1, path="/documents")
    with requests.Session() as session:
        response = session.get(f"{gini_sandbox.base_url}/documents", headers=headers, timeout=10)
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(response.content) == len(full) // 2
        assert full.startswith(response.content)
        assert not _is_json(response.content)
        # valid framing: the same keep-alive connection serves the next request
        again = session.get(f"{gini_sandbox.base_url}/documents", headers=headers, timeout=10)
    assert again.content == full


# request ids


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("status", {"status": 503}),
        ("retry_after", {}),
        ("html", {"status": 200}),
        ("truncate", {}),
        ("slow_body", {"delay": 0.05}),
    ],
)
def test_request_id_on_faulted_responses(
    gini_sandbox: RunningSandbox, headers: dict[str, str], kind: str, rule: dict[str, object]
) -> None:
    gini_sandbox.add_fault(kind, first=1, path="/documents", **rule)
    response = _get(gini_sandbox, "/documents", headers)
    request_id = response.headers["x-request-id"]
    assert request_id
    entry = gini_sandbox.requests()[-1]
    assert entry["requestId"] == request_id
    assert len(entry["faults"]) == 1
    assert entry["faults"][0].endswith(f":{kind}")
    assert entry["status"] == response.status_code
