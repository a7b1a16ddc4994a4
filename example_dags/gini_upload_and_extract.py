"""Upload documents, wait for Gini to process them (deferrably), read the extractions, and
confirm them with feedback.

Param ``files``: paths or object-storage URLs; by default the sample documents shipped beside
this DAG. Waiting happens in the triggerer, so no worker slot is held meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_gini.operators.documents import (
    GiniGetExtractionsOperator,
    GiniSendFeedbackOperator,
    GiniUploadDocumentOperator,
)

SAMPLE = Path(__file__).parent / "sample_documents" / "rechnung-sample-1.pdf"

with DAG(
    dag_id="gini_upload_and_extract",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={"file": Param(str(SAMPLE), type="string", description="The document to upload")},
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:
    upload = GiniUploadDocumentOperator(
        task_id="upload",
        file="{{ params.file }}",
        doctype="Invoice",
        wait_for_processing=True,
        deferrable=True,
        poll_interval=1,
    )
    extractions = GiniGetExtractionsOperator(task_id="extractions", document_id=upload.output)

    @task
    def confirmed(extractions: dict[str, Any]) -> dict[str, Any]:
        """Feedback that confirms the key extractions as Gini found them."""
        found = extractions.get("extractions", {})
        keys = ("amountToPay", "iban", "bic", "paymentRecipient", "paymentReference")
        return {key: {"value": found[key]["value"]} for key in keys if key in found}

    feedback = GiniSendFeedbackOperator(
        task_id="feedback", document_id=upload.output, extractions=confirmed(extractions.output)
    )
