"""Upload an invoice, wait for Gini to process it, create a payment request from its
extractions, and wait (in the triggerer) until the payer's bank has paid it.

Params: ``file`` (a path or object-storage URL; by default a sample invoice shipped beside this
DAG) and ``payment_provider`` (the id of the payer's payment provider: ``GET /paymentProviders``
lists them; the default is one of the Gini sandbox's).

**Sandbox only:** against real Gini the payer's banking app pays the request, and the DAG waits
for that (up to 7 days). The Gini sandbox has no payer, so with ``sandbox_payer`` on (the
default, for the demo) the task ``sandbox_payer`` plays one: it resolves the request through
Gini's Bank API route ``POST /paymentRequests/{id}/payment``, as a banking app would. Turn the
param off, or delete the task, when the connection points at Gini.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator
from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator
from airflow_provider_gini.sensors.payments import GiniPaymentRequestSensor

SAMPLE = Path(__file__).parent / "sample_documents" / "rechnung-sample-1.pdf"
SANDBOX_BANK = "b09ef70a-490f-11eb-952e-9bc6f4646c57"  # "Sandbox Bank", a provider of the sandbox's

with DAG(
    dag_id="gini_payment_request",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "file": Param(str(SAMPLE), type="string", description="The invoice to upload"),
        "payment_provider": Param(
            SANDBOX_BANK, type="string", description="GET /paymentProviders lists them"
        ),
        "sandbox_payer": Param(
            True, type="boolean", description="Sandbox only: pay the request as the payer's bank would"
        ),
    },
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
    # Recipient, IBAN, BIC, amount and purpose from the invoice's extractions, checked first.
    create = GiniCreatePaymentRequestOperator(
        task_id="create_payment_request",
        document_id=upload.output,
        payment_provider="{{ params.payment_provider }}",
    )

    @task
    def sandbox_payer(payment_request_id: str) -> None:
        """SANDBOX ONLY: pays the request as the payer's banking app would. Against real Gini the
        payer does this; set the param ``sandbox_payer`` to false (or delete this task)."""
        if not get_current_context()["params"]["sandbox_payer"]:
            logging.getLogger(__name__).info("sandbox_payer is off: the payer's bank is to pay the request")
            return
        hook = GiniHook()
        request = hook.get_payment_request(payment_request_id)
        hook.resolve_payment_request(
            payment_request_id,
            recipient=request["recipient"],
            iban=request["iban"],
            bic=request.get("bic"),
            amount=request["amount"],
            purpose=request["purpose"],
        )

    paid = GiniPaymentRequestSensor(
        task_id="wait_until_paid",
        payment_request_id=create.output,
        deferrable=True,
        poke_interval=60,
        timeout=7 * 24 * 3600,
    )
    sandbox_payer(create.output) >> paid
