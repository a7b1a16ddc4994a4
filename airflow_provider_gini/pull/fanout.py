"""One pull as many mapped pulls: a window cut into shards, and one pull per account.

Both return the keyword arguments of ``GiniPullDocumentsOperator.partial(...).expand_kwargs``,
so each shard or account is a task instance of its own that any worker of the deployment can
run, with its own password grant and its own manifest.

- :func:`shard_window` cuts ``[start, end)`` into consecutive explicit windows that cover it with
  no gap and no overlap: every boundary is, as the same string, one shard's ``created_before``
  and the next one's ``created_after``, and the window rule takes each as exclusive and
  inclusive. Explicit windows leave the watermark alone, so a backfill in shards runs beside
  the daily pull.
- :func:`per_account` maps one pull over connection ids, each into its own folder under one
  destination; the watermark of a mapped pull is keyed by its connection id (pull/state.py), so
  accounts never share one, whatever the order of the list.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from datetime import datetime, time, timedelta, timezone
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.window import moment

MS = timedelta(milliseconds=1)
UNITS = ("day", "week")
# Airflow's default [core] max_map_length: a mapped task with more instances fails to expand.
MAX_SHARDS = 1024


def shard_window(
    start: Any,
    end: Any,
    *,
    by: str | timedelta | None = None,
    parts: int | None = None,
    max_shards: int = MAX_SHARDS,
) -> list[dict[str, str]]:
    """``[start, end)`` as ``[{"created_after": ..., "created_before": ...}, ...]`` (ISO strings,
    oldest first), for ``expand_kwargs``.

    ``by="day"`` or ``"week"`` cuts at midnights (weeks: Mondays) in ``start``'s timezone (UTC for
    a string without an offset; a ``zoneinfo`` zone's midnights across daylight-saving changes
    too), the first and last shard running from ``start`` and to ``end``;
    ``by=timedelta(hours=6)`` cuts every so long from ``start``; ``parts=N`` cuts into N shards of
    equal length. Lengths are elapsed time, never wall-clock time. ``start`` and ``end`` take
    datetimes or ISO strings (rendered templates). More than ``max_shards`` shards (Airflow's
    default ``max_map_length``) is refused.
    """
    first, last = moment(start, "start"), moment(end, "end")
    if first is None or last is None:
        raise GiniConfigError("shard_window needs a start and an end, e.g. '2025-01-01', '2026-01-01'")
    if first >= last:
        raise GiniConfigError(f"shard_window: the window [{first.isoformat()}, {last.isoformat()}) is empty")
    if (by is None) == (parts is None):
        raise GiniConfigError("shard_window: give by ('day', 'week' or a timedelta) or parts=N, one of them")
    if parts is not None:
        cuts = _equal_parts(first, last, parts, max_shards)
    else:
        cuts = _every(first, last, by, max_shards)
    # Boundaries in start's timezone (read as instants, so equal strings are equal instants).
    bounds = [first, *(cut.astimezone(first.tzinfo) for cut in cuts), last]
    return [
        {"created_after": a.isoformat(), "created_before": b.isoformat()}
        for a, b in itertools.pairwise(bounds)
    ]


def _equal_parts(first: datetime, last: datetime, parts: int, max_shards: int) -> list[datetime]:
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise GiniConfigError(f"shard_window: parts must be a whole number of at least 1, got {parts!r}")
    _check_count(parts, max_shards)
    # In UTC: an aware datetime's arithmetic in its own zoneinfo zone is wall-clock time.
    origin = first.astimezone(timezone.utc)
    span_ms = (last.astimezone(timezone.utc) - origin) // MS
    if parts > span_ms:
        raise GiniConfigError(
            f"shard_window: {parts} parts of a window of {span_ms} ms would leave shards with no "
            "millisecond of their own"
        )
    # Whole milliseconds from start; integer arithmetic, so the parts add up to the window.
    return [origin + MS * (span_ms * i // parts) for i in range(1, parts)]


def _every(first: datetime, last: datetime, by: str | timedelta | None, max_shards: int) -> list[datetime]:
    end = last.astimezone(timezone.utc)
    if isinstance(by, timedelta):
        if by < MS or by % MS:
            raise GiniConfigError(f"shard_window: by must be a whole number of milliseconds, got {by}")
        _check_count(math.ceil((end - first.astimezone(timezone.utc)) / by), max_shards)
        origin = first.astimezone(timezone.utc)
        return [origin + by * k for k in range(1, max_shards) if origin + by * k < end]
    if by not in UNITS:
        raise GiniConfigError(f"shard_window: by must be 'day', 'week' or a timedelta, got {by!r}")
    # Calendar days in start's zone, each midnight made an instant by that zone on its own date.
    day = first.date() - (timedelta(days=first.weekday()) if by == "week" else timedelta(0))
    step = timedelta(days=1 if by == "day" else 7)
    _check_count((last.date() - day) // step + 1, max_shards)
    cuts: list[datetime] = []
    while True:
        day += step
        cut = datetime.combine(day, time(0), tzinfo=first.tzinfo).astimezone(timezone.utc)
        if cut >= end:
            return cuts
        if cut > first:
            cuts.append(cut)


def _check_count(count: int, max_shards: int) -> None:
    if count > max_shards:
        raise GiniConfigError(
            f"shard_window: {count} shards, more than max_shards={max_shards} (Airflow's [core] "
            "max_map_length defaults to 1024); cut coarser, or raise both"
        )


def per_account(conn_ids: Iterable[str], destination: Any, **common: Any) -> list[dict[str, Any]]:
    """``[{"gini_conn_id": c, "destination": "<destination>/<c>", **common}, ...]`` for
    ``expand_kwargs``: one pull per Gini connection, each into its own folder. ``destination``:
    a path or URL (an ``ObjectStoragePath`` too)."""
    ids = list(conn_ids)
    if not ids:
        raise GiniConfigError("per_account: give at least one connection id")
    for conn_id in ids:
        if not isinstance(conn_id, str) or not conn_id or "/" in conn_id or conn_id in (".", ".."):
            raise GiniConfigError(f"per_account: {conn_id!r} is not a connection id that can name a folder")
    if len(set(ids)) != len(ids):
        raise GiniConfigError("per_account: a connection id is listed twice; its pulls would share a folder")
    clash = {"gini_conn_id", "destination"} & set(common)
    if clash:
        raise GiniConfigError(f"per_account sets {', '.join(sorted(clash))} per account; do not pass it")
    root = str(destination).rstrip("/")
    return [{"gini_conn_id": c, "destination": f"{root}/{c}", **common} for c in ids]
