"""A sandbox in its own process, with a fixed latency, for benchmarks: start, fill, observe."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import urllib3

# Where benchmark documents live: one creation date per second from here on.
FIRST_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


SANDBOX = [sys.executable, "-m", "airflow_provider_gini.sandbox"]
# The sandbox's admin token travels in the environment, which the sandbox and every benchmark
# child inherit (the sandbox CLI reads it); checkouts older than the token ignore it.
_ADMIN_TOKEN_ENV = "GINI_SANDBOX_ADMIN_TOKEN"
_sandbox_core: int | None = None
_CORES_ENV = "GINI_BENCHMARK_CORES"


def separate_cores() -> str:
    """Give the sandbox a core of its own, and keep this process (and those it starts) off it.

    Otherwise the sandbox's event loop and the client's threads take turns on the same cores,
    and the figures measure that contention rather than the client. Returns how cores are used.
    """
    global _sandbox_core
    # A benchmark child inherits its parent's narrowed set; the full set travels in the env.
    inherited = os.environ.get(_CORES_ENV)
    cores = sorted(map(int, inherited.split(","))) if inherited else sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return f"client and sandbox share {len(cores)} core"
    os.environ[_CORES_ENV] = ",".join(map(str, cores))
    _sandbox_core = cores[-1]
    os.sched_setaffinity(0, cores[:-1])
    return f"sandbox on core {_sandbox_core}, client on core(s) {','.join(map(str, cores[:-1]))}"


def start_sandbox(*options: str, cwd: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """The sandbox CLI on a port the OS picks, and the base URL from its "serving at" line.
    ``cwd``: a checkout whose package to run instead of this one (benchmarks/compare.py)."""
    os.environ.setdefault(_ADMIN_TOKEN_ENV, secrets.token_urlsafe(32))
    proc = subprocess.Popen(  # noqa: S603
        [*SANDBOX, "--port", "0", *options], stdout=subprocess.PIPE, text=True, cwd=cwd
    )
    if _sandbox_core is not None:
        os.sched_setaffinity(proc.pid, {_sandbox_core})
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    match = re.search(r"serving at (http://\S+)", ready)
    if match is None:
        proc.kill()
        raise RuntimeError(f"the sandbox did not start: {ready!r}")
    return proc, match.group(1)


class Sandbox:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        token = os.environ.get(_ADMIN_TOKEN_ENV, "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.admin = httpx.Client(base_url=f"{self.base_url}/__sandbox", headers=headers, timeout=120)
        self.port = int(base_url.rsplit(":", 1)[1])

    def connection(self) -> dict[str, Any]:
        out = subprocess.check_output([*SANDBOX, "--port", str(self.port), "--print-connection"], text=True)  # noqa: S603
        return dict(json.loads(out))

    def insert(self, count: int, first_ms: int = FIRST_MS, prerender: bool = False) -> None:
        owner = self.connection()["login"]
        done = 0
        while done < count:
            batch = min(1000, count - done)
            self.admin.post(
                "/documents",
                json={
                    "owner": owner,
                    "count": batch,
                    "creationDate": first_ms + done * 1000,
                    "spacingMs": 1000,
                    "prerender": prerender,
                },
            ).raise_for_status()
            done += batch

    def counters(self) -> dict[str, Any]:
        return dict(self.admin.get("/counters").json())

    def reset_counters(self) -> None:
        self.admin.post("/counters/reset").raise_for_status()

    def round_trip_ms(self, count: int = 50) -> float:
        """The median time one extractions request takes, alone, through a bare urllib3 pool:
        the latency a client really sees, the sandbox's own work and timer wake-ups included."""
        from airflow_provider_gini.sandbox.server import user_token  # FastAPI: not in the memory child

        pool = urllib3.HTTPConnectionPool("127.0.0.1", self.port, maxsize=1, retries=False)
        headers = {
            "Authorization": f"Bearer {user_token(self.base_url)}",
            "Accept": "application/vnd.gini.v1+json",
        }
        listed = json.loads(pool.request("GET", "/documents?limit=1", headers=headers).data)
        path = f"/documents/{listed['documents'][0]['id']}/extractions"
        times = []
        for _ in range(count + 1):
            began = time.perf_counter()
            answer = pool.request("GET", path, headers=headers)
            times.append(time.perf_counter() - began)
            assert answer.status == 200, answer.status
        pool.close()
        return sorted(times[1:])[count // 2] * 1000

    def list_requests(self) -> list[str]:
        """The document-list requests of the request log, in order, as paths with their query."""
        log = self.admin.get("/requests", params={"limit": 100_000}).json()
        return [
            f"{r['path']}?{r['query']}" for r in log if (r["method"], r["route"]) == ("GET", "/documents")
        ]

    def api_requests(self) -> int:
        routes = self.counters()["routes"]
        return sum(n for route, n in routes.items() if route != "POST /oauth/token")

    def grants(self) -> int:
        return sum(self.counters()["grants"].values())


def profile_options(name: str) -> tuple[str, ...]:
    """The sandbox CLI options that serve one of the sandbox's CONTRACTS profiles (one per paging
    contract Gini's sources show, in both orders): a config file holding it."""
    from airflow_provider_gini.sandbox.config import CONTRACTS

    path = Path(tempfile.mkdtemp(prefix="gini-bench-profile-")) / f"{name}.json"
    path.write_text(json.dumps({"api": CONTRACTS[name].model_dump()}))
    return ("--config", str(path))


@contextmanager
def sandbox(latency_ms: float, *options: str, cwd: str | None = None) -> Iterator[Sandbox]:
    """A sandbox process with no seed, the given latency and CLI options (a profile's)."""
    proc, base_url = start_sandbox(
        "--no-seed", *(["--latency", str(latency_ms)] if latency_ms else []), *options, cwd=cwd
    )
    try:
        box = Sandbox(base_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if box.admin.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield box
    finally:
        proc.terminate()
        proc.wait(timeout=15)


RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str) -> None:
    """Put ``text`` (which starts with ``heading``, a "## ..." line) into RESULTS.md: in place of
    the section of that heading, or at the end; the other sections stay as they are."""
    current = RESULTS.read_text() if RESULTS.exists() else ""
    head, found, tail = current.partition(heading)
    rest = tail.split("\n## ", 1)[1] if found and "\n## " in tail else ""
    if found:
        RESULTS.write_text(head.rstrip("\n") + "\n\n" + text + ("\n## " + rest if rest else ""))
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + text)
