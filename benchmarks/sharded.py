"""A sharded backfill on the two-worker CeleryExecutor deployment against the same window in one
task, in one DAG run (issue 16).

    python -m benchmarks.sharded [--per-day 500] [--latency 20]

Runs ``tests/executors/test_celery_executor.py`` (PostgreSQL, Redis, scheduler, dag-processor,
api-server, triggerer and two Celery workers of concurrency 2, with the sandbox in the test
process): 10 daily shards of ``--per-day`` documents each, then the same window in one task,
both with max_workers=4. Documents/s of each come from the task instances' start and end in the
metadata DB. Writes the "Sharded backfill" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from benchmarks.harness import write_section

SECTION = "## Sharded backfill on CeleryExecutor (issue 16)"
TEST = "tests/executors/test_celery_executor.py"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-day", type=int, default=500, help="documents per daily shard (10 shards)")
    parser.add_argument("--latency", type=float, default=20.0, help="ms per API request at the sandbox")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gini-bench-sharded-") as scratch:
        figures_file = Path(scratch) / "figures.json"
        env = {
            **os.environ,
            "GINI_CELERY_FIGURES": str(figures_file),
            "GINI_CELERY_PER_DAY": str(args.per_day),
            "GINI_CELERY_LATENCY_MS": str(args.latency),
        }
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
            env=env,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        f = json.loads(figures_file.read_text())
    command = f"python -m benchmarks.sharded --per-day {args.per_day} --latency {args.latency:g}"
    ratio = f["sharded_docs_per_second"] / f["single_docs_per_second"]
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` ({date.today().isoformat()}). One DAG run on the deployment of `{TEST}` "
            "(PostgreSQL, Redis, scheduler, dag-processor, api-server, triggerer, two Celery workers with "
            "`--concurrency 2`, all on this 2-core machine, with the sandbox in the test process and "
            f"{args.latency:g} ms of latency per API request): the window in daily shards spread over "
            "both workers, then the same window in one task (both `max_workers=4`, page size 250, "
            "extractions only).",
            "",
            "| run | documents | shards | seconds | documents/s |",
            "|---|---:|---:|---:|---:|",
            f"| sharded, {f['shards_per_worker']} | {f['documents']} | {f['shards']} "
            f"| {f['sharded_seconds']:.1f} | {f['sharded_docs_per_second']:.0f} |",
            f"| one task | {f['documents']} | 1 | {f['single_seconds']:.1f} "
            f"| {f['single_docs_per_second']:.0f} |",
            "",
            f"Sharded vs one task: {ratio:.2f}x. Deployment start-up (servers, migration, six Airflow "
            f"processes, both workers consuming): {f['deployment_ready_seconds']:.0f} s.",
            "",
        ]
    )
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
