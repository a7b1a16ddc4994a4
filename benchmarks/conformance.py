"""The pull's completeness on every paging contract: for each sandbox profile and reading of the
sources, and for the replay of Gini's recorded shapes (tests/contract), the documents the window
holds by the server's own count, the documents the pull operator pulled, and what it asked.

    python -m benchmarks.conformance [--page-size 40]

Each sandbox window holds 650 documents: 630 a little apart and 20 sharing one millisecond,
with 30 documents on either side of the window. The replay serves 640, every 40th sharing its
predecessor's millisecond. No latency is injected: these are counts, not timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_gini.sandbox.config import CONTRACTS, ApiProfile, profile

START = 1_767_225_600_000  # 2026-01-01
END = START + 500_000
# Beside the sandbox's CONTRACTS: the other readings of Gini's sources it can emulate.
OTHER_READINGS: dict[str, ApiProfile] = {
    "pay-api, pages capped at 25": profile("pay-api", page_cap=25),
    "legacy, offset sent as next": profile("legacy", offset_param="next"),
    "pay-api with totalCount, descending": profile("pay-api", total_count=True, order="descending"),
}


def pull(conn_id: str, destination: Path, page_size: int, window: bool) -> dict[str, Any]:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, timezone.utc)

    # Without a window: every document the server holds, up to now.
    bounds = (
        {"created_after": at(START), "created_before": at(END)}
        if window
        else {"full_history": True, "created_before": datetime.now(timezone.utc)}
    )
    operator = GiniPullDocumentsOperator(
        task_id="pull",
        gini_conn_id=conn_id,
        destination=str(destination),
        **bounds,
        page_size=page_size,
        max_workers=8,
    )
    return dict(operator.execute({"run_id": f"conformance_{conn_id}"}))  # type: ignore[arg-type]


def sandbox_row(name: str, api: ApiProfile, page_size: int, scratch: Path) -> tuple[Any, ...]:
    from airflow_provider_gini.sandbox import SandboxConfig, run_sandbox

    config = SandboxConfig(seed=False, api=api)
    with run_sandbox(config) as box:
        box.insert_documents(count=30, creationDate=START - 30_000, spacingMs=1000)
        box.insert_documents(count=630, creationDate=START, spacingMs=700)
        box.insert_documents(count=20, creationDate=START + 200_000, spacingMs=0)
        box.insert_documents(count=30, creationDate=END, spacingMs=1000)
        os.environ.update(box.connection_env("gini_conformance"))
        box.user_token()
        box.reset_counters()
        result = pull("gini_conformance", scratch / name, page_size, window=True)
        routes = box.counters()["routes"]
        served = len(box.documents(created_after=START, created_before=END))
    lists = routes.get("GET /documents", 0)
    requests = sum(n for route, n in routes.items() if route != "POST /oauth/token")
    return name, served, result["pulled"], lists, requests / max(result["pulled"], 1)


def replay_row(contract: str, page_size: int, scratch: Path) -> tuple[Any, ...]:
    from tests.contract.replay import Replay, connection, running

    with running(Replay(contract=contract, token="token-without-type")) as replay:
        os.environ["AIRFLOW_CONN_GINI_REPLAY"] = json.dumps(connection(replay))
        result = pull("gini_replay", scratch / f"replay-{contract}", page_size, window=False)
    asked = [line for line in replay.log if not line.startswith("POST /oauth/")]
    lists = sum(line.startswith("GET /documents?") or line == "GET /documents" for line in asked)
    return (
        f"replay of Gini's shapes, {contract}",
        replay.count,
        result["pulled"],
        lists,
        len(asked) / result["pulled"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--page-size", type=int, default=40)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="gini-conformance-"))
    os.environ.setdefault("AIRFLOW_HOME", str(scratch / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    readings = {**CONTRACTS, **OTHER_READINGS}
    rows = [sandbox_row(name, api, args.page_size, scratch) for name, api in readings.items()]
    rows += [replay_row(contract, args.page_size, scratch) for contract in ("pay-api", "legacy")]
    print(f"page size {args.page_size}, with extractions\n")
    print(
        "| server | documents served (the server's count) | pulled | list requests | requests per document |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, served, pulled, lists, per_doc in rows:
        print(f"| {name} | {served} | {pulled} | {lists} | {per_doc:.3f} |")
    return 0 if all(served == pulled for _, served, pulled, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
