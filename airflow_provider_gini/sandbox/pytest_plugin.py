"""pytest fixtures that give your own DAG tests a running Gini sandbox.

Registered through the ``pytest11`` entry point, so installing the provider
is enough. The heavy imports wait until a fixture is used.

    def test_my_dag(gini_connection):
        dag.test()  # AIRFLOW_CONN_GINI_DEFAULT points at a fresh sandbox
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_gini.sandbox.config import ApiProfile
    from airflow_provider_gini.sandbox.server import RunningSandbox


@pytest.fixture
def gini_sandbox_profile() -> ApiProfile | str:
    """The API profile ``gini_sandbox`` serves: ``"pay-api"`` unless the test parametrizes this
    fixture, e.g. ``@pytest.mark.parametrize("gini_sandbox_profile", ["pay-api", "legacy"])`` or
    with ``profile("legacy", order="descending")`` values."""
    return "pay-api"


@pytest.fixture
def gini_sandbox(gini_sandbox_profile: ApiProfile | str) -> Iterator[RunningSandbox]:
    """A fresh, seeded sandbox for one test, on a free loopback port."""
    from airflow_provider_gini.sandbox.server import run_sandbox

    with run_sandbox(api=gini_sandbox_profile) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def gini_sandbox_session() -> Iterator[RunningSandbox]:
    """One seeded sandbox shared by the whole session (faster; state carries over between tests)."""
    from airflow_provider_gini.sandbox.server import run_sandbox

    with run_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def gini_connection(gini_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> RunningSandbox:
    """``gini_sandbox`` plus ``AIRFLOW_CONN_GINI_DEFAULT`` set to a ready connection for it."""
    for name, value in gini_sandbox.connection_env("gini_default").items():
        monkeypatch.setenv(name, value)
    return gini_sandbox
