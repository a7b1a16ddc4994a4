"""Incremental pulls in real DAG runs (``dag.test()``): the watermark keeps every window through
failed pulls under ``all_done`` leaves, skipped pulls and runs without a logical date; empty
windows are refused with the template to use; one bad document fails alone; a pull stops fast;
and what a new try cannot fix is not tried again. Each test checks the documents on disk
against the sandbox's own list."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import task_states, xcom

UTC = timezone.utc
QUICK = '{"backoff_initial": 0.01, "backoff_max": 0.05, "max_attempts": 2}'


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def on_disk(destination: Path) -> set[str]:
    """The ids of the documents stored complete (their document.json written last)."""
    return {p.parent.name for p in destination.glob("*/document.json")}


def served(sandbox: RunningSandbox, before: datetime, after: datetime | None = None) -> set[str]:
    window = {"created_before": ms(before), **({"created_after": ms(after)} if after else {})}
    return {d["id"] for d in sandbox.documents(**window)}


def figure(scenario: str, served_ids: set[str], pulled_ids: set[str], outcome: str) -> None:
    """One line for the issue's note (``pytest -s ... | grep FIGURE``)."""
    print(f"FIGURE {scenario}: served {len(served_ids)}, pulled {len(pulled_ids)}; {outcome}")


def manifest(result: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(result["manifest"].removeprefix("file://"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def manifests(destination: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        p.name: [json.loads(line) for line in p.read_text().splitlines()]
        for p in (destination / "_manifests").glob("*.jsonl")
    }


def state(destination: Path) -> dict[str, Any]:
    [path] = (destination / "_state").glob("*.json")
    return dict(json.loads(path.read_text()))


LEAF_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG, task
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
         max_active_runs=1) as dag:
    pull = GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                                     full_history=True, max_workers=4, hook_params=QUICK)

    @task(trigger_rule="all_done")
    def notify():
        return "sent"

    pull >> notify()
""".replace("QUICK", QUICK)


def run(dag: Any, when: datetime | None, destination: Path, **kwargs: Any) -> Any:
    conf = {"destination": str(destination)}
    if when is None:
        return dag.test(run_conf=conf, **kwargs)
    return dag.test(logical_date=when, run_conf=conf, **kwargs)


def test_a_failed_pull_under_an_all_done_leaf_loses_no_window(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag = dag_file(LEAF_DAG)
    assert run(dag, day(6), tmp_path).state == "success"
    fault = gini_connection.add_fault("status", status=503, path="/documents")  # Gini unavailable
    failed = run(dag, day(7), tmp_path)
    # Airflow calls the run a success (its leaf ran); the pull did not.
    assert (failed.state, task_states(failed)) == ("success", {"pull": "failed", "notify": "success"})
    assert state(tmp_path)["watermark"] == day(6).isoformat()
    gini_connection.clear_faults()
    assert fault["kind"] == "status"
    after = run(dag, day(8), tmp_path)
    assert after.state == "success"
    result = xcom(after, "pull")
    # The next run starts where the last complete pull ended, not where Airflow's last
    # "successful" run did: the failed run's day is in it.
    assert result["window"] == [day(6).isoformat(), day(8).isoformat()]
    assert {line["id"] for line in manifest(result)} == served(gini_connection, day(8), day(6))
    assert on_disk(tmp_path) == served(gini_connection, day(8))
    assert state(tmp_path)["watermark"] == day(8).isoformat()
    figure(
        "all_done leaf, pull of 01-07 failed (503)",
        served(gini_connection, day(8)),
        on_disk(tmp_path),
        "01-07 run success with its pull failed; the 01-08 run pulled [01-06, 01-08)",
    )


SKIP_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
         max_active_runs=1) as dag:
    gate = ShortCircuitOperator(task_id="gate",
                                python_callable=lambda logical_date, **_: logical_date.day != 7)
    gate >> GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                                      full_history=True, max_workers=4)
"""


def test_a_skipped_pull_leaves_its_window_to_the_next_run(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag = dag_file(SKIP_DAG)
    assert run(dag, day(6), tmp_path).state == "success"
    skipped = run(dag, day(7), tmp_path)
    assert (skipped.state, task_states(skipped)["pull"]) == ("success", "skipped")
    result = xcom(run(dag, day(8), tmp_path), "pull")
    assert result["window"] == [day(6).isoformat(), day(8).isoformat()]
    assert on_disk(tmp_path) == served(gini_connection, day(8))
    figure(
        "pull skipped on 01-07",
        served(gini_connection, day(8)),
        on_disk(tmp_path),
        "01-08 pulled [01-06, 01-08)",
    )


WATERMARK_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
         max_active_runs=1) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              start="2026-01-06T00:00:00+00:00", max_workers=4)
"""


def test_a_run_without_a_logical_date_pulls_from_the_watermark_to_its_run_after(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """Asset-triggered runs, triggers without a logical date and TriggerDagRunOperator(run_after)
    have no data interval: their window ends at run_after, not at +inf; and the first pull
    begins at ``start``, not at -inf."""
    dag = dag_file(WATERMARK_DAG)
    first = xcom(run(dag, day(7), tmp_path), "pull")
    assert first["window"] == [day(6).isoformat(), day(7).isoformat()]
    at = day(8) + timedelta(hours=12)
    unscheduled = run(dag, None, tmp_path, logical_date=None, run_after=at)
    assert unscheduled.logical_date is None
    second = xcom(unscheduled, "pull")
    assert second["window"] == [day(7).isoformat(), at.isoformat()]
    assert on_disk(tmp_path) == served(gini_connection, at, day(6))
    assert not served(gini_connection, day(6)) & on_disk(tmp_path)  # nothing before start
    figure(
        "run without a logical date (run_after 01-08 12:00)",
        served(gini_connection, at, day(6)),
        on_disk(tmp_path),
        f"success, window {second['window']}",
    )
    # A scheduled run whose end the watermark has passed (a backfill, a cleared run) pulls
    # nothing new and moves nothing back.
    late = xcom(run(dag, day(8), tmp_path), "pull")
    assert (late["pulled"], late["skipped"], late["watermark"]) == (0, 0, at.isoformat())
    assert state(tmp_path)["run_id"] == unscheduled.run_id  # a run that moved nothing owns nothing
    assert on_disk(tmp_path) == served(gini_connection, at, day(6))


def test_the_first_incremental_pull_needs_a_start(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag = dag_file(WATERMARK_DAG.replace('start="2026-01-06T00:00:00+00:00", ', ""))
    gini_connection.reset_counters()
    failed = run(dag, day(7), tmp_path)
    assert task_states(failed) == {"pull": "failed"}
    assert gini_connection.counters()["requests"] == 0
    assert on_disk(tmp_path) == set()


EMPTY_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              created_after=AFTER, created_before="{{ data_interval_end }}")
"""


def test_an_empty_window_is_refused_and_the_template_it_suggests_works(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    from airflow_provider_gini.pull.window import EMPTY_WINDOW_HINT

    empty = dag_file(EMPTY_DAG.replace("AFTER", '"{{ data_interval_start }}"'))
    gini_connection.reset_counters()
    failed = run(empty, day(7), tmp_path)
    assert task_states(failed) == {"pull": "failed"}
    assert gini_connection.counters()["requests"] == 0
    suggested = EMPTY_WINDOW_HINT.split("created_after=", 1)[1]
    fixed = dag_file(EMPTY_DAG.replace("AFTER", suggested))
    result = xcom(run(fixed, day(7), tmp_path), "pull")
    assert result["window"] == [day(6).isoformat(), day(7).isoformat()]
    assert on_disk(tmp_path) == served(gini_connection, day(7), day(6))
    assert result["watermark"] is None  # an explicit window keeps no watermark
    figure(
        "[data_interval_start, data_interval_end) under CronTriggerTimetable",
        served(gini_connection, day(7), day(6)),
        set(),
        "refused before any request; the suggested template then pulled them all",
    )


def test_the_empty_window_message_says_what_to_write(tmp_path: Path) -> None:
    from airflow_provider_gini.client.errors import GiniConfigError
    from airflow_provider_gini.pull.window import plan_window

    with pytest.raises(GiniConfigError) as caught:
        plan_window(
            {"data_interval_end": day(7)},
            created_after=day(7).isoformat(),
            created_before=None,
            start=None,
            full_history=False,
            advance_watermark=False,
            watermark=None,
        )
    message = str(caught.value)
    assert "is empty" in message
    assert "CronTriggerTimetable" in message
    assert "Leave created_after unset" in message
    assert "macros.timedelta(days=1)" in message


POISON_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
         max_active_runs=1) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              full_history=True, max_workers=4, hook_params=QUICK,
                              max_failed_documents=MAX_FAILED)
""".replace("QUICK", QUICK)


def test_one_poisoned_document_fails_alone_and_is_named(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    everything = served(gini_connection, day(7))
    newest = max(gini_connection.documents(created_before=ms(day(7))), key=lambda d: d["creationDate"])
    poisoned = newest["id"]
    gini_connection.add_fault("status", status=500, path=f"/documents/{poisoned}/extractions")
    dag = dag_file(POISON_DAG.replace("MAX_FAILED", "0"))
    failed = run(dag, day(7), tmp_path)
    assert task_states(failed) == {"pull": "failed"}
    # Every other document is pulled, and the manifest says which one failed and why.
    assert on_disk(tmp_path) == everything - {poisoned}
    [lines] = manifests(tmp_path).values()
    outcome = {line["id"]: line["outcome"] for line in lines}
    assert outcome == {i: "failed" if i == poisoned else outcome[i] for i in everything}
    [bad] = [line for line in lines if line["outcome"] == "failed"]
    assert poisoned in bad["error"]
    assert "{id}" not in bad["error"]
    assert "500" in bad["error"]
    figure(
        "one document whose extractions always answer 500",
        everything,
        on_disk(tmp_path),
        f"task failed naming {poisoned}; manifest kept",
    )
    # The watermark stayed (the run failed), the document waits in the state; once Gini
    # answers, the next try pulls it and fetches nothing it already has.
    assert state(tmp_path)["watermark"] is None
    assert list(state(tmp_path)["outstanding"]) == [poisoned]
    gini_connection.clear_faults()
    gini_connection.reset_counters()
    again = run(dag, day(7), tmp_path)
    assert again.state == "success"
    assert on_disk(tmp_path) == everything
    routes = gini_connection.counters()["routes"]
    assert routes["GET /documents/{document_id}/extractions"] == 1
    assert state(tmp_path)["outstanding"] == {}


def test_failures_within_max_failed_documents_move_on_and_are_retried_later(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    newest = max(gini_connection.documents(created_before=ms(day(7))), key=lambda d: d["creationDate"])
    poisoned = newest["id"]
    gini_connection.add_fault("status", status=500, path=f"/documents/{poisoned}/extractions")
    dag = dag_file(POISON_DAG.replace("MAX_FAILED", "1"))
    tolerated = run(dag, day(7), tmp_path)
    assert tolerated.state == "success"
    result = xcom(tolerated, "pull")
    assert (result["failed"], result["unfinished"], result["watermark"]) == (
        1,
        [poisoned],
        day(7).isoformat(),
    )
    assert state(tmp_path)["outstanding"][poisoned]["outcome"] == "failed"
    gini_connection.clear_faults()
    later = xcom(run(dag, day(8), tmp_path), "pull")
    assert later["window"] == [day(7).isoformat(), day(8).isoformat()]
    lines = {line["id"]: line["outcome"] for line in manifest(later)}
    assert lines[poisoned] == "pulled"  # tried again first, though outside this window
    assert on_disk(tmp_path) == served(gini_connection, day(8))
    assert state(tmp_path)["outstanding"] == {}


def test_pending_documents_are_waited_for_together_under_one_timeout(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """8 documents that never finish, 2 workers, pending_timeout 3 s: waited for together, so
    the pull ends after about 3 s, not 8 x 3 s; all 8 are named."""
    from airflow_provider_gini.client.errors import GiniPullIncomplete
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    stuck = gini_connection.insert_documents(count=8, creationDate=ms(day(6)) + 1000, readyIn=3600)
    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(tmp_path),
        created_after=day(6),
        created_before=day(7),
        max_workers=2,
        pending_timeout=3,
        poll_interval=0.5,
    )
    began = time.monotonic()
    with pytest.raises(GiniPullIncomplete) as caught:
        operator.execute({"run_id": "manual_pending"})  # type: ignore[arg-type]
    took = time.monotonic() - began
    assert sorted(caught.value.pending) == sorted(stuck)
    assert took < 12, took  # serial waits would take 24 s
    assert on_disk(tmp_path) == served(gini_connection, day(7), day(6)) - set(stuck)
    figure(
        "8 never-finishing documents, 2 workers, pending_timeout 3 s",
        served(gini_connection, day(7), day(6)),
        on_disk(tmp_path),
        f"failed naming the 8 after {took:.1f} s",
    )


def test_a_terminal_document_error_does_not_wait_out_pending_ones(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """One document whose extractions Gini refuses (422) and one still PENDING with a 60 s
    pending_timeout: the task is already failed by the 422, so the pull does not wait."""
    [refused] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000)
    [pending] = gini_connection.insert_documents(creationDate=ms(day(6)) + 2000, readyIn=3600)
    gini_connection.add_fault("status", status=422, path=f"/documents/{refused}/extractions")
    dag = dag_file(
        POISON_DAG.replace("MAX_FAILED", "0").replace("max_workers=4", "max_workers=4, pending_timeout=60")
    )
    began = time.monotonic()
    failed = run(dag, day(7), tmp_path)
    took = time.monotonic() - began
    assert task_states(failed) == {"pull": "failed"}
    assert took < 40, took
    [lines] = manifests(tmp_path).values()
    outcome = {line["id"]: line["outcome"] for line in lines}
    assert (outcome[refused], outcome[pending]) == ("failed", "pending")
    assert on_disk(tmp_path) == served(gini_connection, day(7)) - {refused, pending}
    figure(
        "one 422 and one PENDING, pending_timeout 60 s",
        served(gini_connection, day(7)),
        on_disk(tmp_path),
        f"failed after {took:.1f} s (the whole dag.test run)",
    )


def test_on_kill_stops_the_pull_within_seconds_and_keeps_its_manifest(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    from airflow_provider_gini.client.errors import GiniCancelled
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    [pending] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000, readyIn=3600)
    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(tmp_path),
        full_history=True,
        created_before=day(7),
        pending_timeout=300,
    )
    expected = served(gini_connection, day(7)) - {pending}

    def kill_once_only_the_pending_one_is_left() -> None:
        while on_disk(tmp_path) != expected:
            time.sleep(0.1)
        time.sleep(1)
        operator.on_kill()  # what Airflow's SIGTERM handler calls

    killer = threading.Thread(target=kill_once_only_the_pending_one_is_left, daemon=True)
    killer.start()
    began = time.monotonic()
    with pytest.raises(GiniCancelled):
        operator.execute({"run_id": "manual_kill", "ti": None})  # type: ignore[arg-type]
    took = time.monotonic() - began
    killer.join()
    assert took < 60, took  # not the 300 s pending_timeout
    [lines] = manifests(tmp_path).values()
    assert {line["id"] for line in lines} == on_disk(tmp_path)  # what was done, recorded
    assert on_disk(tmp_path) == expected
    assert not list(tmp_path.glob("_state/*.json"))  # the watermark did not move


TIMEOUT_DAG = """
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2026, 1, 5, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              full_history=True, pending_timeout=600,
                              execution_timeout=timedelta(seconds=12))
"""


def test_execution_timeout_stops_a_pull_waiting_for_pending_documents(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    [pending] = gini_connection.insert_documents(creationDate=ms(day(6)) + 1000, readyIn=3600)
    began = time.monotonic()
    failed = run(dag_file(TIMEOUT_DAG), day(7), tmp_path)
    took = time.monotonic() - began
    assert task_states(failed) == {"pull": "failed"}
    # 12 s, not 4: on a machine with a core kept busy, 4 s could run out before the pull wrote
    # its manifest. Far from the 600 s pending_timeout either way.
    assert took < 120, took
    [lines] = manifests(tmp_path).values()
    assert {line["id"] for line in lines} == on_disk(tmp_path)
    assert on_disk(tmp_path) <= served(gini_connection, day(7)) - {pending}


def test_an_explicit_window_moves_the_watermark_only_when_asked(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    from airflow_provider_gini._compat import AirflowFailException
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    def pull(**window: Any) -> dict[str, Any]:
        operator = GiniPullDocumentsOperator(task_id="pull", destination=str(tmp_path), **window)
        return dict(operator.execute({"run_id": f"manual_{len(window)}_{time.time_ns()}"}))  # type: ignore[arg-type]

    first = pull(start=day(6), created_before=day(7))
    assert first["watermark"] == day(7).isoformat()
    kept = pull(created_after=day(7), created_before=day(8))
    assert (kept["watermark"], state(tmp_path)["watermark"]) == (None, day(7).isoformat())
    moved = pull(created_after=day(7), created_before=day(8), advance_watermark=True)
    assert moved["watermark"] == state(tmp_path)["watermark"] == day(8).isoformat()
    with pytest.raises(AirflowFailException, match="would skip the documents in between"):
        pull(created_after=day(9), created_before=day(10), advance_watermark=True)
    assert state(tmp_path)["watermark"] == day(8).isoformat()
    assert on_disk(tmp_path) == served(gini_connection, day(8), day(6))


def test_a_document_that_keeps_failing_fails_one_run_then_waits_without_holding_the_rest(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    newest = max(gini_connection.documents(created_before=ms(day(7))), key=lambda d: d["creationDate"])
    poisoned = newest["id"]
    gini_connection.add_fault("status", status=500, path=f"/documents/{poisoned}/extractions")
    dag = dag_file(POISON_DAG.replace("MAX_FAILED", "0"))
    assert task_states(run(dag, day(7), tmp_path)) == {"pull": "failed"}
    later = run(dag, day(8), tmp_path)
    assert later.state == "success"  # the next run is not held back by the same document
    result = xcom(later, "pull")
    assert (result["failed"], result["unfinished"]) == (1, [poisoned])
    assert result["watermark"] == day(8).isoformat()
    entry = state(tmp_path)["outstanding"][poisoned]
    assert (entry["outcome"], entry["tries"]) == ("failed", 2)
    assert on_disk(tmp_path) == served(gini_connection, day(8)) - {poisoned}


def test_another_try_of_the_run_that_moved_the_watermark_lists_its_window_again(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """Something failed after the state was saved (an XCom push, a lost success): the next try
    of that run must not report an empty window; it lists the same one and skips it all."""
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    def attempt() -> dict[str, Any]:
        operator = GiniPullDocumentsOperator(task_id="pull", destination=str(tmp_path), start=day(6))
        context = {"run_id": "scheduled__2026-01-07", "data_interval_end": day(7)}
        return dict(operator.execute(context))  # type: ignore[arg-type]

    first, second = attempt(), attempt()
    truth = served(gini_connection, day(7), day(6))
    assert first["window"] == second["window"] == [day(6).isoformat(), day(7).isoformat()]
    assert (first["pulled"] + first["errored"], second["skipped"]) == (len(truth), len(truth))
    assert second["watermark"] == day(7).isoformat()
