"""Pull each day's Gini documents and their extractions, then total the amounts per recipient.

Scheduled ``@daily`` with catch-up: every run pulls the documents created since the watermark,
how far earlier pulls into the destination got completely (see GiniPullDocumentsOperator's
window), up to the run's end. The first run pulls the account's whole history. Catch-up,
backfill, manual and asset-triggered runs so cover every instant once, also after a failed
pull. ``max_active_runs=1`` keeps runs in order.

The destination is the deployment's choice, not the triggering user's: the environment
variable ``GINI_DESTINATION`` of the DAG processor and workers (a local folder, or any
ObjectStoragePath URL such as s3://bucket/gini), ``~/gini-documents`` without it. A run's
``conf`` cannot change it: whoever may trigger a run could otherwise write the account's
invoices anywhere the worker can. Param ``include_processed``: also download the processed files.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

# Read where the DAG is parsed, never from params or conf (see above).
DESTINATION = os.environ.get("GINI_DESTINATION", str(Path.home() / "gini-documents"))

with DAG(
    dag_id="gini_daily_pull",
    schedule="@daily",
    start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=1,
    params={
        "include_processed": Param(False, type="boolean", description="Also download the processed files"),
    },
    # A macro, not a param: set here, where the DAG is parsed, and no run's conf reaches it. As a
    # template the destination is the pull's outlet through an alias, attached on the worker;
    # a literal path would be an Asset that Airflow 3.0's dag.test() has not registered.
    user_defined_macros={"gini_destination": DESTINATION},
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:
    pull = GiniPullDocumentsOperator(
        task_id="pull_documents",
        destination="{{ gini_destination }}",
        include_processed="{{ params.include_processed }}",
        full_history=True,
        max_workers=8,
    )

    @task
    def summarise(result: dict[str, Any]) -> dict[str, Any]:
        """Amounts to pay per recipient, from the run's manifest."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        currencies: dict[str, str] = {}
        with ObjectStoragePath(result["manifest"]).open("r") as manifest:
            # Not `for raw in manifest`: Airflow 3.0's file wrapper cannot be iterated.
            for raw in iter(manifest.readline, ""):
                line = json.loads(raw)
                amount = line.get("amountToPay")
                if line["outcome"] not in ("pulled", "skipped") or not amount or ":" not in amount:
                    continue
                value, currency = amount.split(":", 1)
                recipient = line.get("paymentRecipient") or "(unknown recipient)"
                try:
                    totals[recipient] += Decimal(value)
                except InvalidOperation:
                    continue
                currencies[recipient] = currency
        for recipient, total in sorted(totals.items(), key=lambda item: -item[1]):
            print(f"{total:>12.2f} {currencies[recipient]}  {recipient}")
        counts = {k: result[k] for k in ("pulled", "skipped", "errored", "pending", "gone", "failed")}
        return {
            "window": result["window"],
            "counts": counts,
            "totals": {
                recipient: f"{total:.2f}:{currencies[recipient]}" for recipient, total in totals.items()
            },
        }

    summarise(pull.output)
