"""Runs gini_daily_pull against a local Gini sandbox for each seeded day and prints a summary.

Called by scripts/demo.sh, which prepares the venv and AIRFLOW_HOME. Airflow's own log lines
go to .demo/airflow.log so the summary stays readable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / ".demo" / "airflow.log"


@contextmanager
def quiet() -> Any:
    """Send everything Airflow prints to the demo log file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with LOG.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def main() -> int:
    from airflow_provider_gini.sandbox import SandboxConfig, run_sandbox

    config = SandboxConfig()
    destination = Path(os.environ.get("GINI_DESTINATION", ROOT / ".demo" / "documents"))
    # The DAG takes its destination from this variable where it is parsed, not from a run's conf.
    os.environ["GINI_DESTINATION"] = str(destination)
    # Each demo shows every day's window: the watermark of an earlier demo would make every run
    # "nothing new" (the documents it stored are skipped, not fetched again).
    shutil.rmtree(destination / "_state", ignore_errors=True)
    with run_sandbox(config) as sandbox:
        os.environ.update(sandbox.connection_env())
        seeded = f"seeded {config.seed_days} days from {config.seed_start}"
        print(f"Gini sandbox serving at {sandbox.base_url} ({seeded})")
        with quiet():
            from airflow.dag_processing.dagbag import DagBag

            dag = DagBag(str(ROOT / "example_dags")).get_dag("gini_daily_pull")
        first = datetime.combine(config.seed_start, datetime.min.time(), tzinfo=timezone.utc) + timedelta(
            days=1
        )
        rows = []
        for n in range(config.seed_days):
            logical_date = first + timedelta(days=n)
            print(f"  running gini_daily_pull for {logical_date:%Y-%m-%d} ...", flush=True)
            with quiet():
                dag_run = dag.test(logical_date=logical_date)
            rows.append((logical_date, dag_run.state, latest_manifest(destination, dag_run.run_id)))
        grants = sandbox.counters()["grants"]
    print_summary(rows, destination, grants)
    return 0 if all(state == "success" for _, state, _ in rows) else 1


def latest_manifest(destination: Path, run_id: str) -> list[dict[str, Any]]:
    manifests = sorted((destination / "_manifests").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    return [json.loads(line) for line in manifests[-1].read_text().splitlines()] if manifests else []


def print_summary(
    rows: list[tuple[datetime, str, list[dict[str, Any]]]], destination: Path, grants: Any, log: Path = LOG
) -> None:
    print()
    print("Runs of gini_daily_pull")
    header = f"{'run':<12} {'state':<8} {'documents created':<26} {'pulled':>6} {'errored':>7}"
    print(f"  {header} {'total to pay':>14}")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for logical_date, state, lines in rows:
        amount = Decimal(0)
        dates = sorted(line["creationDate"] for line in lines if line.get("creationDate"))
        span = "-"
        if dates:
            span = f"{datetime.fromtimestamp(dates[0] / 1000, timezone.utc):%m-%d %H:%M}" + (
                f" .. {datetime.fromtimestamp(dates[-1] / 1000, timezone.utc):%m-%d %H:%M}"
            )
        for line in lines:
            if line.get("amountToPay"):
                value = Decimal(line["amountToPay"].split(":")[0])
                amount += value
                totals[line.get("paymentRecipient") or "?"] += value
        pulled = sum(line["outcome"] == "pulled" for line in lines)
        errored = sum(line["outcome"] == "errored" for line in lines)
        row = f"{logical_date:%Y-%m-%d}   {state!s:<8} {span:<26} {pulled:>6} {errored:>7}"
        print(f"  {row} {amount:>10.2f} EUR")
    print()
    print("Amounts to pay per recipient (all runs)")
    for recipient, total in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {total:>10.2f} EUR  {recipient}")
    documents = [p for p in destination.iterdir() if p.is_dir() and not p.name.startswith("_")]
    example = sorted(documents)[0] if documents else None
    print()
    print(f"Token grants for all runs: {dict(grants)}")
    print(f"Files: {destination}")
    if example:
        names = ", ".join(sorted(p.name for p in example.iterdir()))
        print(f"  {len(documents)} document folders, e.g. {example.name}/: {names}")
    print(f"  manifests (JSON Lines, one per run): {destination / '_manifests'}")
    print(f"  Airflow's log of these runs: {log}")


if __name__ == "__main__":
    sys.exit(main())
