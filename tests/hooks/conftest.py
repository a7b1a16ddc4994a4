from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import RunningSandbox

# Fast backoff so the retry tests run in milliseconds; the defaults are tested on their own.
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
def make_hook(gini_connection: RunningSandbox) -> Iterator[Callable[..., GiniHook]]:
    hooks: list[GiniHook] = []

    def make(conn_id: str = "gini_default", **kwargs: Any) -> GiniHook:
        hook = GiniHook(conn_id, **{**FAST, **kwargs})
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def set_it(conn_id: str, conn: dict[str, Any] | str) -> None:
        value = conn if isinstance(conn, str) else json.dumps(conn)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    return set_it


@pytest.fixture(autouse=True)
def no_secret_in_debug_logs(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Every hook test runs at DEBUG; afterwards its logs are searched for every secret the
    sandbox knows of (passwords, client secrets, every token it issued)."""
    caplog.set_level(logging.DEBUG)
    # Resolved before the test runs, so the sandbox is still up when the logs are searched.
    sandbox: RunningSandbox | None = (
        request.getfixturevalue("gini_connection") if "gini_connection" in request.fixturenames else None
    )
    yield
    if sandbox is None:
        return
    secrets = [s for values in sandbox.secrets().values() for s in values]
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    leaked = [s for s in secrets if s in text]
    kinds = [k for k, values in sandbox.secrets().items() for s in values if s in text]
    lines = [line[:160] for line in caplog.text.splitlines() if any(s in line for s in leaked)]
    assert leaked == [], f"secrets appeared in the logs: {kinds} {lines}"
