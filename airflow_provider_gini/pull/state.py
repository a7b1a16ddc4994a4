"""The watermark: how far pulls into a destination have gone completely, kept with the data.

One small JSON file per watermark key under ``<destination>/_state/``, written atomically after
the run's manifest, so it never claims more than the data and manifests beside it hold:

    {"key": ..., "watermark": "<ISO date-time>", "run_id": ..., "manifest": ...,
     "outstanding": {"<document id>": {"outcome": "failed"|"pending", "error": ...,
                                       "creationDate": ..., "since": "<run id>", "tries": n}}}

``outstanding`` holds the documents a pull listed but could not finish (failed, or still
processing when its time ran out). The watermark moves past them, and every later pull with the
same key tries them first until each is pulled, skipped as already stored, found in ERROR, or
gone; so the watermark never strands a document and no completed one is pulled again.

``run_id`` is the run that last moved the watermark and ``previous`` where it stood before.
Another try of that run (a retry after something failed once the state was saved, a clear or a
backfill that reprocesses it) plans from ``previous`` again, so its manifest lists the whole
window, not nothing; a run that moves nothing leaves both as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.engine import PullResult
from airflow_provider_gini.pull.storage import Store
from airflow_provider_gini.pull.window import moment

STATE = "_state"


def default_key(context: Mapping[str, Any], conn_id: str) -> str:
    """``<dag_id>/<task_id>``, and ``/<conn_id>`` for a mapped task's instance.

    Not the map index: a list of accounts that gains or loses one in front would hand each
    account another's watermark, and one whose watermark is later would skip documents. Mapped
    instances of one connection into one destination pull the same documents: they share a
    watermark and take turns.
    """
    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "dag")
    task_id = getattr(ti, "task_id", None) or "task"
    map_index = getattr(ti, "map_index", -1)
    key = f"{dag_id}/{task_id}"
    return f"{key}/{conn_id}" if isinstance(map_index, int) and map_index >= 0 else key


@dataclass
class PullState:
    key: str
    watermark: datetime | None = None
    outstanding: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_id: str | None = None
    manifest: str | None = None
    previous: datetime | None = None

    def start_for(self, run_id: str | None) -> datetime | None:
        """Where a pull of ``run_id`` starts: ``previous`` for another try of the run that last
        moved the watermark, the watermark otherwise."""
        return self.previous if run_id is not None and run_id == self.run_id else self.watermark

    def is_new(self, document_id: str, run_id: str | None) -> bool:
        """Whether a document left unfinished by this run was not already left so by an earlier
        run (a document that keeps failing fails one run, then waits in ``outstanding``)."""
        entry = self.outstanding.get(document_id)
        return entry is None or entry.get("since") == run_id

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "previous": self.previous.isoformat() if self.previous else None,
            "run_id": self.run_id,
            "manifest": self.manifest,
            "outstanding": self.outstanding,
        }

    def advanced(
        self, result: PullResult, to: datetime | None, run_id: str | None, manifest: str
    ) -> PullState:
        """The state after a pull that ran to its end: the watermark at ``to`` (never back), the
        documents it settled off the outstanding list, the ones it left undone on it."""
        outstanding = {i: entry for i, entry in self.outstanding.items() if i not in result.settled}
        for document_id in result.incomplete:
            line = result.lines[document_id]
            before = outstanding.get(document_id, {})
            outstanding[document_id] = {
                "outcome": line.outcome,
                "error": line.error,
                "creationDate": line.creation_date,
                "since": before.get("since", run_id),
                "tries": (before["tries"] if isinstance(before.get("tries"), int) else 0) + 1,
            }
        watermark, owner, previous = self.watermark, self.run_id, self.previous
        if to is not None and (watermark is None or to > watermark or run_id == owner):
            # This run moved the watermark (or is another try of the run that did): a later try
            # of it starts where this one started.
            watermark = to if watermark is None or to > watermark else watermark
            owner, previous = run_id, self.start_for(run_id)
        return PullState(self.key, watermark, outstanding, owner, manifest, previous)


def keyed_name(key: str) -> str:
    """A state file's name for ``key``: readable (its safe characters) and unique (a digest)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


class StateFile:
    def __init__(self, store: Store, key: str) -> None:
        if not isinstance(key, str) or not key.strip():
            raise GiniConfigError("watermark_key must be a non-empty string")
        self.store = store
        self.key = key
        self.relative = f"{STATE}/{keyed_name(key)}"
        self.uri = store.uri(self.relative)

    def load(self) -> PullState:
        """The state, or a new one when this key has none yet. An unreadable file is an error,
        never a silent start from nothing, which would pull everything again or skip a window."""
        if not self.store.exists(self.relative):
            return PullState(self.key)
        try:
            body = self.store.read_json(self.relative)
            watermark = moment(body.get("watermark"), "watermark")
            previous = moment(body.get("previous"), "previous")
            outstanding = body.get("outstanding") or {}
            if body.get("key") != self.key or not isinstance(outstanding, dict):
                raise ValueError("not this key's state")
            if not all(isinstance(i, str) and isinstance(e, dict) for i, e in outstanding.items()):
                raise ValueError("an outstanding entry is not an object")
        except (ValueError, AttributeError, GiniConfigError, json.JSONDecodeError) as exc:
            raise GiniConfigError(
                f"The pull state {self.uri} cannot be read ({type(exc).__name__}: {exc}). Restore it, "
                "or delete it and pass start= (or full_history=True) to say where pulls begin again"
            ) from None
        return PullState(self.key, watermark, outstanding, body.get("run_id"), body.get("manifest"), previous)

    def save(self, state: PullState) -> None:
        self.store.makedirs(STATE)
        self.store.write_json(self.relative, state.to_json())
