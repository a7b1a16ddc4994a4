"""What the tests need from Airflow where Airflow 3.0 to 3.3 differ, in one place.

Imports of Airflow itself happen inside the functions: the root conftest must set AIRFLOW_HOME
before Airflow is first imported."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any
from unittest.mock import MagicMock

from packaging.version import Version

AIRFLOW_VERSION = Version(version("apache-airflow")).release[:2]
AIRFLOW_V_3_1_PLUS = AIRFLOW_VERSION >= (3, 1)
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= (3, 2)
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= (3, 3)

# `airflow connections test` exits 1 on a failed test only since Airflow 3.3; before, it printed
# "Connection failed!" and exited 0.
CLI_CONNECTION_TEST_FAILURE_EXIT = 1 if AIRFLOW_V_3_3_PLUS else 0

# Airflow types each connection-form extra the API server serves as nullable unless it comes
# from the provider info's conn-fields, which it reads only since 3.2.
REQUIRED_EXTRA_TYPE: str | list[str] = "string" if AIRFLOW_V_3_2_PLUS else ["string", "null"]

# Airflow 3.2 added the Task SDK's own hook registry; before, tasks used core's ProvidersManager.
NO_TASK_RUNTIME_PROVIDERS_MANAGER = "Airflow < 3.2 has no ProvidersManagerTaskRuntime"

# The cron timetable with data intervals, for DAG files the tests write: the Task SDK exports it
# since Airflow 3.2, core's timetables module before.
CRON_DATA_INTERVAL_TIMETABLE_IMPORT = """
try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable
"""


def dag_bag(path: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # moved out of airflow.models in Airflow 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(path)


def sdk_exception(name: str) -> type[Exception]:
    """An exception as tasks raise it: the Task SDK's own from Airflow 3.2, core's before."""
    try:
        found: type[Exception] = getattr(importlib.import_module("airflow.sdk.exceptions"), name)
    except (ImportError, AttributeError):
        found = getattr(importlib.import_module("airflow.exceptions"), name)
    return found


def redact(value: str) -> Any:
    """The secrets masker's redaction, as task logs apply it."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # Airflow 3.0's Task SDK keeps it with the masker
        from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore[no-redef]
    return redact(value)


@contextlib.contextmanager
def api_server_hook_form_view() -> Iterator[None]:
    """The API server's view of the connection forms, as a fresh API server process has it.

    Before Airflow 3.2 the API server builds the forms from the hooks' Python methods, through
    the process-wide ProvidersManager, which earlier tests have already filled without FAB's form
    modules (so without any widgets): it is emptied around the block. Airflow 3.1 stands in for
    missing FAB modules by itself (and leaves its stand-ins behind, which break its next call);
    3.0 needs them importable, as they are wherever FAB is installed, so the same stand-ins 3.1
    uses are put in place. Either way sys.modules is restored afterwards."""
    if AIRFLOW_V_3_2_PLUS:
        yield
        return
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    saved = {name: sys.modules.get(name) for name in FAB_FORM_MODULES}
    if not AIRFLOW_V_3_1_PLUS:
        for name in FAB_FORM_MODULES:
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                sys.modules[name] = MagicMock()
    ProvidersManager()._cleanup()
    HookMetaService.hook_meta_data.cache_clear()
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        ProvidersManager()._cleanup()
        HookMetaService.hook_meta_data.cache_clear()


# What Airflow 3.1's HookMetaService replaces by MagicMock when FAB is not installed.
FAB_FORM_MODULES = (
    "wtforms",
    "wtforms.csrf",
    "wtforms.fields",
    "wtforms.fields.simple",
    "wtforms.validators",
    "flask_babel",
    "flask_appbuilder",
    "flask_appbuilder.fieldwidgets",
)


def connection_from_json(value: str, conn_id: str) -> Any:
    from airflow.sdk import Connection

    if hasattr(Connection, "from_json"):
        return Connection.from_json(value, conn_id=conn_id)
    # Airflow 3.0's Task SDK Connection cannot read JSON; core's (the one its CLI uses) can.
    from airflow.models.connection import Connection as CoreConnection

    return CoreConnection.from_json(value, conn_id=conn_id)
