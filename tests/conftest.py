"""Shared test setup. The sandbox fixtures (gini_sandbox, gini_connection, ...) come from the
provider's own pytest plugin, registered by entry point.

Airflow reads its configuration when it is first imported, so AIRFLOW_HOME and the DAGs
folder point at a temporary folder here, before any test module imports Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="gini-airflow-home-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the temporary AIRFLOW_HOME (needed by dag.test())."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())  # noqa: S603
    return AIRFLOW_HOME


@pytest.fixture(autouse=True)
def _fresh_trigger_hooks() -> Iterator[None]:
    """Triggers share hooks per connection for a minute; each test starts its own sandbox."""
    yield
    from airflow_provider_gini.triggers.documents import forget_shared_hooks

    forget_shared_hooks()
