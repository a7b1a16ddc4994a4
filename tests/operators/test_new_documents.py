"""GiniNewDocumentsTrigger against the sandbox on every paging contract, its state across
restarts, and the pull of exactly the documents it announced (GiniPullDocumentsOperator by id)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.client.errors import GiniConfigError, GiniError
from airflow_provider_gini.pull.arrivals import KIND, Arrivals, ArrivalState, announcements
from airflow_provider_gini.sandbox import ApiProfile, RunningSandbox
from airflow_provider_gini.triggers.arrivals import GiniNewDocumentsTrigger
from tests.operators.conftest import task_states, xcom
from tests.profiles import every_profile

pytestmark = pytest.mark.timeout(120)
POLL = 0.2


def trigger(destination: Path, **kwargs: Any) -> GiniNewDocumentsTrigger:
    return GiniNewDocumentsTrigger(destination=str(destination), poll_interval=POLL, **kwargs)


def state_file(destination: Path) -> Path | None:
    found = sorted((destination / "_events").glob("*.json"))
    return found[0] if found else None


class Watching:
    """A trigger's run() in the test's event loop, its events gathered as they fire."""

    def __init__(self, watched: GiniNewDocumentsTrigger) -> None:
        self.trigger = watched
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watching:
        async def gather() -> None:
            async for event in self.trigger.run():
                await self.events.put(event.payload)

        self.task = asyncio.create_task(gather())
        destination = Path(self.trigger.destination)
        for _ in range(200):  # the first poll's state is written before anything is announced
            if state_file(destination) is not None or self.task.done():
                break
            await asyncio.sleep(0.05)
        if self.task.done():
            self.task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def until(self, ids: set[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """The events that fire until all ``ids`` were announced."""
        got: list[dict[str, Any]] = []
        seen: set[str] = set()
        async with asyncio.timeout(timeout):
            while not ids <= seen:
                got.append(await self.events.get())
                seen.update(got[-1]["document_ids"])
        return got

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        await asyncio.sleep(seconds)
        got = []
        while not self.events.empty():
            got.append(self.events.get_nowait())
        return got


async def saved(destination: Path, document_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            path = state_file(destination)
            if path is not None and document_id in json.loads(path.read_text())["seen"]:
                return
            await asyncio.sleep(0.05)


async def insert(sandbox: RunningSandbox, **spec: Any) -> list[str]:
    return await asyncio.to_thread(sandbox.insert_documents, **spec)


@every_profile
def test_new_completed_documents_are_announced_once_each_and_quiet_polls_are_cheap(
    gini_connection: RunningSandbox,
    gini_sandbox_profile: ApiProfile,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_gini.triggers.arrivals")

    async def scenario() -> None:
        async with Watching(trigger(tmp_path, page_size=20)) as watching:
            ready = await insert(gini_connection, count=3)
            late = await insert(gini_connection, count=1, readyIn=1.5)
            failed = await insert(gini_connection, count=1, outcome="ERROR")
            events = await watching.until(set(ready + late))
            announced = [i for e in events for i in e["document_ids"]]
            assert sorted(announced) == sorted(ready + late)  # once each, no ERROR, no seeded one
            assert failed[0] not in announced
            for event in events:
                assert event["kind"] == KIND
                assert event["count"] == len(event["document_ids"])
                assert event["gini_conn_id"] == "gini_default"
                assert not event["redelivered"]
            caplog.clear()
            assert await watching.quiet(2.0) == []
        state = json.loads(state_file(tmp_path).read_text())  # type: ignore[union-attr]
        assert set(ready + late + failed) <= set(state["seen"])
        assert state["pending"] == {}

    asyncio.run(scenario())
    polls = [int(n) for n in re.findall(r"\((\d+) request\(s\)\)", caplog.text)]
    assert len(polls) >= 5, caplog.text
    # Nothing new: the first page only, where it can show a new document (a totalCount, or the
    # newest first); oldest first by the cursor, that page and one from the lag on.
    telling = gini_sandbox_profile.listing == "legacy" or gini_sandbox_profile.order == "descending"
    print(
        f"FIGURE quiet polls, {gini_sandbox_profile.listing} {gini_sandbox_profile.order}: {polls[-3:]} requests each"
    )
    assert set(polls[-3:]) == ({1} if telling else {2}), polls


def test_a_restarted_trigger_goes_on_where_it_stopped(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Watching(trigger(tmp_path)) as watching:
            [first] = await insert(gini_connection)
            [event] = await watching.until({first})
            assert event["document_ids"] == [first]
            await saved(tmp_path, first)  # as in the triggerer, which goes on after each event
        [meanwhile] = await insert(gini_connection)
        # Restarted: only what arrived meanwhile, not what was announced before the stop.
        async with Watching(trigger(tmp_path)) as watching:
            events = await watching.until({meanwhile})
            assert [i for e in events for i in e["document_ids"]] == [meanwhile]
            assert await watching.quiet(1.0) == []

    asyncio.run(scenario())


def test_a_document_is_announced_again_until_it_is_stored(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Watching(trigger(tmp_path, reannounce_after=0.5)) as watching:
            [document_id] = await insert(gini_connection)
            [event] = await watching.until({document_id})
            assert not event["redelivered"]
            # Its event started no run (or the run failed): announced again.
            again = await watching.until({document_id}, timeout=10)
            assert [(e["document_ids"], e["redelivered"]) for e in again] == [([document_id], True)]
            folder = tmp_path / document_id
            folder.mkdir()
            (folder / "document.json").write_text("{}")  # what the pull writes last
            await asyncio.sleep(1.0)
            await watching.quiet(0.0)  # an announcement already under way
            assert await watching.quiet(2.0) == []
            # Deleted before any pull stored it: Gini no longer has it, so it is let go.
            [deleted] = await insert(gini_connection)
            await watching.until({deleted})
            await asyncio.to_thread(gini_connection.delete_document, deleted)
            await asyncio.sleep(1.0)
            await watching.quiet(0.0)
            assert await watching.quiet(2.0) == []
            state = json.loads(state_file(tmp_path).read_text())  # type: ignore[union-attr]
            assert state["unstored"] == {}
        other = trigger(tmp_path / "other", reannounce_after=0.5, until_stored=False)
        async with Watching(other) as watching:
            [document_id] = await insert(gini_connection)
            await watching.until({document_id})
            assert await watching.quiet(2.0) == []

    asyncio.run(scenario())


def test_since_announces_documents_created_before_the_trigger_and_batches_are_bounded(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    day = gini_connection.documents(created_after=1767657600000, created_before=1767744000000)  # Jan 6
    completed = sorted(d["id"] for d in day if d["progress"] == "COMPLETED")
    assert len(completed) > 3

    async def scenario() -> None:
        watched = trigger(tmp_path, since="2026-01-06T00:00:00Z", max_batch=2, lag=86400 * 400)
        async with Watching(watched) as watching:
            events = await watching.until(set(completed))
            assert all(e["count"] <= 2 for e in events)
            assert [e["batch"] for e in events] == list(range(1, len(events) + 1))

    asyncio.run(scenario())


def test_an_unreadable_state_is_reported_not_replaced(
    gini_connection: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_gini.triggers.arrivals")

    async def scenario() -> None:
        async with Watching(trigger(tmp_path)):
            pass
        path = state_file(tmp_path)
        assert path is not None
        path.write_text("{not json")
        await insert(gini_connection)
        # The trigger goes on (a run() that raised would be restarted at once, again and again)
        # and says what is wrong, but neither announces nor starts over from now.
        async with Watching(trigger(tmp_path)) as watching:
            assert await watching.quiet(1.0) == []
        assert path.read_text() == "{not json"

    asyncio.run(scenario())
    assert "cannot be read" in caplog.text
    assert "delete it and set since=" in caplog.text


def test_a_document_that_cannot_be_checked_holds_back_no_other(gini_connection: RunningSandbox) -> None:
    from airflow_provider_gini.hooks.gini import GiniHook

    now = int(time.time() * 1000)
    arrivals = Arrivals(GiniHook(), ArrivalState("k", since=now, high=now), reannounce_after=0.1, lag=0)
    [earlier] = gini_connection.insert_documents()
    [slow] = gini_connection.insert_documents(readyIn=3600)
    time.sleep(0.01)
    [later] = gini_connection.insert_documents()
    found, _ = arrivals.poll(lambda i: False)
    assert {d["id"] for d in found} == {earlier, later}
    assert set(arrivals.state.pending) == {slow}
    arrivals.announced([earlier, later])
    [new] = gini_connection.insert_documents()
    time.sleep(0.2)
    # The processing document is now behind the listing (lag 0), so it is looked at by itself,
    # and Gini fails on it; the destination fails on an announced one.
    gini_connection.add_fault("status", path=f"/documents/{slow}", method="GET", status=500)

    def stored(document_id: str) -> bool:
        if document_id == earlier:
            raise OSError("the destination cannot be read")
        return False

    found, again = arrivals.poll(stored)
    assert [d["id"] for d in found] == [new]
    assert again == [later]
    assert set(arrivals.state.pending) == {slow}
    gini_connection.clear_faults()
    time.sleep(0.2)
    assert sorted(arrivals.poll(lambda i: False)[1]) == sorted([earlier, later])


def test_a_listing_that_fails_half_way_changes_nothing(
    gini_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_gini.hooks.gini import GiniHook

    for name, value in gini_sandbox.connection_env("gini_default").items():
        monkeypatch.setenv(name, value)
    now = int(time.time() * 1000)
    hook = GiniHook(max_attempts=1)
    arrivals = Arrivals(hook, ArrivalState("k", since=now, high=now), page_size=3)
    new = gini_sandbox.insert_documents(count=5)
    # The probe, the jump to the window (3 new documents, taken), then the next page fails.
    gini_sandbox.add_fault("status", path="/documents", method="GET", status=500, every=3, times=1)
    with pytest.raises(GiniError):
        arrivals.poll(None)
    assert arrivals.state.seen == {}
    assert arrivals.state.high == now
    found, _ = arrivals.poll(None)
    assert sorted(d["id"] for d in found) == sorted(new)


def test_the_trigger_serializes_to_plain_values(tmp_path: Path) -> None:
    watched = trigger(
        tmp_path, gini_conn_id="acme", since="2026-03-01T10:00:00+01:00", hook_params={"timeout": 5}
    )
    classpath, kwargs = watched.serialize()
    assert classpath == "airflow_provider_gini.triggers.arrivals.GiniNewDocumentsTrigger"
    assert kwargs["since"] == "2026-03-01T10:00:00+01:00"
    assert kwargs["key"] == "new-documents/acme"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert GiniNewDocumentsTrigger(**kwargs).serialize() == (classpath, kwargs)
    with pytest.raises(GiniConfigError, match="destination="):
        GiniNewDocumentsTrigger(destination="")


def test_announcements_are_new_document_events_of_one_connection() -> None:
    def extra(ids: list[str], count: int | None = None, conn: str = "gini_default") -> dict[str, Any]:
        return {
            "from_trigger": True,
            "payload": {
                "kind": KIND,
                "gini_conn_id": conn,
                "document_ids": ids,
                "count": len(ids) if count is None else count,
            },
        }

    events = [
        extra(["a", "b"]),
        {"payload": {"kind": "other", "document_ids": ["x"]}},
        None,
        extra(["b", "c"]),
        extra(["../etc"], conn="gini_other"),  # another connection's, malformed: not ours to refuse
    ]
    found, others = announcements(events, "gini_default")
    assert [b["document_ids"] for b in found] == [["a", "b"], ["b", "c"]]
    assert others == 1
    with pytest.raises(GiniConfigError, match="malformed"):
        announcements([extra(["a", "b"], count=3)], "gini_default")
    with pytest.raises(GiniConfigError, match="not one"):
        announcements([extra(["../etc"])], "gini_default")


def test_a_pull_takes_its_own_connections_ids_and_says_where_the_trigger_looks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    class Event:  # what Airflow's context holds: an asset event with the trigger's payload as extra
        def __init__(self, conn: str, ids: list[str], destination: str) -> None:
            body = {"kind": KIND, "gini_conn_id": conn, "document_ids": ids, "count": len(ids)}
            self.extra = {"from_trigger": True, "payload": {**body, "destination": destination}}

    here = tmp_path.as_uri()
    events = {"asset": [Event("gini_a", ["a1", "a2"], here), Event("gini_b", ["b1"], here)]}
    pull = GiniPullDocumentsOperator(
        task_id="p", destination=str(tmp_path), gini_conn_id="gini_a", ids_from_asset_events=True
    )
    assert pull._requested_ids({"triggering_asset_events": events}, here) == ["a1", "a2"]
    elsewhere = {"asset": [Event("gini_a", ["a3"], "file:///elsewhere")]}
    with caplog.at_level(logging.WARNING):
        assert pull._requested_ids({"triggering_asset_events": elsewhere}, here) == ["a3"]
    # A task's logger goes to logging on Airflow 3.0, to structlog's output on 3.3.
    said = caplog.text + "".join(capfd.readouterr())
    assert "file:///elsewhere" in said
    assert "keep announcing" in said


BY_ID_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              document_ids="{{ dag_run.conf['ids'] }}", poll_interval=0.2, pending_timeout=5)
    GiniPullDocumentsOperator(task_id="from_events", destination="{{ dag_run.conf['destination'] }}/events_by_event",
                              ids_from_asset_events=True)
"""


def test_a_pull_by_id_pulls_exactly_those_documents(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    ids = gini_connection.insert_documents(count=3)
    gone = gini_connection.insert_documents(count=1)
    gini_connection.delete_document(gone[0])
    dag = dag_file(BY_ID_DAG)
    run = dag.test(run_conf={"destination": str(tmp_path), "ids": ",".join(ids + gone)})
    # Not triggered by a GiniNewDocumentsTrigger event: nothing to pull, and skipped, not green.
    assert task_states(run) == {"pull": "success", "from_events": "skipped"}
    result = xcom(run, "pull")
    assert (result["pulled"], result["gone"], result["window"], result["watermark"]) == (3, 1, None, None)
    stored = sorted(
        p.name for p in tmp_path.iterdir() if p.name not in ("_manifests", "_leases", "events_by_event")
    )
    assert stored == sorted(ids)
    assert not (tmp_path / "_state").exists()  # no watermark kept

    # A list rendered by Jinja (Python's repr) or as JSON.
    for rendered in (str(ids[:1]), json.dumps(ids[:1])):
        rerun = dag.test(run_conf={"destination": str(tmp_path), "ids": rendered})
        assert (xcom(rerun, "pull")["skipped"], xcom(rerun, "pull")["pulled"]) == (1, 0)


def test_a_pull_by_id_refuses_a_window_and_bad_ids(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    with pytest.raises(ValueError, match="not both"):
        GiniPullDocumentsOperator(
            task_id="p", destination="x", document_ids=["a"], ids_from_asset_events=True
        )
    with pytest.raises(ValueError, match="no window"):
        GiniPullDocumentsOperator(task_id="p", destination="x", document_ids=["a"], full_history=True)
    dag = dag_file(BY_ID_DAG)
    # An id that is none, and a template that rendered nothing: failed at once, not retried.
    for rendered in ("../etc/passwd", "None", ""):
        run = dag.test(run_conf={"destination": str(tmp_path / "out"), "ids": rendered})
        assert task_states(run)["pull"] == "failed", rendered
        assert not [p for p in (tmp_path / "out").glob("*") if not p.name.startswith("_")]
        assert not (tmp_path / "etc").exists()
