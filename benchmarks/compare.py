"""The pull of this checkout against the pull of an earlier commit, in one run on one machine.

    python -m benchmarks.compare --ref 81988c9 [--rounds 3] [--n 1000] [--latency 20]

Each round pulls N documents with extractions with the earlier commit's client on its own
sandbox (as that commit served it), then with this checkout's client on each sandbox profile:
each in a child process of its own checkout, one pull to warm up and ``--runs`` measured. The
figures are medians over all measured pulls, so both sides see the same machine. The earlier
commit runs from a temporary git worktree (its package, its ``benchmarks.pull.ours``, its
sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_gini.sandbox.config import CONTRACTS
from benchmarks.harness import profile_options, sandbox, separate_cores
from benchmarks.pull import list_pages

ROOT = Path(__file__).parents[1]


# Run in the checkout being measured (its own benchmarks.pull and package): one pull to warm up
# (imports, the first connection), then the measured ones, in one process, as in a running worker.
CHILD = """
import json, sys, tempfile
from pathlib import Path
from benchmarks.harness import Sandbox
from benchmarks.pull import ours
box, n, workers, runs = Sandbox(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ours(box, n, False, workers, Path(tempfile.mkdtemp()))
for _ in range(runs):
    r = ours(box, n, False, workers, Path(tempfile.mkdtemp()))
    print(json.dumps({k: r[k] for k in ("seconds", "cpu", "requests", "grants")}))
"""


def measure(
    cwd: Path, options: tuple[str, ...], n: int, latency: float, workers: int, runs: int
) -> list[dict[str, Any]]:
    with sandbox(latency, *options, cwd=str(cwd)) as box:
        box.insert(n)
        out = subprocess.check_output(  # noqa: S603
            [sys.executable, "-c", CHILD, box.base_url, str(n), str(workers), str(runs)], cwd=cwd, text=True
        )
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of earlier commit, then each profile")
    parser.add_argument("--runs", type=int, default=3, help="measured pulls per round, after one to warm up")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    cores = separate_cores()
    scratch = Path(tempfile.mkdtemp(prefix="gini-bench-ref-"))
    os.environ.setdefault("AIRFLOW_HOME", str(scratch / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    old = scratch / "tree"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(old), args.ref], check=True, capture_output=True)  # noqa: S603
    runs: dict[str, list[dict[str, Any]]] = {args.ref: [], **{name: [] for name in CONTRACTS}}
    try:
        for _ in range(args.rounds):
            runs[args.ref] += measure(old, (), args.n, args.latency, args.workers, args.runs)
            for name in CONTRACTS:
                runs[name] += measure(
                    ROOT, profile_options(name), args.n, args.latency, args.workers, args.runs
                )
    finally:
        subprocess.run([*git, "remove", "--force", str(old)], check=False)  # noqa: S603
    count = args.rounds * args.runs
    before = sorted(r["seconds"] for r in runs[args.ref])[count // 2]
    print(
        f"# {args.n} documents with extractions, {args.latency:g} ms latency, max_workers={args.workers}, "
        f"median of {count} warm pulls in {args.rounds} interleaved rounds; {cores}\n"
    )
    print(
        "| client and sandbox | seconds | docs/s | client CPU per document | requests per document | "
        "list pages (minimum) | vs before |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        mid = sorted(results, key=lambda r: r["seconds"])[count // 2]
        label = f"before ({args.ref}, its own sandbox)" if name == args.ref else f"now, {name}"
        pages = mid["requests"] - args.n
        contract = "offset" if name.startswith("legacy") else "cursor"
        minimum = "" if name == args.ref else f" ({list_pages(args.n, contract)})"
        print(
            f"| {label} | {mid['seconds']:.2f} | {args.n / mid['seconds']:.0f} | "
            f"{mid['cpu'] / args.n * 1000:.2f} ms | {mid['requests'] / args.n:.3f} | {pages}{minimum} | "
            f"{before / mid['seconds']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
