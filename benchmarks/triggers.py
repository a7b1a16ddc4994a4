"""Triggerer scale: many GiniDocumentProcessedTriggers in one event loop.

A monitor coroutine asks to wake every 10 ms and records how late it wakes: the longest delay is
the longest event-loop stall the triggers caused.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from benchmarks.harness import Sandbox


async def _watch(stalls: list[float], stop: asyncio.Event, tick: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(tick)
        stalls.append(loop.time() - before - tick)


async def _run(ids: list[str], poll_interval: float) -> dict[str, Any]:
    from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger

    async def first(trigger: GiniDocumentProcessedTrigger) -> str:
        async for event in trigger.run():
            return str(event.payload["status"])
        return "none"

    stalls: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stalls, stop))
    began = time.perf_counter()
    statuses = await asyncio.gather(
        *(first(GiniDocumentProcessedTrigger(document_id=i, poll_interval=poll_interval)) for i in ids)
    )
    seconds = time.perf_counter() - began
    stop.set()
    await watcher
    return {"seconds": seconds, "statuses": statuses, "max_stall": max(stalls, default=0.0)}


def trigger_scale(box: Sandbox, count: int, pending_for: float, poll_interval: float) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_GINI_DEFAULT"] = json.dumps(box.connection())
    owner = box.connection()["login"]
    ids: list[str] = []
    while len(ids) < count:
        batch = min(1000, count - len(ids))
        response = box.admin.post("/documents", json={"owner": owner, "count": batch, "readyIn": pending_for})
        ids += response.json()["ids"]
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
        "grants": box.grants(),
    }


if __name__ == "__main__":
    # Run in a fresh process, like a triggerer, so earlier benchmark phases' heaps (and their
    # garbage-collection pauses) do not show up as this phase's event-loop stalls.
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--pending-for", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(trigger_scale(Sandbox(args.port), args.count, args.pending_for, args.poll_interval)))
