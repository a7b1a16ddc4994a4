"""Triggerer scale: many GiniDocumentProcessedTriggers in one event loop.

A monitor coroutine asks to wake every 10 ms and records how late it wakes: the longest delay is
the longest event-loop stall. CPython's full (generation 2) garbage collections are timed too:
one walks the whole heap, Airflow's imports included, and stalls the loop whatever it runs, so
the stalls are reported with and without those that overlap one. The run starts as a triggerer
that has been up a while would: imports done and collected once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

from benchmarks.harness import Sandbox


class FullCollections:
    """The (start, end) perf_counter times of every generation-2 collection while installed."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.spans.append((self._started, time.perf_counter()))

    def overlaps(self, start: float, end: float) -> bool:
        return any(a < end and start < b for a, b in self.spans)


async def _watch(stalls: list[tuple[float, float, float]], stop: asyncio.Event, tick: float = 0.01) -> None:
    """Records (stall, window start, window end) for every tick."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(tick)
        after = time.perf_counter()
        stalls.append((after - before - tick, before, after))


async def _run(ids: list[str], poll_interval: float) -> dict[str, Any]:
    from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger

    async def first(trigger: GiniDocumentProcessedTrigger) -> str:
        async for event in trigger.run():
            return str(event.payload["status"])
        return "none"

    stalls: list[tuple[float, float, float]] = []
    collections = FullCollections()
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stalls, stop))
    gc.callbacks.append(collections)
    began = time.perf_counter()
    try:
        statuses = await asyncio.gather(
            *(first(GiniDocumentProcessedTrigger(document_id=i, poll_interval=poll_interval)) for i in ids)
        )
    finally:
        gc.callbacks.remove(collections)
    seconds = time.perf_counter() - began
    stop.set()
    await watcher
    return {
        "seconds": seconds,
        "statuses": statuses,
        "max_stall": max((s for s, _, _ in stalls), default=0.0),
        "max_stall_outside_gc": max((s for s, a, b in stalls if not collections.overlaps(a, b)), default=0.0),
        "full_collections": len(collections.spans),
        "max_gc_pause": max((b - a for a, b in collections.spans), default=0.0),
    }


def trigger_scale(box: Sandbox, count: int, pending_for: float, poll_interval: float) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_GINI_DEFAULT"] = json.dumps(box.connection())
    owner = box.connection()["login"]
    ids: list[str] = []
    while len(ids) < count:
        batch = min(1000, count - len(ids))
        response = box.admin.post("/documents", json={"owner": owner, "count": batch, "readyIn": pending_for})
        ids += response.json()["ids"]
    # A triggerer has done its imports, and collected them, long before these triggers arrive:
    # start from there, so the first full collection after the imports (which walks them all)
    # is not counted against the triggers. Collections during the run are still counted.
    import airflow_provider_gini.triggers.documents  # noqa: F401

    gc.collect()
    box.reset_counters()
    figures = asyncio.run(_run(ids, poll_interval))
    polls = box.counters()["routes"].get("GET /documents/{document_id}", 0)
    return {
        "triggers": count,
        "succeeded": figures["statuses"].count("success"),
        "seconds": figures["seconds"],
        "polls": polls,
        "polls_per_second": polls / figures["seconds"],
        "max_stall_ms": figures["max_stall"] * 1000,
        "max_stall_outside_gc_ms": figures["max_stall_outside_gc"] * 1000,
        "full_collections": figures["full_collections"],
        "max_gc_pause_ms": figures["max_gc_pause"] * 1000,
        "grants": box.grants(),
    }


if __name__ == "__main__":
    # Run in a fresh process, like a triggerer, so earlier benchmark phases' heaps (and their
    # garbage-collection pauses) do not show up as this phase's event-loop stalls.
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--sandbox", required=True, help="the sandbox's base URL")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--pending-for", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(trigger_scale(Sandbox(args.sandbox), args.count, args.pending_for, args.poll_interval)))
