"""The Airflow names whose home moved between Airflow 3.0 and 3.3, imported from wherever the
installed Airflow keeps them, so the rest of the package imports them from here only."""

from __future__ import annotations

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0 keeps BaseHook in core
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined,unused-ignore]

try:
    from airflow.sdk.log import mask_secret
except ImportError:  # older Task SDKs, then Airflow 2
    try:
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]
    except ImportError:
        from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef,import-not-found,unused-ignore]

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # before Airflow 3.2 the Task SDK raised core's exceptions (3.2+ still re-exports them)
    from airflow.exceptions import (  # type: ignore[assignment,attr-defined,no-redef,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "TaskDeferred",
    "mask_secret",
]
