"""Backfill an account's documents in shards: one mapped pull per shard, spread over the workers.

Triggered by hand. Params ``start`` and ``end`` (ISO dates or date-times, UTC without an offset)
give the window, ``shard`` how to cut it: ``"day"``, ``"week"``, or a number of equal parts.
``shard_window`` cuts it with no gap and no overlap, each shard is a task instance of its own
(``expand_kwargs``) with its own password grant and manifest, and the executor runs them where it
likes (CeleryExecutor: on any worker). ``check`` fails the run unless every shard reported and no
document is left unfinished. Explicit windows leave the watermark alone, so this runs beside
``gini_daily_pull`` into the same destination; documents already there are skipped.

At most ``MAX_PARALLEL`` shards of a run pull at once (``max_active_tis_per_dagrun``). Pulls on
one account share Gini's rate limit (each paces itself on 429s); to cap the pulls of all DAGs on
the account, put them in one Airflow pool (``pool="gini_account"`` on each pull).

The destination is the deployment's (``GINI_DESTINATION``, as in ``gini_daily_pull``), never a
run's ``conf``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.pull.fanout import shard_window

DESTINATION = os.environ.get("GINI_DESTINATION", str(Path.home() / "gini-documents"))
MAX_PARALLEL = 4

with DAG(
    dag_id="gini_backfill",
    schedule=None,
    params={
        "start": Param("2026-01-01", type="string", description="First instant of the window (ISO)"),
        "end": Param("2026-02-01", type="string", description="End of the window, exclusive (ISO)"),
        "shard": Param("week", type=["string", "integer"], description='"day", "week" or a number of parts'),
    },
    user_defined_macros={"gini_destination": DESTINATION},
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def shards(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        assert params is not None
        cut = params["shard"]
        if isinstance(cut, int) or (isinstance(cut, str) and cut.isdigit()):
            return shard_window(params["start"], params["end"], parts=int(cut))
        return shard_window(params["start"], params["end"], by=cut)

    pulls = GiniPullDocumentsOperator.partial(
        task_id="pull",
        destination="{{ gini_destination }}",
        include_processed=True,
        max_workers=8,
        max_active_tis_per_dagrun=MAX_PARALLEL,
    ).expand_kwargs(shards())

    @task
    def check(results: list[dict[str, Any]]) -> dict[str, Any]:
        """Every shard's counts, summed; fails if a shard left documents unfinished."""
        results = list(results)
        totals = {k: sum(r[k] for r in results) for k in ("pulled", "skipped", "errored", "gone")}
        unfinished = [i for r in results for i in r["unfinished"]]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} document(s) unfinished, e.g. {unfinished[:5]}")
        return {"shards": len(results), **totals}

    check(pulls.output)
