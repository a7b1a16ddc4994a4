"""A pull against a rate limit (issue 16): throughput against the limit, and how many requests
were answered 429.

    python -m benchmarks.throttled [--rates 20,50,100] [--seconds 40] [--workers 16] [--latency 20]

For each rate R the sandbox (its own process) keeps a token bucket of R requests per second per
OAuth client (bursts of R) on the document API, and holds R x --seconds documents; the pull uses
--workers threads, more than R allows at the latency. Goals: throughput >= 0.85 R with <= 5 % of
requests answered 429. Writes the "Throttled pull" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.harness import sandbox, separate_cores, write_section
from benchmarks.pull import ours

SECTION = "## Throttled pull (issue 16)"


def measure(rate: float, seconds: float, workers: int, latency: float, scratch: Path) -> dict[str, float]:
    rule = {"kind": "rate_limit", "rate": rate, "path": "/documents*"}
    n = int(rate * seconds)
    with sandbox(latency, "--fault", json.dumps(rule)) as box:
        box.insert(n)
        destination = scratch / f"rate-{rate:g}"
        result = ours(box, n, False, workers, destination)
        statuses = box.counters()["statuses"]
        shutil.rmtree(destination, ignore_errors=True)
    refused = statuses.get("429", 0)
    answered = sum(statuses.values())
    grants = result["grants"]
    accepted = answered - refused - grants
    return {
        "documents": n,
        "seconds": result["seconds"],
        "accepted": accepted,
        "refused": refused,
        "throughput": accepted / result["seconds"],
        "share": refused / (answered - grants),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="20,50,100", help="requests per second the sandbox allows")
    parser.add_argument("--seconds", type=float, default=40.0, help="documents: this many seconds at R")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency", type=float, default=20.0, help="per-request latency in ms")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="gini-bench-throttled-"))
    os.environ.setdefault("AIRFLOW_HOME", str(scratch / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    cores = separate_cores()
    started = time.perf_counter()
    rows = []
    failed = False
    try:
        for rate in (float(r) for r in args.rates.split(",") if r):
            m = measure(rate, args.seconds, args.workers, args.latency, scratch)
            ratio = m["throughput"] / rate
            ok = ratio >= 0.85 and m["share"] <= 0.05
            failed |= not ok
            rows.append(
                f"| {rate:g} | {m['documents']:.0f} | {m['seconds']:.1f} | {m['throughput']:.1f} "
                f"({ratio:.2f} R) | {m['refused']:.0f} of {m['accepted'] + m['refused']:.0f} "
                f"({m['share']:.1%}) | {'met' if ok else 'MISSED'} |"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = (
        f"python -m benchmarks.throttled --rates {args.rates} --seconds {args.seconds:g} "
        f"--workers {args.workers} --latency {args.latency:g}"
    )
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` ({date.today().isoformat()}; took {time.perf_counter() - started:.0f} s; "
            f"{cores}). The sandbox allows R requests per second per OAuth client on the document API "
            "(a token bucket with bursts of R, answering 429 without Retry-After, as Gini documents "
            f"no header); the pull has {args.workers} workers and {args.latency:g} ms of latency per "
            "request, so unpaced it would send several times R. Throughput counts the requests Gini "
            "accepted per second of the whole pull; the 429 share is of every API request.",
            "",
            "| R (requests/s) | documents | seconds | throughput (requests/s) | answered 429 "
            "| goal: >= 0.85 R, <= 5 % 429 |",
            "|---:|---:|---:|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
