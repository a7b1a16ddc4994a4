"""Shared checks for the reliability suite: the destination against the server's truth, a
watcher that acts on the sandbox while a run is under way, a leak search, and a mutating proxy
that stands in for a misbehaving Gini."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_gini.sandbox import RunningSandbox
from tests.reliability import figures

UTC = timezone.utc
TMP_MARK = ".gini-tmp-"
DOCUMENT_FILES = {"document.json", "extractions.json"}
PROCESSED_MAGIC = (b"%PDF", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\x89PNG")
# Airflow 3.3's in-process supervisor comms log every message a task sends at DEBUG, before the
# secrets masker can see inside it: ``Sending request ... msg=MaskSecret(value='<the secret>')``
# (airflow/sdk/execution_time/supervisor.py, InProcessSupervisorComms.send). That is Airflow
# telling its own supervisor what to mask, not something this provider logs; exactly those lines
# are left out of the leak search, and counted so the exclusion stays visible.
AIRFLOW_MASK_SECRET_LINE = re.compile(r"Sending request\s.*\bmsg=MaskSecret\(value=")


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- the destination against the server's truth -----------------------------------------------


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def kill_mid_way(process: subprocess.Popen[bytes], log_path: Path, root: Path, documents: int) -> int:
    """SIGKILL ``process`` (a pull) once ``documents`` documents are complete under ``root``, as
    a worker's OOM killer or a lost node would; returns how many were complete then."""
    try:
        deadline = time.monotonic() + 60
        while len(list(root.glob("*/document.json"))) < documents:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never got going"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return len(list(root.glob("*/document.json")))


def temporary_files(root: Path) -> list[str]:
    return [f for f in files_under(root) if TMP_MARK in f]


def manifests(root: Path) -> list[list[dict[str, Any]]]:
    folder = root / "_manifests"
    if not folder.exists():
        return []
    return [
        [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(folder.glob("manifest-*.jsonl"))
    ]


@dataclass
class Checked:
    complete: set[str]
    truth: dict[str, dict[str, Any]]
    errored: set[str] = field(default_factory=set)


def assert_destination(
    sandbox: RunningSandbox,
    root: Path,
    start: datetime,
    end: datetime,
    *,
    missing: Iterable[str] = (),
    exact: bool = True,
    processed: bool = False,
    killed: bool = False,
) -> Checked:
    """The destination holds exactly the server's documents of ``[start, end)`` (but ``missing``),
    each document.json and extractions.json equal as JSON to the server's, with no duplicate, no
    stray and no temporary file. With ``exact=False`` (a run that failed) it may hold fewer, but
    every one it holds is complete and right."""
    truth = {d["id"]: d for d in sandbox.documents(created_after=ms(start), created_before=ms(end))}
    expected = set(truth) - set(missing)
    folders = (
        {p.name for p in root.iterdir() if p.is_dir() and p.name not in ("_manifests", "_state", "_leases")}
        if root.exists()
        else set()
    )
    complete = {name for name in folders if (root / name / "document.json").is_file()}
    if not killed:  # a killed process cannot clean up; its rerun must
        assert temporary_files(root) == [], f"temporary files left: {temporary_files(root)}"
    if exact:
        assert complete == expected, (
            f"missing {sorted(expected - complete)}, unexpected {sorted(complete - expected)}"
        )
    else:
        assert complete <= expected, f"unexpected {sorted(complete - expected)}"
    assert folders - complete <= expected, f"stray folders {sorted(folders - complete - expected)}"
    errored = set()
    for doc_id in complete:
        folder = root / doc_id
        names = {p.name for p in folder.iterdir() if TMP_MARK not in p.name}
        received = json.loads((folder / "document.json").read_bytes())
        assert received == truth[doc_id], f"{doc_id}: document.json differs from the server's"
        if truth[doc_id]["progress"] == "COMPLETED":
            files = set(DOCUMENT_FILES)
            if processed:
                [name] = [n for n in names if n.startswith("processed.")]
                assert (folder / name).read_bytes()[:4] in PROCESSED_MAGIC, f"{doc_id}: {name}"
                files.add(name)
            assert names == files, f"{doc_id}: {sorted(names)}"
            extractions = json.loads((folder / "extractions.json").read_bytes())
            assert extractions == sandbox.document(doc_id)["extractions"], f"{doc_id}: extractions differ"
        else:
            errored.add(doc_id)
            assert truth[doc_id]["progress"] == "ERROR"
            assert names == {"document.json"}, f"{doc_id}: {sorted(names)}"
    for lines in manifests(root):
        ids = [line["id"] for line in lines]
        duplicates = len(ids) - len(set(ids))
        figures.COUNTS["duplicates"] += duplicates
        assert duplicates == 0, f"a manifest lists a document twice: {ids}"
    return Checked(complete=complete, truth=truth, errored=errored)


def assert_no_document_created(sandbox: RunningSandbox) -> None:
    """A pull reads: it never uploads, so it can never make a duplicate on the server."""
    posts = sandbox.counters()["routes"].get("POST /documents", 0)
    figures.COUNTS["duplicates"] += posts
    assert posts == 0


# --- acting on the sandbox while a run is under way -------------------------------------------


class Watcher(threading.Thread):
    """Waits (off the test's thread) until ``ready(sandbox)`` holds, then runs ``act(sandbox)`` once."""

    def __init__(
        self,
        sandbox: RunningSandbox,
        ready: Callable[[RunningSandbox], bool],
        act: Callable[[RunningSandbox], Any],
        timeout: float = 60.0,
    ) -> None:
        super().__init__(name="reliability-watcher", daemon=True)
        self.sandbox, self.ready, self.act, self.timeout = sandbox, ready, act, timeout
        self.fired = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if self.ready(self.sandbox):
                    self.act(self.sandbox)
                    self.fired.set()
                    return
                time.sleep(0.01)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        assert self.error is None, repr(self.error)
        assert self.fired.is_set(), "the watcher never saw its moment: the run ended too early"


def route_count(route: str, at_least: int) -> Callable[[RunningSandbox], bool]:
    def ready(sandbox: RunningSandbox) -> bool:
        return int(sandbox.counters()["routes"].get(route, 0)) >= at_least

    return ready


# --- leak search ------------------------------------------------------------------------------


@dataclass
class Leak:
    where: str
    kind: str
    line: str


def sandbox_secrets(sandbox: RunningSandbox) -> dict[str, list[str]]:
    return {kind: [s for s in values if s] for kind, values in sandbox.secrets().items()}


def search(texts: dict[str, str], secrets: dict[str, list[str]]) -> tuple[list[Leak], int]:
    """Every line of ``texts`` that holds a secret, but Airflow's own MaskSecret DEBUG lines
    (see AIRFLOW_MASK_SECRET_LINE), which are returned as a count."""
    leaks: list[Leak] = []
    excluded = 0
    flat = [(kind, s) for kind, values in secrets.items() for s in values]
    for where, text in texts.items():
        figures.COUNTS["texts_searched"] += 1
        figures.COUNTS["chars_searched"] += len(text)
        if not any(s in text for _, s in flat):
            continue
        for line in text.splitlines():
            hits = [kind for kind, s in flat if s in line]
            if not hits:
                continue
            if AIRFLOW_MASK_SECRET_LINE.search(line):
                excluded += 1
                continue
            leaks.extend(Leak(where, kind, line[:300]) for kind in hits)
    return leaks, excluded


def tokens_in_urls(sandbox: RunningSandbox, tokens: Iterable[str]) -> list[str]:
    tokens = [t for t in tokens if t]
    found = []
    log = sandbox.requests()
    figures.COUNTS["urls_checked"] += len(log)
    for entry in log:
        url = f"{entry['path']}?{entry['query']}"
        if any(t in url for t in tokens):
            found.append(f"{entry['method']} {entry['path']}")
    figures.COUNTS["tokens_in_urls"] += len(found)
    return found


# --- a misbehaving Gini: a proxy in front of the sandbox that rewrites chosen answers ----------

Answer = tuple[int, dict[str, str], bytes]
Mutation = Callable[[str, str, Answer], Answer]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@contextmanager
def mutating_proxy(upstream: str, mutate: Mutation) -> Iterator[str]:
    """Serve on a free loopback port, forward every request to ``upstream`` and answer with
    ``mutate(method, path_and_query, (status, headers, body))``. A test double of Gini, used
    where the sandbox cannot misbehave in the way a case needs."""
    target = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                response = upstream_conn.getresponse()
                answer = (
                    response.status,
                    {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP},
                    response.read(),
                )
            finally:
                upstream_conn.close()
            status, out_headers, out_body = mutate(self.command, self.path, answer)
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(out_body)))
            self.end_headers()
            self.wfile.write(out_body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="gini-mutating-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def json_answer(answer: Answer, body: Any) -> Answer:
    status, headers, _ = answer
    return status, headers, json.dumps(body).encode()
