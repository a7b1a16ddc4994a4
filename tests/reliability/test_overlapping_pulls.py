"""Pulls side by side into one destination (#14): two at once in threads and in two processes,
and a kill -9 followed by a new run. No pull removes what a live one is writing, pulls with one
watermark key take turns, and what a killed pull left goes at the next pull of any run.

Each test prints a FIGURE line; `pytest -s tests/reliability/test_overlapping_pulls.py | grep
FIGURE` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.pull.storage import TMP_MARK
from airflow_provider_gini.sandbox import RunningSandbox
from tests.reliability.helpers import assert_destination, day, kill_mid_way, manifests, ms, temporary_files

pytestmark = pytest.mark.timeout(300)

START, END = day(6), day(8)
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}

CHILD = textwrap.dedent(
    """
    import json, sys
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    destination, run_id, options = sys.argv[1:4]
    operator = GiniPullDocumentsOperator(task_id="pull", destination=destination, **json.loads(options))
    print("pulling", flush=True)
    print("RESULT " + json.dumps(operator.execute({"run_id": run_id})), flush=True)
    """
)


def seed(sandbox: RunningSandbox, count: int = 40) -> int:
    sandbox.insert_documents(count=count, creationDate=ms(START) + 60_000, spacingMs=60_000)
    return len(sandbox.documents(created_after=ms(START), created_before=ms(END)))


def options(**more: Any) -> dict[str, Any]:
    return {
        "created_after": START.isoformat(),
        "created_before": END.isoformat(),
        "include_processed": True,
        "max_workers": 4,
        "hook_params": FAST,
        **more,
    }


def child(tmp_path: Path, destination: Path, run_id: str, opts: dict[str, Any]) -> tuple[Any, Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log_path = tmp_path / f"{run_id}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(script), str(destination), run_id, json.dumps(opts)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),  # AIRFLOW_HOME and AIRFLOW_CONN_GINI_DEFAULT for this sandbox
    )
    return process, log_path


def result_of(log_path: Path) -> dict[str, Any]:
    [line] = [line for line in log_path.read_text().splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))  # type: ignore[no-any-return]


def test_two_pulls_at_once_in_threads_never_remove_each_others_files(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    total = seed(gini_connection)
    # Each processed file's temporary file stays open for 0.2 s: the other pull surely visits
    # the folder meanwhile, with no document.json in it yet.
    gini_connection.add_fault("latency", path="/documents/*/processed", delay=0.2)
    destination = tmp_path / "destination"
    results: dict[str, Any] = {}

    def pull(run_id: str) -> None:
        operator = GiniPullDocumentsOperator(task_id="pull", destination=str(destination), **options())
        try:
            results[run_id] = operator.execute({"run_id": run_id})  # type: ignore[arg-type]
        except BaseException as exc:
            results[run_id] = exc

    threads = [threading.Thread(target=pull, args=(f"run_{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    failures = {k: repr(v) for k, v in results.items() if isinstance(v, BaseException)}
    print(
        f"FIGURE overlapping pulls in threads: {2 - len(failures)}/2 succeeded (before #14: 1/2, FileNotFoundError)"
    )
    assert not failures, failures
    checked = assert_destination(gini_connection, destination, START, END, processed=True)
    assert len(checked.complete) == total
    assert temporary_files(destination) == []
    for result in results.values():
        assert result["pulled"] + result["skipped"] + result["errored"] == total
    # Both manifests list the whole window; between them each document was fetched at least once.
    assert [len(lines) for lines in manifests(destination)] == [total, total]


def test_two_processes_with_one_watermark_key_take_turns(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    total = seed(gini_connection)
    gini_connection.add_fault("latency", path="/documents/*/processed", delay=0.05)
    destination = tmp_path / "destination"
    opts = options(watermark_key="shared", advance_watermark=True)
    started = time.monotonic()
    children = [child(tmp_path, destination, f"run_{n}", opts) for n in (1, 2)]
    for process, log_path in children:
        assert process.wait(timeout=240) == 0, log_path.read_text()[-3000:]
    took = time.monotonic() - started
    logs = [log_path.read_text() for _, log_path in children]
    waited = [text for text in logs if "Waiting for the pull of" in text]
    results = [result_of(log_path) for _, log_path in children]
    pulled = sorted(r["pulled"] + r["errored"] for r in results)
    print(
        f"FIGURE one watermark key, two processes: {len(waited)} waited for its turn, documents "
        f"fetched {pulled} (first, second) of {total}, {took:.1f} s "
        "(before #14: both ran at once, each fetching the window)"
    )
    assert len(waited) == 1, logs
    # The second pull covers the same window after the first: everything is stored by then.
    assert pulled == [0, total]
    assert_destination(gini_connection, destination, START, END, processed=True)
    state = [json.loads(p.read_text()) for p in (destination / "_state").glob("*.json")]
    assert [s["key"] for s in state] == ["shared"]
    assert state[0]["watermark"] is not None
    assert list((destination / "_leases").iterdir()) == []


def test_what_a_killed_pull_left_goes_at_the_next_run(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    total = seed(gini_connection, count=60)
    gini_connection.add_fault("latency", path="/documents/*", delay=0.05)
    destination = tmp_path / "destination"
    process, log_path = child(tmp_path, destination, "killed_run", options())
    kill_mid_way(process, log_path, destination, 10)
    left = temporary_files(destination)
    assert any(f.startswith("_manifests/") for f in left), left
    assert list((destination / "_leases").iterdir()), "the killed pull's lease is gone"
    gini_connection.clear_faults()

    # A new run (another run id, so not a retry of the killed task instance) cleans up.
    operator = GiniPullDocumentsOperator(task_id="pull", destination=str(destination), **options())
    result = operator.execute({"run_id": "next_run"})  # type: ignore[arg-type]
    after = temporary_files(destination)
    print(
        f"FIGURE kill -9 then a new run: {len(left)} temporary file(s) after the kill, {len(after)} "
        "after the new run (before #14: the killed run's temporary manifest stayed)"
    )
    assert after == []
    assert list((destination / "_leases").iterdir()) == []
    assert [p.name for p in (destination / "_manifests").iterdir() if TMP_MARK in p.name] == []
    assert result["pulled"] + result["skipped"] + result["errored"] == total
    assert_destination(gini_connection, destination, START, END, processed=True)


def test_only_provably_dead_writers_lose_their_temporary_files(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """Each rule of pull/lease.py, on lease files as other pulls would have left them."""
    import socket
    from dataclasses import asdict

    from airflow_provider_gini.pull.lease import TTL, LeaseBody, _machine, _start_time

    seed(gini_connection, count=5)
    destination = tmp_path / "destination"
    (destination / "_leases").mkdir(parents=True)
    here, machine, pid = socket.gethostname(), _machine(), os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        leases: dict[str, LeaseBody | bytes | None] = {
            "nolease": None,
            "elsewhereexpired": LeaseBody("x", "other-host", "other", 1, None, time.time() - 1),
            "elsewherelive": LeaseBody("x", "other-host", "other", 1, None, time.time() + TTL),
            "herelive": LeaseBody("x", here, machine, sleeper.pid, _start_time(sleeper.pid), time.time() - 1),
            "herepidreused": LeaseBody("x", here, machine, pid, "1", time.time() + TTL),
            "heregone": LeaseBody("x", here, machine, gone.pid, None, time.time() + TTL),
            "halfwritten": b'{"token": "halfwr',
        }
        for token, body in leases.items():
            if body is not None:
                raw = (
                    body if isinstance(body, bytes) else json.dumps({**asdict(body), "token": token}).encode()
                )
                (destination / "_leases" / f"{token}.json").write_bytes(raw)
        (destination / "_manifests").mkdir()
        for token in leases:
            (destination / "_manifests" / f"{TMP_MARK}{token}-manifest-x.jsonl").write_bytes(b"")
        operator = GiniPullDocumentsOperator(task_id="pull", destination=str(destination), **options())
        operator.execute({"run_id": "sweeping_run"})  # type: ignore[arg-type]
        kept = sorted(
            p.name.removeprefix(TMP_MARK).split("-")[0]
            for p in (destination / "_manifests").iterdir()
            if TMP_MARK in p.name
        )
        leases_left = sorted(p.stem for p in (destination / "_leases").iterdir())
    finally:
        sleeper.kill()
        sleeper.wait()
    # Alive, or not provably dead: another machine's unexpired lease, a live process here, a
    # lease still being written. Everything else was removed, leases and all.
    assert kept == ["elsewherelive", "halfwritten", "herelive"]
    assert leases_left == ["elsewherelive", "halfwritten", "herelive"]
