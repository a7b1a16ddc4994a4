"""Upload two pages as one composite document, with upload metadata, wait (deferrably) until
Gini has processed it, and read its extractions.

Params ``invoice`` and ``slip``: the pages (paths or object-storage URLs), by default an invoice
and a remittance slip shipped beside this DAG; ``slip_rotation``: how far Gini should turn the
second page (a multiple of 90 degrees). Each page is uploaded as a partial document, then one
composite document is made of them in this order; the upload returns the composite's id. A
retry adopts the partials and the composite it can prove it made and uploads only the rest.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_provider_gini.operators.documents import GiniGetExtractionsOperator, GiniUploadDocumentOperator

SAMPLES = Path(__file__).parent / "sample_documents"

with DAG(
    dag_id="gini_composite_upload",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "invoice": Param(str(SAMPLES / "rechnung-sample-1.pdf"), type="string", description="Page 1"),
        "slip": Param(str(SAMPLES / "zahlschein-sample-2.pdf"), type="string", description="Page 2"),
        "slip_rotation": Param(0, type="integer", multipleOf=90, description="Turn page 2 by"),
        "branch": Param("10020030", type="string", description="Sent as the BranchId metadata"),
    },
    # So that the rotation renders as a number (and the branch too: metadata takes integers).
    render_template_as_native_obj=True,
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:
    upload = GiniUploadDocumentOperator(
        task_id="upload",
        files=["{{ params.invoice }}", "{{ params.slip }}"],
        rotations=[0, "{{ params.slip_rotation }}"],
        filename="invoice-with-slip.pdf",
        doctype="Invoice",
        # Sent as X-Document-Metadata-* headers with every upload, for Gini's reporting.
        metadata={"Upload": "{{ dag.dag_id }}", "BranchId": "{{ params.branch }}"},
        wait_for_processing=True,
        deferrable=True,
        poll_interval=1,
    )
    extractions = GiniGetExtractionsOperator(task_id="extractions", document_id=upload.output, flatten=True)
