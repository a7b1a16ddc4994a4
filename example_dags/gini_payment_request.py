"""Upload an invoice, wait for Gini to process it, create a payment request from its
extractions, and wait (in the triggerer) until the payer's bank has paid it.

Params: ``file`` (a path or object-storage URL; by default a sample invoice shipped beside this
DAG) and ``payment_provider`` (the id of the payer's payment provider: ``GET /paymentProviders``
lists them; the default is one of the Gini sandbox's).

**Sandbox only:** against real Gini the payer's banking app pays the request, and the DAG waits
for that (up to 7 days). The Gini sandbox has no payer, so the task ``sandbox_payer`` plays one:
it resolves the request through Gini's Bank API route ``POST /paymentRequests/{id}/payment``, as
a banking app would. The param ``sandbox_payer`` decides: unset (the default), it pays only when
the connection points at a sandbox on this machine (its API host is loopback), never at Gini;
true pays wherever the connection points; false never pays.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

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
            None,
            type=["null", "boolean"],
            description="Pay the request as the payer's bank would: unset, only against a loopback sandbox",
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

    def on_loopback(hook: GiniHook) -> bool:
        """Whether the connection's API is on this machine (a sandbox), not Gini."""
        host = urlsplit(hook.settings().api_url).hostname or ""
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @task
    def sandbox_payer(payment_request_id: str) -> None:
        """SANDBOX ONLY: pays the request as the payer's banking app would. Against real Gini the
        payer does this: unless the param ``sandbox_payer`` is true, it pays only when the
        connection points at a loopback sandbox."""
        hook = GiniHook()
        wanted = get_current_context()["params"]["sandbox_payer"]
        if not (wanted if wanted is not None else on_loopback(hook)):
            logging.getLogger(__name__).info(
                "sandbox_payer: not paying (the param is false, or the connection is not a local "
                "sandbox): the payer's bank is to pay the request"
            )
            return
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
