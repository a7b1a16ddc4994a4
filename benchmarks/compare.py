"""The pull of this checkout against the pull of an earlier commit, in one run on one machine.

    python -m benchmarks.compare --ref 81988c9 [--rounds 3] [--n 1000] [--latency 20]

Each round pulls N documents with extractions once with the earlier commit's client on its own
sandbox (as that commit served it), then with this checkout's client on each sandbox profile;
the figures are the medians over the rounds, so both sides see the same machine. The earlier
commit runs from a temporary git worktree: its ``benchmarks.pull --memory`` child (which pulls N
documents in a fresh process and prints its figures) and its sandbox, from that tree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import PROFILES, sandbox, separate_cores
from benchmarks.pull import list_pages

ROOT = Path(__file__).parents[1]


def pull_child(base_url: str, n: int, workers: int, cwd: Path) -> dict[str, Any]:
    out = subprocess.check_output(  # noqa: S603
        [
            sys.executable,
            "-m",
            "benchmarks.pull",
            "--memory",
            "--sandbox",
            base_url,
            "--n",
            str(n),
            "--max-workers",
            str(workers),
        ],
        cwd=cwd,
        text=True,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure(cwd: Path, options: tuple[str, ...], n: int, latency: float, workers: int) -> dict[str, Any]:
    with sandbox(latency, *options, cwd=str(cwd)) as box:
        box.insert(n)
        return pull_child(box.base_url, n, workers, cwd)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    cores = separate_cores()
    old = Path(tempfile.mkdtemp(prefix="gini-bench-ref-")) / "tree"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(old), args.ref], check=True, capture_output=True)  # noqa: S603
    runs: dict[str, list[dict[str, Any]]] = {args.ref: [], **{name: [] for name in PROFILES}}
    try:
        for _ in range(args.rounds):
            runs[args.ref].append(measure(old, (), args.n, args.latency, args.workers))
            for name, options in PROFILES.items():
                runs[name].append(measure(ROOT, options, args.n, args.latency, args.workers))
    finally:
        subprocess.run([*git, "remove", "--force", str(old)], check=False)  # noqa: S603
    before = sorted(r["seconds"] for r in runs[args.ref])[args.rounds // 2]
    print(
        f"# {args.n} documents with extractions, {args.latency:g} ms latency, max_workers={args.workers}, "
        f"median of {args.rounds} interleaved rounds; {cores}\n"
    )
    print(
        "| client and sandbox | seconds | docs/s | client CPU per document | requests per document | "
        "list pages (minimum) | vs before |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        mid = sorted(results, key=lambda r: r["seconds"])[args.rounds // 2]
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
