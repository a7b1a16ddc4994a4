"""The benchmark suite: every figure of issue 5, as ratios taken in one run.

    python -m benchmarks [--quick] [--latency 20] [--n 1000] [--workers 16] [--profiles a,b]

Starts the sandbox (in its own process) with a fixed per-request latency and reports, on each
sandbox profile (one per paging contract Gini's sources show, in both orders):
(a) pull throughput against a plain HttpHook loop, against the latency limit and against a
bare urllib3 client making the same requests (the floor this machine and sandbox allow), with
the requests per document; (b) token grants per run; (c) peak RSS of a pull at N=100 and N=5000;
(d) the requests of an incremental run with nothing new; and once: (e) triggerer scale; (f)
sandbox capacity. Results go to stdout and, unless --quick, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_gini.sandbox.config import CONTRACTS
from benchmarks.harness import profile_options, sandbox, separate_cores
from benchmarks.pull import baseline, floor, minimum_requests, ours, window

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
        f"Airflow {version('apache-airflow')}, airflow-provider-gini {version('airflow-provider-gini')}"
    )


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: float(run["seconds"]))[len(runs) // 2]


def baseline_rows(latency: float, n: int, scratch: Path) -> dict[bool, dict[str, Any]]:
    """The hand-rolled HttpHook loop, once per mode. It pages by offset up to totalCount, so it
    runs on the legacy profile: the only contract such a loop can follow at all."""
    results = {}
    with sandbox(latency, *profile_options("legacy")) as box:
        box.insert(n, prerender=True)
        for processed in (False, True):
            results[processed] = baseline(box, n, processed, scratch / f"baseline-{processed}")
    return results


def pull_rows(
    latency: float,
    n: int,
    workers: int,
    scratch: Path,
    repeats: int,
    name: str,
    base: dict[bool, dict[str, Any]],
) -> list[tuple[str, str, str, str]]:
    rows = []
    with sandbox(latency, *profile_options(name)) as box:
        box.insert(n, prerender=True)
        # The injected latency is a floor: the sandbox's own work and the timer's wake-up come on
        # top. One request at a time shows what a request really takes.
        round_trip = box.round_trip_ms()
        for processed in (False, True):
            label = f"{name}, {'with processed files' if processed else 'with extractions'}"
            # Ours and the floor take turns, and each figure is the median of its runs: one run
            # on a shared 2-core machine can be off by a third. The floor sends the list
            # requests ours sent.
            mine_runs, bare_runs = [], []
            for i in range(repeats):
                mine_runs.append(ours(box, n, processed, workers, scratch / f"ours-{name}-{processed}-{i}"))
                bare_runs.append(floor(box, n, processed, workers, mine_runs[-1]["listing"]))
            mine, bare = _median(mine_runs), _median(bare_runs)
            needed = minimum_requests(n, processed, "offset" if name.startswith("legacy") else "cursor")
            limit = needed * latency / 1000 / workers
            seen_limit = needed * round_trip / 1000 / workers
            slow = base[processed]["seconds"]
            rows += [
                (
                    f"(a) pull {n} docs ({label}): ours (median of {repeats})",
                    f"{mine['seconds']:.2f} s ({n / mine['seconds']:.0f} docs/s, "
                    f"{mine['cpu'] / n * 1000:.2f} ms of client CPU per document)",
                    "",
                    "",
                ),
                (
                    f"(a) ours vs baseline ({label})",
                    f"{slow / mine['seconds']:.1f}x faster",
                    ">= 8x",
                    _ok(slow / mine["seconds"] >= 8),
                ),
                (
                    f"(a) ours vs limit ({label}): {needed} req x {latency:g} ms / {workers}",
                    f"{limit / mine['seconds']:.2f} of the limit ({limit:.2f} s)",
                    ">= 0.8",
                    _ok(limit / mine["seconds"] >= 0.8),
                ),
                (
                    f"(a) ours vs limit at the round trip the sandbox really gives ({label}): "
                    f"{needed} req x {round_trip:.1f} ms / {workers}",
                    f"{seen_limit / mine['seconds']:.2f} of that limit ({seen_limit:.2f} s)",
                    "",
                    "",
                ),
                (
                    f"(a) bare-client floor ({label}, median of {repeats}): same requests and "
                    "concurrency, answers dropped",
                    f"{bare['seconds']:.2f} s = {limit / bare['seconds']:.2f} of the limit, "
                    f"{seen_limit / bare['seconds']:.2f} of the limit at the measured round trip",
                    "",
                    "",
                ),
                (
                    f"(a) ours vs bare-client floor ({label})",
                    f"{bare['seconds'] / mine['seconds']:.2f} of the floor's speed",
                    "",
                    "",
                ),
                (
                    f"(a) requests per document ({label})",
                    f"{mine['requests'] / n:.3f} ({mine['requests']} seen, {len(mine['listing'])} of them "
                    f"list pages; {needed} minimum)",
                    "= minimum",
                    _ok(mine["requests"] == needed),
                ),
                (f"(b) token grants per run ({label})", str(mine["grants"]), "1", _ok(mine["grants"] == 1)),
            ]
        # (d) the next run's window holds nothing new.
        from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

        _, end = window(n)
        os.environ["AIRFLOW_CONN_GINI_DEFAULT"] = json.dumps(box.connection())
        box.reset_counters()
        GiniPullDocumentsOperator(
            task_id="pull",
            destination=str(scratch / f"incremental-{name}"),
            created_after=end,
            created_before=datetime.now(timezone.utc),
        ).execute({"run_id": f"incremental-{name}"})  # type: ignore[arg-type]
        requests, grants = box.api_requests(), box.grants()
        rows.append(
            (
                f"(d) incremental run, nothing new ({name}): requests",
                f"{requests} + {grants} grant",
                "<= 2 + auth",
                _ok(requests <= 2),
            )
        )
    return rows


def memory_rows(
    latency: float, sizes: tuple[int, ...], workers: int, profiles: list[str]
) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in profiles:
        peaks = {}
        for n in sizes:
            with sandbox(latency, *profile_options(name)) as box:
                box.insert(n)
                out = subprocess.check_output(  # noqa: S603
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.pull",
                        "--memory",
                        "--sandbox",
                        box.base_url,
                        "--n",
                        str(n),
                        "--max-workers",
                        str(workers),
                    ],
                    text=True,
                )
                peaks[n] = json.loads(out.strip().splitlines()[-1])["rss_peak_mib"]
        small, large = sizes
        growth = peaks[large] - peaks[small]
        rows += [
            (f"(c) peak RSS, pull of {small} docs ({name})", f"{peaks[small]:.0f} MiB", "", ""),
            (f"(c) peak RSS, pull of {large} docs ({name})", f"{peaks[large]:.0f} MiB", "", ""),
            (f"(c) growth {small} -> {large} ({name})", f"{growth:+.1f} MiB", "< 50 MiB", _ok(growth < 50)),
        ]
    return rows


def trigger_rows(latency: float, count: int) -> list[tuple[str, str, str, str]]:
    with sandbox(latency) as box:
        out = subprocess.check_output(  # noqa: S603
            [sys.executable, "-m", "benchmarks.triggers", "--sandbox", box.base_url, "--count", str(count)],
            text=True,
        )
        figures = json.loads(out.strip().splitlines()[-1])
    return [
        (
            f"(e) {count} triggers in one event loop: polls/s",
            f"{figures['polls_per_second']:.0f} "
            f"({figures['polls']} polls in {figures['seconds']:.1f} s, {figures['succeeded']} succeeded, "
            f"{figures['grants']} grant)",
            "",
            "",
        ),
        (
            "(e) longest event-loop stall",
            f"{figures['max_stall_ms']:.1f} ms",
            "< 100 ms",
            _ok(figures["max_stall_ms"] < 100),
        ),
        (
            "(e) ... leaving out stalls that overlap a full garbage collection",
            f"{figures['max_stall_outside_gc_ms']:.1f} ms ({figures['full_collections']} full collections "
            f"of the process heap, the longest {figures['max_gc_pause_ms']:.0f} ms)",
            "< 100 ms",
            _ok(figures["max_stall_outside_gc_ms"] < 100),
        ),
    ]


def capacity_rows(seconds: float) -> list[tuple[str, str, str, str]]:
    out = subprocess.check_output(  # noqa: S603
        [sys.executable, "-m", "benchmarks.sandbox_rps", "--seconds", str(seconds)], text=True
    )
    row = next(line for line in out.splitlines() if line.startswith("| GET /documents/{id} |"))
    rps = float(row.split("|")[2].replace(",", ""))
    return [
        (
            "(f) sandbox capacity, GET /documents/{id}, no latency",
            f"{rps:,.0f} requests/s",
            "> what (a) needs",
            "",
        )
    ]


def _ok(good: bool) -> str:
    return "met" if good else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N=100, small memory and trigger runs (for CI)")
    parser.add_argument("--latency", type=float, default=20.0, help="per-request latency in ms (default 20)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--profiles",
        help=f"sandbox profiles to measure the pull on (default all: {', '.join(CONTRACTS)}; "
        "--quick: pay-api,legacy)",
    )
    args = parser.parse_args()
    chosen = args.profiles or ("pay-api,legacy" if args.quick else ",".join(CONTRACTS))
    profiles = [p for p in chosen.split(",") if p]
    unknown = set(profiles) - set(CONTRACTS)
    if unknown:
        parser.error(f"unknown profiles: {', '.join(sorted(unknown))}")
    n = 100 if args.quick else args.n
    sizes = (20, 100) if args.quick else (100, 5000)
    triggers = 50 if args.quick else 1000
    scratch = Path(tempfile.mkdtemp(prefix="gini-bench-"))
    os.environ.setdefault("AIRFLOW_HOME", str(scratch / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + f" --latency {args.latency:g}"
    cores = separate_cores()
    started = time.perf_counter()
    try:
        base = baseline_rows(args.latency, n, scratch)
        rows = [
            (
                f"(a) baseline: sequential HttpHook loop, legacy profile ({mode})",
                f"{base[processed]['seconds']:.2f} s ({base[processed]['requests']} requests)",
                "",
                "",
            )
            for processed, mode in ((False, "with extractions"), (True, "with processed files"))
        ]
        for name in profiles:
            rows += pull_rows(args.latency, n, args.workers, scratch, 1 if args.quick else 3, name, base)
        rows += memory_rows(args.latency, sizes, args.workers, profiles)
        rows += trigger_rows(args.latency, triggers)
        rows += capacity_rows(1.0 if args.quick else 5.0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # (f) against (a): what our pull asked of the sandbox per second.
    table = [
        f"# Benchmarks ({'quick' if args.quick else 'full'} run)",
        "",
        f"- date: {date.today().isoformat()}",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- settings: max_workers={args.workers}, page size 100, {args.latency:g} ms latency per request",
        f"- cores: {cores}",
        f"- took {time.perf_counter() - started:.0f} s",
        "",
        "| figure | measured | goal | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    text = "\n".join(table) + "\n"
    print(text)
    if not args.quick:
        # The sections after the table (each "## ...") are measured by other commands: kept.
        keep = RESULTS.read_text().split("\n## ", 1) if RESULTS.exists() else [""]
        RESULTS.write_text(text + ("\n## " + keep[1] if len(keep) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
