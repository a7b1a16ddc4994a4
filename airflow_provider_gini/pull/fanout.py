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
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.window import moment

MS = timedelta(milliseconds=1)
UNITS = ("day", "week")


def shard_window(
    start: Any,
    end: Any,
    *,
    by: str | timedelta | None = None,
    parts: int | None = None,
) -> list[dict[str, str]]:
    """``[start, end)`` as ``[{"created_after": ..., "created_before": ...}, ...]`` (ISO strings,
    oldest first), for ``expand_kwargs``.

    ``by="day"`` or ``"week"`` cuts at midnights (weeks: Mondays) in ``start``'s timezone (UTC for
    a string without an offset), the first and last shard running from ``start`` and to ``end``;
    ``by=timedelta(hours=6)`` cuts every so long from ``start``; ``parts=N`` cuts into N shards of
    equal length. ``start`` and ``end`` take datetimes or ISO strings (rendered templates).
    """
    first, last = moment(start, "start"), moment(end, "end")
    if first is None or last is None:
        raise GiniConfigError("shard_window needs a start and an end, e.g. '2025-01-01', '2026-01-01'")
    if first >= last:
        raise GiniConfigError(f"shard_window: the window [{first.isoformat()}, {last.isoformat()}) is empty")
    if (by is None) == (parts is None):
        raise GiniConfigError("shard_window: give by ('day', 'week' or a timedelta) or parts=N, one of them")
    cuts = _equal_parts(first, last, parts) if parts is not None else _every(first, last, by)
    bounds = [first, *cuts, last]
    return [
        {"created_after": a.isoformat(), "created_before": b.isoformat()}
        for a, b in itertools.pairwise(bounds)
    ]


def _equal_parts(first: datetime, last: datetime, parts: int) -> list[datetime]:
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise GiniConfigError(f"shard_window: parts must be a whole number of at least 1, got {parts!r}")
    span_ms = (last - first) // MS
    if parts > span_ms:
        raise GiniConfigError(
            f"shard_window: {parts} parts of a window of {span_ms} ms would leave shards with no "
            "millisecond of their own"
        )
    # Whole milliseconds from start; integer arithmetic, so the parts add up to the window.
    return [first + MS * (span_ms * i // parts) for i in range(1, parts)]


def _every(first: datetime, last: datetime, by: str | timedelta | None) -> list[datetime]:
    if isinstance(by, timedelta):
        if by < MS or by % MS:
            raise GiniConfigError(f"shard_window: by must be a whole number of milliseconds, got {by}")
        cut, step = first + by, by
    elif by in UNITS:
        midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
        if by == "week":
            midnight -= timedelta(days=midnight.weekday())
        step = timedelta(days=1 if by == "day" else 7)
        cut = midnight + step
    else:
        raise GiniConfigError(f"shard_window: by must be 'day', 'week' or a timedelta, got {by!r}")
    cuts = []
    while cut < last:
        cuts.append(cut)
        cut += step
    return cuts


def per_account(conn_ids: Iterable[str], destination: str, **common: Any) -> list[dict[str, Any]]:
    """``[{"gini_conn_id": c, "destination": "<destination>/<c>", **common}, ...]`` for
    ``expand_kwargs``: one pull per Gini connection, each into its own folder."""
    ids = list(conn_ids)
    if not ids:
        raise GiniConfigError("per_account: give at least one connection id")
    for conn_id in ids:
        if not isinstance(conn_id, str) or not conn_id or "/" in conn_id or conn_id in (".", ".."):
            raise GiniConfigError(f"per_account: {conn_id!r} is not a connection id that can name a folder")
    if len(set(ids)) != len(ids):
        raise GiniConfigError("per_account: a connection id is listed twice; its pulls would share a folder")
    root = destination.rstrip("/")
    return [{"gini_conn_id": c, "destination": f"{root}/{c}", **common} for c in ids]
