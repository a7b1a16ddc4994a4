"""Real Airflow components (api-server, scheduler, ...) as subprocesses of a test, on an
AIRFLOW_HOME and metadata DB of their own (SQLite, or a PostgreSQL database of tests/servers.py),
so nothing they write reaches the rest of the session and nothing of the session's Airflow setup
reaches them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).with_name("airflow")
T = TypeVar("T")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_json(stdout: str) -> Any:
    """The JSON document an ``airflow ... --output json`` command printed. Log lines may come
    first (unit-test mode; Airflow 3.0's start with "[" too, 3.2 logs alembic's setup) or after."""
    lines = stdout.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(("[{", "[]", "{")))
    document, _ = json.JSONDecoder().raw_decode("".join(lines[start:]))
    return document


def base_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    """Settings every deployment shares; the metadata DB is SQLite under ``home`` unless
    ``database_url`` names another (SQLAlchemy URL)."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    # The test process's own Airflow settings (tests/conftest.py) must not leak into the deployment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            # The components must import this checkout's provider (the UI renders its metadata,
            # tasks run its code), whatever version is installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            # Lets a browser in without a login; otherwise the simple auth manager would also
            # generate an admin password and log it.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # Airflow recommends an issuer per deployment; Airflow 3.0 needs one with current PyJWT,
            # which refuses to sign a token whose issuer is None (every request then fails with 500).
            "AIRFLOW__API_AUTH__JWT_ISSUER": "gini-tests",
            # The tests write their DAG files before the components start and never change them.
            # Parsing them again every 30 s (the default) only adds load, and each parse updates
            # the DAG's rows: Airflow 3.0's scheduler fails every scheduled task of a DAG
            # when it cannot resolve the run's serialized DAG for a moment ("DAG ... not found in
            # serialized_dag table", apache/airflow#62050 and #54939, under load; issue 15 saw
            # it fail a task after 61 s). So each file is parsed once, with limits that a busy
            # 2-core machine cannot outlast (the defaults time a parse out after 50 s and mark a
            # DAG stale when its parse lags the file's by 50 s).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
            "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "600",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
            # One api-server process, as 3.1+ defaults to. With Airflow 3.0's default of 4,
            # uvicorn's multiprocess supervisor kills any worker that does not answer its ping
            # within 5 s (timeout_worker_healthcheck); four workers importing Airflow on a busy
            # 2-core machine miss it, are killed and restarted, and the api-server never
            # answered (seen in a test run beside other work: "Child process [...] died" for 4 min).
            "AIRFLOW__API__WORKERS": "1",
        }
    )
    if database_url is None:
        # SQLite's busy timeouts (tests/sqlite_busy.py); a PostgreSQL driver refuses those keys.
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "tests.sqlite_busy.SYNC"
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = "tests.sqlite_busy.ASYNC"
    return env


def core_env(api_url: str) -> dict[str, str]:
    """What every component of one deployment must agree on, whatever its executor."""
    return {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        # The scheduler signs each task's Execution API token and the api-server checks it, so
        # both need the same key; given here, not left to what `db migrate` writes into
        # airflow.cfg, so the test says what a deployment must share. SECRET_KEY signs the
        # api-server's log-fetch requests to the log servers. 64 bytes: HS512.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
        # DAGs start as soon as they are parsed, with no `airflow dags unpause` call.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # Quicker scheduling loops than the production defaults; one DAG file needs one parser.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # The components start at once to save time, so the first task may be queued before
        # the api-server answers (it needs 20-30 s to start on a loaded 2-core machine): its
        # supervisor keeps trying for up to five minutes, at most 2 s apart, instead of failing
        # after the default five tries.
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "150",
        "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "2",
        # Log servers default to 8793 (workers) and 8794 (triggerer); a busy port, or the other
        # CI session's deployment, must not fail the test.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    components: list[Component] = field(default_factory=list)
    # libpq connection string of a PostgreSQL metadata DB; None: SQLite under home.
    postgres: str | None = None
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The ``airflow`` CLI against this deployment's AIRFLOW_HOME."""
        return subprocess.run(  # noqa: S603 (the venv's airflow, our own arguments)
            [str(AIRFLOW), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def airflow_write(
        self, *args: str, done: Callable[[], bool] = lambda: False, attempts: int = 6
    ) -> subprocess.CompletedProcess[str]:
        """An ``airflow`` CLI command that writes to the DB the running components also write to.

        SQLite answers "database is locked" at once, whatever its busy timeout, when a
        transaction that has read wants to write while another holds the write lock; the CLI
        then rolls back and exits 1. Such a command is run again, unless ``done`` says its
        effect is already there."""
        for _ in range(attempts):
            result = self.airflow(*args)
            if result.returncode == 0 or "database is locked" not in result.stdout + result.stderr:
                return result
            if done():
                return subprocess.CompletedProcess(result.args, 0, result.stdout, result.stderr)
            time.sleep(2)
        return result

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Component:
        """``airflow <args>`` in the background; ``env`` adds settings of this component's own."""
        log = self.home / f"{name}.log"
        with log.open("wb") as out:
            # A process group of its own, so the teardown can signal the component and the
            # executor workers and task supervisors it forked without touching pytest.
            process = subprocess.Popen(  # noqa: S603
                [str(AIRFLOW), *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        component = Component(name, process, log)
        self.components.append(component)
        return component

    def report(self) -> str:
        parts = [
            f"--- {c.name} (pid {c.process.pid}, exit {c.process.poll()}), last lines of {c.log}:\n{c.tail()}"
            for c in self.components
        ]
        for extra in self.extra_logs:
            text = extra.read_text(errors="replace") if extra.exists() else ""
            parts.append(f"--- {extra}:\n" + "\n".join(text.splitlines()[-30:]))
        for path in sorted((self.home / "logs").glob("dag_id=*/**/*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- task log {path.relative_to(self.home)}:\n" + "\n".join(lines))
        return "\n".join(parts)

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Polls ``check`` until it answers something, failing early when a component died."""
        deadline = time.monotonic() + timeout
        while True:
            dead = [c.name for c in self.components if c.process.poll() is not None]
            if dead:
                pytest.fail(f"{', '.join(dead)} exited while waiting for {what}\n{self.report()}")
            found = check()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout:.0f} s\n{self.report()}")
            time.sleep(0.5)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders), read straight from the metadata DB: this test
        process's own Airflow is configured for another AIRFLOW_HOME (tests/conftest.py), and a
        CLI call costs seconds of imports. JSON columns come back as text on both databases."""
        if self.postgres is not None:
            return _postgres_query(self.postgres, sql, params)
        if not self.db.exists():
            return []
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as db:
            return db.execute(sql, params).fetchall()

    def stop(self) -> None:
        # Last started first: workers and the scheduler go before the api-server they report to.
        # Each in its own session, so one that cannot be stopped (or an exception meanwhile, such
        # as pytest-timeout's) must not leave the others running after the test.
        try:
            for component in reversed(self.components):
                with suppress(Exception):
                    _terminate(component.process)
        finally:
            for component in self.components:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(component.process.pid, signal.SIGKILL)


def _postgres_query(dsn: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    import psycopg2
    import psycopg2.extras

    with closing(psycopg2.connect(dsn)) as connection:
        connection.set_session(readonly=True, autocommit=True)
        psycopg2.extras.register_default_jsonb(connection, loads=lambda text: text)
        psycopg2.extras.register_default_json(connection, loads=lambda text: text)
        with connection.cursor() as cursor:
            # psycopg2's placeholders are %s, so a literal % must be doubled.
            cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)
            return list(cursor.fetchall())


def _terminate(process: subprocess.Popen[bytes]) -> None:
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None and not any(p.is_running() for p in descendants):
            break
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        for child in descendants:
            # Task processes move to process groups of their own (the supervisor's setpgid).
            with suppress(psutil.NoSuchProcess):
                child.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        psutil.wait_procs(descendants, timeout=grace)
    process.wait(timeout=5)


# Airflow 3.0's scheduler on SQLite sometimes reads a task that has finished (its task log says
# so, the next task already ran on its result) as still running, and fails it as "changed
# externally". Seen in two of this project's CI runs on a loaded 2-core machine, never on 3.3, and
# not caused by this provider: a deployment test that meets it runs once more from scratch.
STATE_RACE = "finished with state success, but the task instance's state attribute is running"


class AirflowStateRace(Exception):
    """The scheduler failed a task that had succeeded (STATE_RACE); nothing of ours."""


def check_state_race(deployment: Deployment) -> None:
    """Raise AirflowStateRace when the scheduler's log shows STATE_RACE on Airflow 3.0."""
    import airflow

    if not airflow.__version__.startswith("3.0."):
        return
    for component in deployment.components:
        if component.log.exists() and STATE_RACE in component.log.read_text(errors="replace"):
            raise AirflowStateRace(f"{component.name}: {STATE_RACE}")


def once_more_on_state_race(
    scenario: Callable[[Path], None], tmp_path: Path, before_rerun: Callable[[], None] = lambda: None
) -> None:
    """``scenario`` in a fresh folder under ``tmp_path``; once more if it met AirflowStateRace."""
    for attempt in (1, 2):
        try:
            scenario(tmp_path / f"attempt-{attempt}")
            return
        except AirflowStateRace:
            if attempt == 2:
                raise
            before_rerun()


@contextmanager
def airflow_deployment(
    home: Path, env: Mapping[str, str], postgres: tuple[str, str] | None = None
) -> Iterator[Deployment]:
    """A migrated metadata DB (SQLite under ``home``, or ``postgres``: its SQLAlchemy URL and
    libpq DSN), with ``env`` over the base settings; the body starts the components, and every
    one it started is stopped on the way out."""
    url, dsn = postgres if postgres is not None else (None, None)
    deployment = Deployment(home, {**base_env(home, url), **env}, postgres=dsn)
    migrate = deployment.airflow("db", "migrate", timeout=300)
    assert migrate.returncode == 0, (
        f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
    )
    try:
        yield deployment
    finally:
        deployment.stop()


def answers(url: str) -> Callable[[], bool | None]:
    def check() -> bool | None:
        try:
            response = httpx.get(url, timeout=2, trust_env=False)
        except httpx.HTTPError:
            return None
        return True if response.status_code == 200 else None

    return check
