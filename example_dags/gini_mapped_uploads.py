"""Dynamic task mapping: one upload task per file, then the key extractions of each.

Param ``files``: a list of paths or object-storage URLs; by default the sample documents
shipped beside this DAG.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_gini.operators.documents import GiniGetExtractionsOperator, GiniUploadDocumentOperator

SAMPLES = sorted(str(p) for p in (Path(__file__).parent / "sample_documents").glob("*.pdf"))

with DAG(
    dag_id="gini_mapped_uploads",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={"files": Param(SAMPLES, type="array", description="Documents to upload")},
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def files(**context: Any) -> list[str]:
        return list(context["params"]["files"])

    uploads = GiniUploadDocumentOperator.partial(
        task_id="upload", wait_for_processing=True, deferrable=False, poll_interval=1
    ).expand(file=files())
    extractions = GiniGetExtractionsOperator.partial(task_id="extractions", flatten=True).expand(
        document_id=uploads.output
    )

    @task
    def report(values: list[dict[str, Any]]) -> list[str]:
        lines = [f"{v.get('amountToPay')} to {v.get('paymentRecipient')} ({v.get('iban')})" for v in values]
        for line in lines:
            print(line)
        return lines

    report(extractions.output)
