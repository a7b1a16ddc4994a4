"""Throwaway PostgreSQL and Redis servers on loopback, for the distributed deployment tests.

Debian's packages (``postgresql``, ``redis-server``; scripts/test.sh installs them as root). A
test that needs one skips, saying how to install it, when its binaries are missing. Nothing is
left behind: the cluster lives in a folder of its own under /tmp (the ``postgres`` user, which
PostgreSQL needs when the tests run as root, cannot enter pytest's 0700 temporary folders) and
both servers are stopped, and their folders removed, on the way out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deployment import free_port

INSTALL_HINT = (
    "run scripts/test.sh as root, or: apt-get install --no-install-recommends postgresql redis-server"
)


def postgres_bindir() -> Path | None:
    """Debian keeps the server binaries off PATH, per major version: take the newest."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresCluster:
    bindir: Path
    root: Path
    port: int
    run_as: dict[str, Any]

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        # Trust authentication on loopback: no password, so nothing for Airflow's masker to hide.
        return f"{scheme}://airflow@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=airflow dbname={database} connect_timeout=5"

    def create_database(self, name: str) -> None:
        self._sql("postgres", f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self._sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _sql(self, database: str, statement: str) -> None:
        import psycopg2

        with closing(psycopg2.connect(self.dsn(database))) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "postgres.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _run(cluster_bin: Path, tool: str, *args: str, run_as: dict[str, Any], cwd: Path, timeout: float) -> None:
    result = subprocess.run(  # noqa: S603 (Debian's binaries, our own arguments)
        [str(cluster_bin / tool), *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **run_as,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A fresh, non-durable PostgreSQL cluster on 127.0.0.1 and a free port, role ``airflow``."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip(f"PostgreSQL's initdb/pg_ctl not found; {INSTALL_HINT}")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(
                f"running as root and there is no 'postgres' user to run PostgreSQL as; {INSTALL_HINT}"
            )
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="gini-pg-", dir="/tmp"))
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    data = root / "data"
    try:
        _run(
            bindir,
            "initdb",
            "-D", str(data), "-U", "airflow", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
            run_as=run_as, cwd=root, timeout=300,
        )  # fmt: skip
        for attempt in (1, 2):  # a free port can be taken before the server binds it
            port = free_port()
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                    # Throwaway data: nothing to make durable, and no JIT bursts on 2 cores.
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\njit = off\n"
                    # Six Airflow processes with connection pools, two workers' pool children and
                    # Celery's result backend.
                    "max_connections = 300\n"
                )
            try:
                _run(
                    bindir,
                    "pg_ctl",
                    "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "180", "start",
                    run_as=run_as, cwd=root, timeout=240,
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2 or (data / "postmaster.pid").exists():
                    raise
        yield PostgresCluster(bindir, root, port, run_as)
    finally:
        try:
            # Whatever happened before (a pg_ctl that timed out may still have started it).
            if (data / "postmaster.pid").exists():
                _stop_postgres(bindir, data, run_as, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _stop_postgres(bindir: Path, data: Path, run_as: dict[str, Any], root: Path) -> None:
    try:
        _run(
            bindir, "pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop",
            run_as=run_as, cwd=root, timeout=90,
        )  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired):
        with suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _answers_as(port: int, pid: int) -> bool:
    """Whether the Redis on ``port`` is the process ``pid``: another test session's Redis may have
    taken the port first, and ours then exits while theirs answers."""
    try:
        with closing(socket.create_connection(("127.0.0.1", port), timeout=1)) as sock:
            sock.sendall(b"INFO server\r\n")
            answer = b""
            while b"process_id:" not in answer or not answer.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    return f"process_id:{pid}\r\n".encode() in answer


@contextmanager
def redis_server(folder: Path, timeout: float = 60) -> Iterator[RedisServer]:
    """A Redis on 127.0.0.1 and a free port, keeping nothing on disk."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip(f"redis-server not found; {INSTALL_HINT}")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(folder), "--logfile", ""],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not _answers_as(port, process.pid):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield RedisServer(port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
