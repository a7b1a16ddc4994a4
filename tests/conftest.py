"""Shared test setup. The sandbox fixtures (gini_sandbox, gini_connection, ...) come from the
provider's own pytest plugin, registered by entry point.

Airflow reads AIRFLOW_HOME when it is first imported, so it is pointed at a temporary folder
here, before any test module imports Airflow."""

from __future__ import annotations

import os
import tempfile

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="gini-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
