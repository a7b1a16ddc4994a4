"""Deferrals that cannot hang (#14): in one triggerer a slow poll never delays another trigger,
a connection the triggerer cannot find ends the wait with a clear event, and a trigger's timeout
runs on the triggerer's own clock, from the moment the trigger starts running.

Everything runs as a triggerer does: the triggers' run() coroutines in one event loop, polling a
real sandbox over HTTP on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from airflow_provider_gini._compat import AirflowException, AirflowFailException
from airflow_provider_gini.operators.documents import complete_processing_event
from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox
from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger

# How long each slow document's poll takes at Gini (the sandbox's per-path latency fault). The
# slow polls must all reach Gini within half of it, which a loaded CI machine needs seconds for.
SLOW_POLL = 6.0


async def first_event(trigger: GiniDocumentProcessedTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger fired nothing")


def only_event(trigger: GiniDocumentProcessedTrigger) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [dict(event.payload) async for event in trigger.run()]

    [event] = asyncio.run(collect())
    return event


def slow_and_fast(box: RunningSandbox, slow_count: int) -> float:
    """Seconds the fast trigger took, in a triggerer whose ``slow_count`` other triggers are all
    in the middle of a slow poll; asserts they still were when it fired."""
    slow_ids = box.insert_documents(count=slow_count, readyIn=3600)
    fast_id, warm_id = box.insert_documents(count=2, readyIn=0)
    # A triggerer already serving this connection: its shared hook (imports, connection read,
    # token) is ready, so the slow triggers' first polls go out at once (a cold start took over
    # 2 s on a loaded CI machine).
    assert only_event(GiniDocumentProcessedTrigger(document_id=warm_id))["status"] == "success"
    for document_id in slow_ids:
        box.add_fault("latency", path=f"/documents/{document_id}", method="GET", delay=SLOW_POLL)

    def slow_polls_seen() -> list[int]:
        """How many polls of each slow document have reached the sandbox (answered or not)."""
        return [rule["matched"] for rule in box.admin.get("/faults").json()]

    async def triggerer() -> tuple[dict[str, Any], float, list[bool], list[int]]:
        slow = [
            asyncio.create_task(first_event(GiniDocumentProcessedTrigger(document_id=d, poll_interval=0.1)))
            for d in slow_ids
        ]
        # The fast trigger starts only once every slow poll is at Gini, waiting out its latency.
        give_up = time.monotonic() + SLOW_POLL / 2
        while await asyncio.to_thread(slow_polls_seen) != [1] * slow_count:
            assert time.monotonic() < give_up, "the slow triggers' first polls never reached the sandbox"
            await asyncio.sleep(0.02)
        started = time.monotonic()
        fast = await first_event(GiniDocumentProcessedTrigger(document_id=fast_id, poll_interval=0.1))
        elapsed = time.monotonic() - started
        still_waiting = [not task.done() for task in slow]
        polls = await asyncio.to_thread(slow_polls_seen)
        # As a triggerer cancels the triggers of cleared tasks.
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return fast, elapsed, still_waiting, polls

    fast, elapsed, still_waiting, polls = asyncio.run(triggerer())
    assert (fast["status"], fast["document_id"]) == ("success", fast_id)
    # The slow triggers were still in their first poll when the fast one fired.
    assert still_waiting == [True] * slow_count
    assert polls == [1] * slow_count
    # A shared pool of four threads made the fast trigger wait out a slow poll (SLOW_POLL s).
    # Generous, for a loaded machine: the structural proof is still_waiting above.
    assert elapsed < SLOW_POLL / 2, f"the fast trigger waited {elapsed:.2f} s behind the slow polls"
    return elapsed


def test_a_triggerer_with_4_slow_and_1_fast_document(gini_connection: RunningSandbox) -> None:
    elapsed = slow_and_fast(gini_connection, 4)
    print(
        f"FIGURE trigger isolation: fast event after {elapsed:.2f} s with 4 slow polls of {SLOW_POLL:g} s"
        " (before #14, with 4 s polls: 7.8 s)"
    )


def test_more_slow_polls_than_the_gate_lets_in_at_once_still_delay_no_other(
    gini_connection: RunningSandbox,
) -> None:
    from airflow_provider_gini.triggers.documents import ADMIT_AT_ONCE

    slow_and_fast(gini_connection, ADMIT_AT_ONCE * 2 + 4)


def test_a_connection_missing_in_the_triggerer_ends_the_wait_with_a_clear_error(
    gini_connection: RunningSandbox,
) -> None:
    started = time.monotonic()
    # gini_connection defines gini_default only, as a triggerer deployed without the connection would.
    event = only_event(
        GiniDocumentProcessedTrigger(document_id="d1", gini_conn_id="gini_elsewhere", timeout=60)
    )
    assert time.monotonic() - started < 10
    message = event.pop("message")
    assert event == {"status": "error", "document_id": "d1", "progress": None, "terminal": False}
    assert message.startswith(
        "Waiting for document d1 failed: the connection 'gini_elsewhere' is not defined where the"
        " triggerer runs ("
    ), message
    assert "AIRFLOW_CONN_GINI_ELSEWHERE" in message  # says how to fix it
    # The task fails with that message, and keeps its retries: defining the connection fixes it.
    with pytest.raises(AirflowException, match="is not defined where the triggerer runs") as caught:
        complete_processing_event({**event, "message": message})
    assert not isinstance(caught.value, AirflowFailException)
    assert gini_connection.counters()["routes"] == {}  # nothing was sent to Gini


def test_any_other_failure_to_build_the_hook_ends_the_wait_with_an_error_event(
    gini_connection: RunningSandbox,
) -> None:
    # A hook argument this provider's version does not know: GiniHook raises TypeError.
    event = only_event(
        GiniDocumentProcessedTrigger(document_id="d1", poll_interval=0.1, hook_params={"no_such_option": 1})
    )
    assert (event["status"], event["progress"], event["terminal"]) == ("error", None, False)
    assert event["message"].startswith(
        "Waiting for document d1 failed: the Gini hook for connection 'gini_default' could not be built"
        " in the triggerer (TypeError"
    ), event["message"]
    for secret in (DEMO_USER.password, DEMO_CLIENT.client_secret):
        assert secret not in event["message"]


def test_the_timeout_runs_on_the_triggers_own_clock_from_when_it_runs(
    gini_connection: RunningSandbox,
) -> None:
    [stuck] = gini_connection.insert_documents(readyIn=3600)
    [ready] = gini_connection.insert_documents(readyIn=0)
    # A triggerer already waiting on documents of this connection: its hook (imports, connection
    # read, token) is ready, so the 0.3 s go to polls; a cold start can take longer than that.
    assert only_event(GiniDocumentProcessedTrigger(document_id=ready))["status"] == "success"
    gini_connection.reset_counters()
    _, kwargs = GiniDocumentProcessedTrigger(document_id=stuck, poll_interval=0.05, timeout=0.3).serialize()
    # Deferred a while ago (a busy triggerer picks it up late): the timeout has not started yet.
    time.sleep(0.6)
    started = time.monotonic()
    event = only_event(GiniDocumentProcessedTrigger(**kwargs))
    elapsed = time.monotonic() - started
    assert (event["status"], event["progress"]) == ("timeout", "PENDING")
    assert event["message"] == f"Document {stuck} was still PENDING"
    # Not before its own 0.3 s (the 0.6 s since serialize() did not count); the upper bound only
    # says it did end, with room for a loaded machine.
    assert 0.3 <= elapsed < 10, elapsed
    assert gini_connection.counters()["routes"]["GET /documents/{document_id}"] >= 2  # it did poll


def test_the_timeout_ends_the_wait_even_while_a_poll_hangs(gini_connection: RunningSandbox) -> None:
    [stuck] = gini_connection.insert_documents(readyIn=3600)
    [ready] = gini_connection.insert_documents(readyIn=0)
    assert only_event(GiniDocumentProcessedTrigger(document_id=ready))["status"] == "success"  # a warm hook
    gini_connection.add_fault("latency", path=f"/documents/{stuck}", method="GET", delay=SLOW_POLL)
    started = time.monotonic()
    event = only_event(GiniDocumentProcessedTrigger(document_id=stuck, poll_interval=0.05, timeout=0.5))
    elapsed = time.monotonic() - started
    assert (event["status"], event["progress"], event["terminal"]) == ("timeout", None, False)
    assert event["message"] == f"Gini had not answered about document {stuck} when the wait timed out"
    [rule] = gini_connection.admin.get("/faults").json()
    assert rule["matched"] == 1  # the poll had reached Gini and was hanging there
    # Ended at its timeout, not when the hanging poll answered (SLOW_POLL s after it began).
    assert 0.5 <= elapsed < SLOW_POLL - 1, elapsed


def test_concurrent_polls_neither_queue_nor_overflow_the_shared_pool(
    gini_connection: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    count, latency = 20, 0.5
    ids = gini_connection.insert_documents(count=count, readyIn=0)
    gini_connection.add_fault("latency", path="/documents/*", method="GET", delay=latency)
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")

    async def triggerer() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(first_event(GiniDocumentProcessedTrigger(document_id=d, poll_interval=0.1)) for d in ids)
        )

    gini_connection.reset_counters()  # and the request log
    results = asyncio.run(triggerer())
    assert [r["status"] for r in results] == ["success"] * count
    # How many polls were at Gini at once, from the sandbox's log: four threads or four pooled
    # connections would allow four.
    spans = [
        (r["time"], r["time"] + r["duration"]) for r in gini_connection.requests() if r["method"] == "GET"
    ]
    at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert at_once > 4, at_once
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert sum(gini_connection.counters()["grants"].values()) == 1


@pytest.mark.parametrize(("ready_in", "status"), [(0, "success"), (3600, "timeout")])
def test_a_trigger_from_an_earlier_version_past_its_end_time_polls_once(
    gini_connection: RunningSandbox, ready_in: float, status: str
) -> None:
    # Serialized with an end_time, then picked up only after it (the triggerer was down).
    [document] = gini_connection.insert_documents(readyIn=ready_in)
    event = only_event(
        GiniDocumentProcessedTrigger(document_id=document, poll_interval=0.05, end_time=time.time() - 60)
    )
    assert event["status"] == status
    assert gini_connection.counters()["routes"]["GET /documents/{document_id}"] == 1
