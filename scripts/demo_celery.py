"""The demo on a CeleryExecutor deployment: PostgreSQL, Redis, scheduler, dag-processor,
api-server, triggerer and two Celery workers, all on loopback (tests/celery_deployment.py).

Called by ``scripts/demo.sh --executor celery``. gini_daily_pull catches up over the sandbox's
seeded days, as in the plain demo, but scheduled; then gini_backfill pulls the same days again
in daily shards, spread over both workers, and the demo prints which worker ran which shard.
Everything lives under .demo/celery; the servers are stopped and their data removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from demo import print_summary  # noqa: E402  (scripts/demo.py: the plain demo's summary)

from airflow_provider_gini.sandbox import SandboxConfig, run_sandbox  # noqa: E402
from tests.celery_deployment import celery_deployment  # noqa: E402
from tests.deployment import Deployment  # noqa: E402
from tests.servers import postgres_cluster  # noqa: E402

UTC = timezone.utc
DEMO = ROOT / ".demo" / "celery"


def daily_pull_source(first: datetime, last: datetime) -> str:
    """gini_daily_pull, catching up from ``first`` to ``last`` only (not to today)."""
    source = (ROOT / "example_dags" / "gini_daily_pull.py").read_text()
    start = "start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),"
    assert start in source
    dates = f"start_date=datetime.fromisoformat({first.isoformat()!r}), "
    return source.replace(start, dates + f"end_date=datetime.fromisoformat({last.isoformat()!r}),")


def main() -> int:
    config = SandboxConfig()
    destination = Path(os.environ.get("GINI_DESTINATION", ROOT / ".demo" / "documents"))
    shutil.rmtree(DEMO, ignore_errors=True)
    home = DEMO / "airflow-home"
    (home / "dags").mkdir(parents=True)
    first = datetime.combine(config.seed_start, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    last = first + timedelta(days=config.seed_days - 1)
    (home / "dags" / "gini_daily_pull.py").write_text(daily_pull_source(first, last))
    shutil.copy(ROOT / "example_dags" / "gini_backfill.py", home / "dags" / "gini_backfill.py")
    began = time.monotonic()
    with run_sandbox(config) as sandbox, postgres_cluster() as pg:
        print(f"Gini sandbox serving at {sandbox.base_url}; PostgreSQL on 127.0.0.1:{pg.port}")
        print("Starting Redis, scheduler, dag-processor, api-server, triggerer and two Celery workers ...")
        env = {**sandbox.connection_env(), "GINI_DESTINATION": str(destination)}
        with celery_deployment(home, pg, env) as deployment:
            print(f"  ready in {time.monotonic() - began:.0f} s (logs in {home})")
            print(f"  gini_daily_pull catching up over {config.seed_days} seeded days ...", flush=True)
            runs = deployment.wait_for(
                "the daily runs", lambda: finished(deployment, "gini_daily_pull", config.seed_days), 900
            )
            rows = []
            for run_id, state, logical_date in runs:
                result = xcom(deployment, "gini_daily_pull", run_id, "pull_documents")
                rows.append((logical_date, state, manifest(result)))
            start = config.seed_start.isoformat()
            end = (config.seed_start + timedelta(days=config.seed_days)).isoformat()
            print(f"  gini_backfill over [{start}, {end}) in daily shards ...", flush=True)
            conf = json.dumps({"start": start, "end": end, "shard": "day"})
            triggered = deployment.airflow("dags", "trigger", "gini_backfill", "--conf", conf, timeout=300)
            if triggered.returncode != 0:
                print(triggered.stdout + triggered.stderr, file=sys.stderr)
                return 1
            [(backfill_run, backfill_state, _)] = deployment.wait_for(
                "the backfill", lambda: finished(deployment, "gini_backfill", 1), 900
            )
            shards = deployment.query(
                "SELECT map_index, hostname, state FROM task_instance WHERE dag_id = 'gini_backfill' "
                "AND task_id = 'pull' AND run_id = ? ORDER BY map_index",
                backfill_run,
            )
            results = {m: xcom(deployment, "gini_backfill", backfill_run, "pull", m) for m, _, _ in shards}
        grants = sandbox.counters()["grants"]
    print_summary(rows, destination, grants, home / "logs")
    print()
    print(f"gini_backfill ({backfill_state}): which worker ran which shard")
    print(f"  {'shard':<6} {'window':<44} {'worker':<15} {'pulled':>6} {'skipped':>7}")
    for map_index, hostname, state in shards:
        result = results.get(map_index) or {}
        window = " .. ".join(str(w)[:16] for w in result.get("window", []))
        print(
            f"  {map_index:<6} {window:<44} {hostname or '?':<15} {result.get('pulled', '-'):>6} "
            f"{result.get('skipped', '-'):>7}  {state}"
        )
    ok = all(state == "success" for _, state, _ in rows) and backfill_state == "success"
    return 0 if ok else 1


def finished(deployment: Deployment, dag_id: str, count: int) -> list[tuple[str, str, datetime]] | None:
    rows = deployment.query(
        "SELECT run_id, state, logical_date FROM dag_run WHERE dag_id = ? ORDER BY logical_date", dag_id
    )
    done = [r for r in rows if r[1] in ("success", "failed")]
    return [(str(a), str(b), c) for a, b, c in done] if len(done) >= count else None


def xcom(deployment: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    rows = deployment.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? "
        "AND key = 'return_value'",
        dag_id, run_id, task_id, map_index,
    )  # fmt: skip
    return json.loads(rows[0][0]) if rows else None


def manifest(result: Any) -> list[dict[str, Any]]:
    if not isinstance(result, dict) or not result.get("manifest"):
        return []
    path = Path(str(result["manifest"]).removeprefix("file://"))
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


if __name__ == "__main__":
    import signal

    from _pytest.outcomes import OutcomeException  # the harness says "skip"/"fail" with pytest's outcomes

    # A closed terminal or a kill: stop the servers and components on the way out, as Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))

    try:
        sys.exit(main())
    except (OutcomeException, subprocess.SubprocessError, RuntimeError) as exc:
        print(f"The Celery demo could not run: {exc}", file=sys.stderr)
        sys.exit(1)
