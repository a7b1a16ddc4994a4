"""The command line: ``python -m airflow_provider_gini.sandbox`` and the ``gini-sandbox`` script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER
from tests.deployment import free_port

MODULE = [sys.executable, "-m", "airflow_provider_gini.sandbox"]
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)")
ADMIN_TOKEN_RE = re.compile(r"admin token: ([\w-]+),")


def _admin(line: str) -> dict[str, str]:
    """The admin API's headers, with the token the "serving at" line printed."""
    match = ADMIN_TOKEN_RE.search(line)
    assert match is not None, line
    return {"Authorization": f"Bearer {match.group(1)}"}


def _first_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """The first stdout line, or fail (with stderr) when none comes within ``timeout``."""
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"the sandbox printed no line; stderr: {err}")
    return lines[0]


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a CLI started by a test, and close its pipes."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def _serve(*args: str) -> Iterator[tuple[str, str]]:
    """Start the CLI on a free port; yield (base URL, first stdout line); always stop it."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*MODULE, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(proc)
        yield f"http://127.0.0.1:{port}", line
    finally:
        stop(proc)


def _token(base: str) -> str:
    response = httpx.post(
        f"{base}/oauth/token",
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": DEMO_USER.password},
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_print_connection() -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*MODULE, "--port", "8123", "--print-connection"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    conn = json.loads(result.stdout)
    assert conn["conn_type"] == "gini"
    assert conn["host"] == "http://127.0.0.1:8123"
    assert conn["login"] == DEMO_USER.email
    assert conn["password"] == DEMO_USER.password
    assert conn["extra"] == {
        "client_id": DEMO_CLIENT.client_id,
        "client_secret": DEMO_CLIENT.client_secret,
        "user_center_url": "http://127.0.0.1:8123",
    }


def test_serve_no_seed() -> None:
    with _serve("--latency", "0", "--no-seed") as (base, line):
        match = URL_RE.search(line)
        assert match is not None, line
        assert f"http://127.0.0.1:{match.group(1)}" == base
        health = httpx.get(f"{base}/__sandbox/health", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "documents": 0, "users": 2}
        headers = {"Authorization": f"Bearer {_token(base)}", "Accept": "application/vnd.gini.v1+json"}
        listing = httpx.get(f"{base}/documents", headers=headers, timeout=10).json()
        assert listing == {"documents": []}


def test_serve_seeded_by_default() -> None:
    with _serve() as (base, _):
        assert httpx.get(f"{base}/__sandbox/health", timeout=10).json()["documents"] > 0


def test_serve_with_a_profile_and_switches() -> None:
    """--profile legacy --order descending --error-body items: offset paging with a totalCount,
    newest first, API v5 error bodies."""
    with _serve("--profile", "legacy", "--order", "descending", "--error-body", "items") as (base, _):
        headers = {"Authorization": f"Bearer {_token(base)}", "Accept": "application/vnd.gini.v1+json"}
        first = httpx.get(f"{base}/documents", params={"limit": 3}, headers=headers, timeout=10).json()
        assert list(first) == ["totalCount", "documents"]
        dates = [d["creationDate"] for d in first["documents"]]
        assert dates == sorted(dates, reverse=True)
        missing = httpx.get(f"{base}/documents/nope", headers=headers, timeout=10).json()
        assert missing["items"][0]["code"] == "2501"


def test_serve_with_the_other_switches() -> None:
    args = ("--cursor", "exclusive", "--total-count", "--pending-status", "409", "--feedback-methods", "put")
    with _serve(*args) as (base, _):
        headers = {"Authorization": f"Bearer {_token(base)}", "Accept": "application/vnd.gini.v1+json"}
        first = httpx.get(f"{base}/documents", params={"limit": 2}, headers=headers, timeout=10).json()
        assert first["totalCount"] > 2
        last = first["documents"][-1]
        second = httpx.get(
            f"{base}/documents",
            params={"limit": 2, "next": last["creationDate"]},
            headers=headers,
            timeout=10,
        ).json()
        assert last["id"] not in {d["id"] for d in second["documents"]}  # exclusive
        feedback = f"{base}/documents/{last['id']}/extractions/feedback"
        body = {"extractions": {"amountToPay": {"value": "1.00:EUR"}}}
        assert httpx.post(feedback, json=body, headers=headers, timeout=10).status_code == 405


def test_unknown_profile_is_refused() -> None:
    result = subprocess.run(  # noqa: S603
        [*MODULE, "--profile", "newest", "--print-connection"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid choice: 'newest'" in result.stderr


def test_serve_with_fault() -> None:
    fault = json.dumps({"kind": "status", "status": 503, "first": 1})
    with _serve("--no-seed", "--fault", fault) as (base, line):
        first = httpx.get(f"{base}/documents", timeout=10)
        assert first.status_code == 503
        assert set(first.json()) == {"message", "requestId"}
        # the fault is spent: the next request reaches the handler (401: no token)
        assert httpx.get(f"{base}/documents", timeout=10).status_code == 401
        rules = httpx.get(f"{base}/__sandbox/faults", headers=_admin(line), timeout=10).json()
        assert [(r["kind"], r["status"], r["fired"]) for r in rules] == [("status", 503, 1)]


def test_serve_with_latency_and_ttl() -> None:
    with _serve("--no-seed", "--latency", "250", "--user-token-ttl", "77") as (base, line):
        rules = httpx.get(f"{base}/__sandbox/faults", headers=_admin(line), timeout=10).json()
        assert [(r["kind"], r["delay"]) for r in rules] == [("latency", 0.25)]
        settings = httpx.get(f"{base}/__sandbox/settings", headers=_admin(line), timeout=10).json()
        assert settings["user_token_ttl"] == 77
        response = httpx.post(
            f"{base}/oauth/token",
            params={"grant_type": "password"},
            data={"username": DEMO_USER.email, "password": DEMO_USER.password},
            auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
            timeout=10,
        )
        assert response.json()["expires_in"] == 77
        assert response.elapsed.total_seconds() >= 0.25


def test_invalid_fault_json_exits_nonzero() -> None:
    for bad in ("{not json", '{"kind": "explode"}'):
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [*MODULE, "--port", str(free_port()), "--fault", bad],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "invalid sandbox configuration" in result.stderr
        assert result.stdout == ""


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "gini-sandbox"
    assert script.is_file()
    assert os.access(script, os.X_OK)
    result = subprocess.run(  # noqa: S603 - the venv's own script
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for option in ("--port", "--print-connection", "--fault", "--no-seed", "--latency"):
        assert option in result.stdout
