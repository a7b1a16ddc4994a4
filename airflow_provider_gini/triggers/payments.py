"""GiniPaymentRequestTrigger: waits in the triggerer until a payment request is paid or invalid.

The wait is triggers/documents.py's PollingTrigger (a thread of its own per trigger, the
admission gate, hooks shared per connection, the timeout on the triggerer's clock), polling
``GET /paymentRequests/{id}``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_gini.client.errors import shown
from airflow_provider_gini.triggers.documents import PollingTrigger

# Gini's statuses of a payment request (docs/gini-compat.md): open until a payer's bank
# resolves it (paid), or it is invalid. Any other value is waited for like open, with a warning.
PAID, INVALID, OPEN = "paid", "invalid", "open"
log = logging.getLogger(__name__)


def payment_request_result(payment_request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a finished wait returns: Gini's body with the id (a payment request carries no
    credential: names, IBAN, amount, purpose, status and links)."""
    return {"id": payment_request_id, **body}


class GiniPaymentRequestTrigger(PollingTrigger):
    """Fires ``{"status": "success"|"failed"|"timeout"|"error", "payment_request_id",
    "payment_status", "payment_request", "message", "terminal"}``: ``success`` when the request
    is paid (``payment_request`` is then its body with its id), ``failed`` when it is invalid.

    ``timeout`` (seconds, on the triggerer's clock from when it starts running), ``end_time``
    (epoch seconds) and ``hook_params`` (plain values) as for PollingTrigger.
    """

    def __init__(self, *, payment_request_id: str, poll_interval: float = 60.0, **wait: Any) -> None:
        # ``wait``: gini_conn_id, timeout, end_time, hook_params (PollingTrigger's).
        super().__init__(poll_interval=poll_interval, **wait)
        self.payment_request_id = payment_request_id
        self._warned: str | None = None  # the undocumented status last warned of

    def _identity(self) -> dict[str, Any]:
        return {"payment_request_id": self.payment_request_id}

    def _subject(self) -> str:
        return f"payment request {self.payment_request_id}"

    def _check(self, hook: Any) -> tuple[TriggerEvent | None, str]:
        request_id = self.payment_request_id
        body = hook.get_payment_request(request_id)
        status = body.get("status")
        if status == PAID:
            return self._event("success", PAID, f"Payment request {request_id} is paid", body=body), PAID
        if status == INVALID:
            message = f"Payment request {request_id} is invalid: it will not be paid"
            return self._event("failed", INVALID, message), INVALID
        seen = shown(str(status), 40)
        if status != OPEN and seen != self._warned:
            self._warned = seen
            log.warning(
                "Payment request %s has status %r, which Gini does not document; waiting for paid "
                "or invalid as for open",
                request_id,
                seen,
            )
        return None, seen

    def _event(
        self,
        status: str,
        seen: str | None,
        message: str,
        terminal: bool = False,
        body: dict[str, Any] | None = None,
    ) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "payment_request_id": self.payment_request_id,
                "payment_status": seen,
                "payment_request": None
                if body is None
                else payment_request_result(self.payment_request_id, body),
                "message": message,
                "terminal": terminal,
            }
        )
