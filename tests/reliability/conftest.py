"""Reliability suite setup: every test runs at DEBUG, and afterwards everything it produced (task
logs, log records, rendered template fields, XCom values, audit log extras, exception texts) is
searched for every secret its sandbox knows of."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import dag_file  # noqa: F401  (re-exported fixture)
from tests.reliability import figures
from tests.reliability.helpers import search, tokens_in_urls

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    summary = figures.lines()
    if summary:
        terminalreporter.write_sep("-", "issue 6 reliability figures")
        for line in summary:
            terminalreporter.write_line(line)


@dataclass
class Evidence:
    """What a test produced that must hold no secret."""

    task_results: list[Any] = field(default_factory=list)  # TaskRunResult of every task dag.test() ran
    exceptions: list[BaseException] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    excluded_lines: int = 0

    def task_errors(self) -> list[BaseException]:
        return [r.error for r in self.task_results if r.error is not None]

    def exception_texts(self) -> dict[str, str]:
        out = {}
        for n, exc in enumerate([*self.task_errors(), *self.exceptions]):
            out[f"exception {n} str"] = str(exc)
            out[f"exception {n} repr"] = repr(exc)
            out[f"exception {n} traceback"] = "".join(traceback.format_exception(exc))
            out[f"exception {n} attributes"] = repr(vars(exc))
        return out


def _debug_everywhere(caplog: pytest.LogCaptureFixture) -> Callable[[], None]:
    """DEBUG for stdlib logging and for Airflow's structlog loggers (the task logger among them)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="airflow")
    modules = []
    for name in ("airflow._shared.logging.structlog", "airflow.sdk._shared.logging.structlog"):
        try:
            modules.append(__import__(name, fromlist=["PER_LOGGER_LEVELS"]))
        except ImportError:  # pragma: no cover - other Airflow layouts
            continue
    saved = [(m, m.PER_LOGGER_LEVELS[""]) for m in modules]
    for m in modules:
        m.PER_LOGGER_LEVELS[""] = logging.DEBUG

    def restore() -> None:
        for m, level in saved:
            m.PER_LOGGER_LEVELS[""] = level

    return restore


def database_marks() -> tuple[int, int]:
    """The highest DAG run and audit-log ids so far: what a test adds comes after them."""
    from airflow.models.dagrun import DagRun
    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import func

    with create_session() as session:
        return (
            int(session.query(func.max(DagRun.id)).scalar() or 0),
            int(session.query(func.max(Log.id)).scalar() or 0),
        )


def database_texts(since: tuple[int, int] = (0, 0)) -> dict[str, str]:
    """The rendered template fields and XCom values of the DAG runs made after ``since`` (all of
    them by default), and the audit-log extras written after it, from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.models.log import Log
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    texts: dict[str, str] = {}
    with create_session() as session:
        runs = {(r.dag_id, r.run_id) for r in session.query(DagRun).filter(DagRun.id > since[0]).all()}
        for row in session.query(RenderedTaskInstanceFields).all():
            if (row.dag_id, row.run_id) in runs:
                texts[f"rendered fields {row.dag_id}.{row.task_id} {row.run_id}"] = json.dumps(
                    [row.rendered_fields, row.k8s_pod_yaml], default=str
                )
        for row in session.query(XComModel).all():
            if (row.dag_id, row.run_id) in runs:
                texts[f"xcom {row.dag_id}.{row.task_id} {row.run_id} {row.key}"] = json.dumps(
                    row.value, default=str
                )
        for row in session.query(Log).filter(Log.id > since[1]).all():
            texts[f"audit log {row.id}"] = f"{row.event} {row.extra}"
    return texts


def task_log_files() -> dict[str, str]:
    """Task log files under $AIRFLOW_HOME/logs. dag.test() runs tasks in-process and writes none
    (their logs go to the process's stdout, captured below), but any that exist are searched."""
    from tests.conftest import AIRFLOW_HOME

    return {
        f"log file {p}": p.read_text(errors="replace")
        for p in (AIRFLOW_HOME / "logs").rglob("*")
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def evidence(
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Evidence]:
    """DEBUG everywhere; then a search of everything the test produced for the secrets of its
    sandbox (every token issued, every client secret and password) and a check that no token
    was ever sent in a URL."""
    restore = _debug_everywhere(caplog)
    found = Evidence()
    import airflow.sdk.execution_time.supervisor as supervisor

    original = supervisor.run_task_in_process

    def recording(*args: Any, **kwargs: Any) -> Any:  # Airflow 3.3 added a `client` argument
        result = original(*args, **kwargs)
        found.task_results.append(result)
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", recording)
    marks = None
    if "airflow_db" in request.fixturenames:
        request.getfixturevalue("airflow_db")
        marks = database_marks()
    # Resolved now, so the sandbox is still serving when the search runs.
    sandbox: RunningSandbox | None = (
        request.getfixturevalue("gini_connection") if "gini_connection" in request.fixturenames else None
    )
    try:
        yield found
    finally:
        restore()
    out, err = capfd.readouterr()
    failed = getattr(request.node, "rep_call", None)
    if out and failed is not None and failed.failed:
        print(out[-30000:])  # keep the task logs in pytest's report of a failed test
    texts = {
        "task and Airflow logs (stdout)": out,
        "stderr": err,
        "log records": caplog.text + "\n".join(f"{r.msg!s} {r.args!r}" for r in caplog.records),
        **found.texts,
        **found.exception_texts(),
    }
    if marks is not None:
        texts.update(database_texts(since=marks))
        texts.update(task_log_files())
    secrets = {k: list(v) for k, v in found.secrets.items()}
    if sandbox is not None:
        for kind, values in sandbox.secrets().items():
            secrets.setdefault(kind, []).extend(values)
    secrets = {k: [s for s in v if s] for k, v in secrets.items()}
    if not any(secrets.values()):
        return
    figures.COUNTS["secrets_searched"] += sum(len(set(v)) for v in secrets.values())
    leaks, found.excluded_lines = search(texts, secrets)
    figures.COUNTS["secret_hits"] += len(leaks)
    assert leaks == [], f"secrets leaked: {[(leak.where, leak.kind, leak.line) for leak in leaks][:10]}"
    if sandbox is not None:
        in_urls = tokens_in_urls(sandbox, secrets.get("issued_tokens", []))
        assert in_urls == [], f"a token was sent in a URL: {in_urls[:5]}"


@dataclass
class PullRun:
    dag_run: Any
    elapsed: float
    errors: list[BaseException]

    @property
    def state(self) -> str:
        return str(self.dag_run.state)


PULL_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(
        task_id="pull",
        destination="{{ dag_run.conf['destination'] }}",
        created_after="{{ dag_run.conf['created_after'] }}",
        created_before="{{ dag_run.conf['created_before'] }}",
        OPTIONS
    )
"""


@pytest.fixture
def pull_dag(dag_file: Callable[..., Any]) -> Callable[..., Any]:  # noqa: F811
    """A DAG whose one task is GiniPullDocumentsOperator over the window given in the run's conf."""

    def make(**options: Any) -> Any:
        options = {
            "max_workers": 4,
            "pending_timeout": 5.0,
            "poll_interval": 0.1,
            "retries": 0,
            **options,
            "hook_params": {**FAST, **options.get("hook_params", {})},
        }
        rendered = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return dag_file(PULL_DAG.replace("OPTIONS", rendered))

    return make


@pytest.fixture
def run_pull(evidence: Evidence) -> Callable[..., PullRun]:
    def run(dag: Any, destination: Path, start: Any, end: Any, **kwargs: Any) -> PullRun:
        before = len(evidence.task_results)
        started = time.monotonic()
        dag_run = dag.test(
            run_conf={
                "destination": str(destination),
                "created_after": start.isoformat(),
                "created_before": end.isoformat(),
            },
            **kwargs,
        )
        elapsed = time.monotonic() - started
        errors = [r.error for r in evidence.task_results[before:] if r.error is not None]
        return PullRun(dag_run, elapsed, errors)

    return run
