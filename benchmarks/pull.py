"""Pull throughput: our operator's engine against a plain HttpHook loop and the latency limit.

Also the memory child: ``python -m benchmarks.pull --memory ...`` pulls in a fresh process and
prints its peak RSS, so one process's history cannot blur another's figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_gini.client.listing import MIN_SERVER_PAGE
from benchmarks.harness import FIRST_MS, Sandbox

PAGE_SIZE = 100


def window(n: int) -> tuple[datetime, datetime]:
    start = datetime.fromtimestamp(FIRST_MS / 1000, timezone.utc)
    end = datetime.fromtimestamp((FIRST_MS + n * 1000) / 1000, timezone.utc)
    return start, end


def list_pages(n: int, contract: str = "cursor", page: int = PAGE_SIZE) -> int:
    """The fewest list requests that prove a window of ``n`` documents (one per second, nothing
    outside it) complete. By cursor, each page after the first repeats the one document it
    continues from, and the last must come back shorter than asked (a short first page, too,
    unless it is shorter than any server's own page size). By offset, each page after the first
    repeats the last two documents of the one before (the one that proves continuity, and the
    last millisecond's), the first is followed by one request that proves offsets are read, and
    the count ends it."""
    if contract == "offset":
        return 1 if n <= page else 2 + math.ceil((n - page) / (page - 2))
    if n >= page:
        return 1 + math.ceil((n - page + 1) / (page - 1))
    return 2 if n >= MIN_SERVER_PAGE else 1


def minimum_requests(n: int, include_processed: bool, contract: str = "cursor") -> int:
    """The list requests (the listing carries each document's JSON), one extractions call per
    document, one download per document when asked for."""
    return list_pages(n, contract) + n * (2 if include_processed else 1)


def ours(
    box: Sandbox, n: int, include_processed: bool, max_workers: int, destination: Path
) -> dict[str, Any]:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    os.environ["AIRFLOW_CONN_GINI_DEFAULT"] = json.dumps(box.connection())
    start, end = window(n)
    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(destination),
        created_after=start,
        created_before=end,
        include_processed=include_processed,
        max_workers=max_workers,
        page_size=PAGE_SIZE,
    )
    box.reset_counters()
    cpu_before = _cpu_seconds()
    began = time.perf_counter()
    result = operator.execute({"run_id": f"bench_{time.time_ns()}"})  # type: ignore[arg-type]
    seconds = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_before
    assert result["pulled"] == n, result
    return {
        "seconds": seconds,
        "cpu": cpu,
        "requests": box.api_requests(),
        "grants": box.grants(),
        "listing": box.list_requests(),
    }


def _cpu_seconds() -> float:
    """This process's CPU time (user + system), all threads: the pull's cost, whatever it waits on."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(box: Sandbox, n: int, include_processed: bool, destination: Path) -> dict[str, Any]:
    """What Airflow users hand-roll today: HttpHook, one token, pages, then each document in turn."""
    from airflow.providers.http.hooks.http import HttpHook

    conn = box.connection()
    os.environ["AIRFLOW_CONN_GINI_HTTP"] = json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": box.port, "schema": "http"}
    )
    box.reset_counters()
    began = time.perf_counter()
    basic = base64.b64encode(
        f"{conn['extra']['client_id']}:{conn['extra']['client_secret']}".encode()
    ).decode()
    token = (
        HttpHook(method="POST", http_conn_id="gini_http")
        .run(
            "/oauth/token?grant_type=password",
            data={"username": conn["login"], "password": conn["password"]},
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )
        .json()["access_token"]
    )
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.gini.v1+json"}
    get = HttpHook(method="GET", http_conn_id="gini_http")
    start_ms, end_ms = FIRST_MS, FIRST_MS + n * 1000
    ids: list[str] = []
    offset = 0
    while True:
        page = get.run("/documents", data={"limit": PAGE_SIZE, "offset": offset}, headers=headers).json()
        docs = [d for d in page["documents"] if start_ms <= d["creationDate"] < end_ms]
        ids += [d["id"] for d in docs]
        offset += PAGE_SIZE
        if offset >= page["totalCount"]:
            break
    for doc_id in ids:
        folder = destination / doc_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "document.json").write_text(get.run(f"/documents/{doc_id}", headers=headers).text)
        (folder / "extractions.json").write_text(
            get.run(f"/documents/{doc_id}/extractions", headers=headers).text
        )
        if include_processed:
            raw = get.run(
                f"/documents/{doc_id}/processed", headers={**headers, "Accept": "application/octet-stream"}
            )
            (folder / "processed.pdf").write_bytes(raw.content)
    seconds = time.perf_counter() - began
    assert len(ids) == n
    return {"seconds": seconds, "requests": box.api_requests(), "grants": box.grants()}


def floor(box: Sandbox, n: int, include_processed: bool, workers: int, listing: list[str]) -> dict[str, Any]:
    """The fastest any client can be here: the same requests at the same concurrency through a
    bare urllib3 pool, and nothing done with the answers (no files, no retries, no checks). It
    sends the list requests ours sent (``listing``, from the sandbox's log), one after another
    while the workers fetch what each page brought. What separates it from the latency limit is
    the sandbox and the machine, not a client's code."""
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    from airflow_provider_gini.sandbox.server import user_token

    pool = urllib3.HTTPConnectionPool("127.0.0.1", box.port, maxsize=workers + 2, retries=False)
    box.reset_counters()
    began = time.perf_counter()
    token = user_token(box.base_url)  # timed: ours makes its grant inside the pull too
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.gini.v1+json"}
    fetched: list[int] = []  # list.append is atomic, so the workers need no lock

    def fetch(doc_id: str) -> None:
        size = len(pool.urlopen("GET", f"/documents/{doc_id}/extractions", headers=headers).data)
        if include_processed:
            raw = {**headers, "Accept": "*/*"}
            size += len(pool.urlopen("GET", f"/documents/{doc_id}/processed", headers=raw).data)
        fetched.append(size)

    start_ms, end_ms = FIRST_MS, FIRST_MS + n * 1000
    listed: set[str] = set()
    with ThreadPoolExecutor(max_workers=workers) as fetchers:
        for path in listing:
            page = json.loads(pool.urlopen("GET", path, headers=headers).data)
            for doc in page["documents"]:
                if start_ms <= doc["creationDate"] < end_ms and doc["id"] not in listed:
                    listed.add(doc["id"])
                    fetchers.submit(fetch, doc["id"])
    seconds = time.perf_counter() - began
    assert len(listed) == n, len(listed)
    assert len(fetched) == n, len(fetched)
    return {"seconds": seconds, "requests": box.api_requests(), "grants": box.grants()}


def memory_child(sandbox_url: str, n: int, max_workers: int) -> None:
    """In a fresh process: pull N documents, print the peak RSS before and after (MiB)."""
    box = Sandbox(sandbox_url)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    destination = Path(tempfile.mkdtemp(prefix="gini-bench-mem-"))
    try:
        figures = ours(box, n, include_processed=False, max_workers=max_workers, destination=destination)
    finally:
        shutil.rmtree(destination, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "rss_before_mib": before, "rss_peak_mib": peak, **figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--sandbox", required=True, help="the sandbox's base URL")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--max-workers", type=int, default=16)
    args = parser.parse_args()
    memory_child(args.sandbox, args.n, args.max_workers)
    sys.exit(0)
