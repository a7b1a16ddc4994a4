"""Which creation dates a scheduled pull covers.

Airflow 3's default ``CronTriggerTimetable`` gives scheduled runs an empty data interval
(``data_interval_start == data_interval_end``), so ``[start, end)`` would pull nothing. A run
therefore pulls ``[start, end)`` when its interval is not empty, and otherwise from the end of
the previous successful run to this run's end. Consecutive runs, catch-up included, so cover
each instant exactly once; a failed run's window is picked up by the next successful one; and
the first run ever pulls everything before its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise GiniConfigError(f"The pull window starts after it ends: [{self.start}, {self.end})")

    def describe(self) -> str:
        start = self.start.isoformat() if self.start else "-inf"
        end = self.end.isoformat() if self.end else "+inf"
        return f"[{start}, {end})"

    def as_strings(self) -> list[str | None]:
        return [self.start.isoformat() if self.start else None, self.end.isoformat() if self.end else None]


def moment(value: Any, name: str) -> datetime | None:
    """A timezone-aware datetime from a datetime, an ISO string (a rendered template) or None."""
    value = _unwrap(value)
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise GiniConfigError(f"{name} must be an ISO 8601 date-time, got {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise GiniConfigError(
        f"{name} must be a datetime, an ISO 8601 string or None, got {type(value).__name__}"
    )


def _unwrap(value: Any) -> Any:
    # Airflow hands some context values over as lazy proxies, which may wrap None.
    wrapped = getattr(value, "__wrapped__", value)
    return wrapped if wrapped is not value else value


def default_window(context: Mapping[str, Any]) -> Window:
    start = moment(context.get("data_interval_start"), "data_interval_start")
    end = moment(context.get("data_interval_end"), "data_interval_end")
    if end is None:
        end = moment(context.get("logical_date"), "logical_date")
    if start is not None and end is not None and start < end:
        return Window(start, end)
    previous = moment(context.get("prev_data_interval_end_success"), "prev_data_interval_end_success")
    return Window(previous if previous is not None and (end is None or previous <= end) else None, end)


AUTO = "auto"  # the default of created_after/created_before: take the bound from the run's context


def resolve_window(context: Mapping[str, Any], created_after: Any, created_before: Any) -> Window:
    """The operator's window: each bound given explicitly (None meaning unbounded), or ``AUTO``."""
    default = default_window(context) if AUTO in (created_after, created_before) else None
    start = default.start if default and created_after == AUTO else moment(created_after, "created_after")
    end = default.end if default and created_before == AUTO else moment(created_before, "created_before")
    return Window(start, end)
