"""Which creation dates a pull covers: the one window rule.

- ``created_after`` unset (incremental): [watermark, end of the run).
- The first incremental pull (no watermark yet): [``start``, end), or with ``full_history``
  everything before the end. With neither it is an error, never a silent pull of everything.
- An incremental run whose end is not past the watermark (a backfill or a cleared run of a
  covered date): nothing new, only earlier pulls' unfinished documents.
- ``created_after`` set (explicit): [``created_after``, ``created_before`` or end of the run).

The end of a run is its ``data_interval_end``; a run without a logical date (asset-triggered,
``airflow dags trigger`` without ``-l``, REST with ``logical_date: null``,
``TriggerDagRunOperator(run_after=...)``) has none, and ends at its ``run_after``.
``created_before`` replaces the end in both modes.

The watermark (pull/state.py) is how far pulls have gone completely. It lives with the data,
not in Airflow's view of which runs succeeded: a run can succeed although its pull failed (an
``all_done`` leaf, "Mark success", a skipped pull), and "since the previous successful run"
then skips a window that was never pulled. Nothing moves it but a pull that listed its whole
window, and it never moves back. Explicit windows leave it alone unless ``advance_watermark``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError

# What to write instead of a window that renders empty, e.g. [data_interval_start,
# data_interval_end) under Airflow 3's default CronTriggerTimetable, where both are the same.
EMPTY_WINDOW_HINT = (
    "Leave created_after unset to pull incrementally from the watermark (each run from where "
    "the last complete pull ended), or give the window a width, e.g. "
    'created_after="{{ (data_interval_end - macros.timedelta(days=1)).isoformat() }}"'
)


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise GiniConfigError(f"The pull window starts after it ends: {self.describe()}")

    def describe(self) -> str:
        start = self.start.isoformat() if self.start else "-inf"
        end = self.end.isoformat() if self.end else "+inf"
        return f"[{start}, {end})"

    def as_strings(self) -> list[str | None]:
        return [self.start.isoformat() if self.start else None, self.end.isoformat() if self.end else None]


@dataclass(frozen=True)
class WindowPlan:
    """The window a run pulls (None: nothing new to list) and what it does to the watermark."""

    window: Window | None
    incremental: bool
    advances: bool  # a complete pull moves the watermark to ``end``
    end: datetime
    why: str  # for the log: where the window's start came from

    def describe(self) -> str:
        if self.window is None:
            return f"nothing new (the watermark is at or past this run's end, {self.end.isoformat()})"
        return f"{self.window.describe()} ({self.why})"


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


def run_end(context: Mapping[str, Any]) -> datetime:
    """The end of the run: its ``data_interval_end``, or, without a logical date, its ``run_after``."""
    end = moment(context.get("data_interval_end"), "data_interval_end")
    if end is None:
        dag_run = context.get("dag_run")
        end = moment(getattr(dag_run, "run_after", None), "run_after")
    if end is None:
        raise GiniConfigError(
            "This run has neither a data_interval_end nor a run_after, so the pull cannot tell "
            "where its window ends; pass created_before"
        )
    return end


def plan_window(
    context: Mapping[str, Any],
    *,
    created_after: Any,
    created_before: Any,
    start: Any,
    full_history: bool,
    advance_watermark: bool,
    watermark: datetime | None,
) -> WindowPlan:
    """The window of this run, by the table at the top of this module."""
    after = moment(created_after, "created_after")
    end = moment(created_before, "created_before") or run_end(context)
    first = moment(start, "start")
    if after is not None:
        if first is not None or full_history:
            raise GiniConfigError(
                "start and full_history say where the first incremental pull begins; with "
                "created_after the window is explicit. Pass one or the other"
            )
        if after == end:
            raise GiniConfigError(
                f"The pull window [{after.isoformat()}, {end.isoformat()}) is empty: created_after "
                "and the window's end are the same instant. Under Airflow 3's default "
                "CronTriggerTimetable data_interval_start equals data_interval_end. " + EMPTY_WINDOW_HINT
            )
        if advance_watermark and watermark is not None and after > watermark:
            raise GiniConfigError(
                f"advance_watermark: the window starts at {after.isoformat()}, after the watermark "
                f"({watermark.isoformat()}); moving the watermark to its end would skip the "
                "documents in between. Start the window at or before the watermark"
            )
        return WindowPlan(Window(after, end), False, advance_watermark, end, "explicit window")
    if first is not None and full_history:
        raise GiniConfigError("Pass start or full_history=True, not both")
    if watermark is not None:
        begin, why = watermark, "from the watermark"
    elif first is not None:
        begin, why = first, "first pull, from start"
    elif full_history:
        begin, why = None, "first pull, full history"
    else:
        raise GiniConfigError(
            "This is the first incremental pull into this destination (no watermark yet), so it "
            "needs to know where to begin: pass start=<a date-time> to begin there, or "
            "full_history=True to pull every document the account has"
        )
    if begin is not None and begin >= end:
        return WindowPlan(None, True, False, end, why)
    return WindowPlan(Window(begin, end), True, True, end, why)
