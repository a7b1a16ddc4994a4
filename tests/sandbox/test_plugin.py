"""The provider's pytest plugin, exercised in an inner pytest run (a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

INNER = """
import json
import os

import httpx


def test_connection_env(gini_connection):
    conn = json.loads(os.environ["AIRFLOW_CONN_GINI_DEFAULT"])
    assert conn["conn_type"] == "gini"
    assert conn["host"] == gini_connection.base_url
    assert conn["extra"]["user_center_url"] == conn["host"]
    health = httpx.get(conn["host"] + "/__sandbox/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    token = httpx.post(
        conn["extra"]["user_center_url"] + "/oauth/token",
        params={"grant_type": "password"},
        data={"username": conn["login"], "password": conn["password"]},
        auth=(conn["extra"]["client_id"], conn["extra"]["client_secret"]),
        timeout=10,
    )
    assert token.status_code == 200


def test_env_is_restored_after_the_fixture():
    assert "AIRFLOW_CONN_GINI_DEFAULT" not in os.environ


def test_sandboxes_are_fresh(gini_sandbox):
    gini_sandbox.add_fault("status", status=503)
    assert len(gini_sandbox.admin.get("/faults").json()) == 1


def test_sandboxes_are_fresh_again(gini_sandbox):
    assert gini_sandbox.admin.get("/faults").json() == []


def test_session_sandbox(gini_sandbox_session):
    assert httpx.get(gini_sandbox_session.base_url + "/__sandbox/health").status_code == 200


def test_meant_to_fail(gini_sandbox):
    # shows the inner run really checks: this route does not exist
    assert httpx.get(gini_sandbox.base_url + "/__sandbox/nothing").status_code == 200
"""


def test_gini_connection_fixture(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_GINI_DEFAULT", raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(test_inner=INNER)
    # one inner run (a pytest subprocess takes seconds to start)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", timeout=120)
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        ["PASSED test_inner.py::test_connection_env", "FAILED test_inner.py::test_meant_to_fail*"]
    )


def test_loading_the_plugin_is_cheap() -> None:
    """Every pytest run loads the plugin; the server stack waits until a fixture is used."""
    code = (
        "import sys, airflow_provider_gini.sandbox.pytest_plugin\n"
        "heavy = ('fastapi', 'uvicorn', 'starlette', 'httpx', 'reportlab')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "from airflow_provider_gini.sandbox import run_sandbox\n"
        "print(run_sandbox.__module__)\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["", "airflow_provider_gini.sandbox.server"]
