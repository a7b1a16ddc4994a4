"""GiniPaymentRequestSensor: waits until a payment request is paid."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, Context

from airflow_provider_gini._compat import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow_provider_gini.client.errors import shown
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.operators.base import defer_wait, raise_for_event, terminal_errors
from airflow_provider_gini.triggers.payments import (
    INVALID,
    OPEN,
    PAID,
    GiniPaymentRequestTrigger,
    payment_request_result,
)


class GiniPaymentRequestSensor(BaseSensorOperator):
    """Succeeds when the payment request is ``paid`` and returns (XCom) its body with its
    ``id``; fails without retries when it is ``invalid`` or gone (404). Any other status is
    waited for like ``open``.

    Works in ``poke`` and ``reschedule`` mode, or, with ``deferrable`` (default:
    ``[operators] default_deferrable``), waits in the triggerer. ``timeout`` bounds the wait in
    every mode (payers take days: the default is Airflow's 7 days) and fails the task saying
    which status the request still had. ``poke_interval`` defaults to 60 seconds.
    """

    template_fields: Sequence[str] = ("gini_conn_id", "payment_request_id")

    def __init__(
        self,
        *,
        payment_request_id: str,
        gini_conn_id: str = GiniHook.default_conn_name,
        hook_params: dict[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        self.payment_request_id = payment_request_id
        self.gini_conn_id = gini_conn_id
        self.hook_params = dict(hook_params or {})  # a copy: default_args share one dict
        self.deferrable = deferrable
        self._paid: dict[str, Any] | None = None
        self._status: str | None = None

    @cached_property
    def hook(self) -> GiniHook:
        return GiniHook(self.gini_conn_id, **self.hook_params)

    def poke(self, context: Context) -> bool:
        with terminal_errors():
            body = self.hook.get_payment_request(self.payment_request_id)
        status = body.get("status")
        self._status = shown(str(status), 40)
        if status == INVALID:
            raise AirflowFailException(
                f"Payment request {self.payment_request_id} is invalid: it will not be paid"
            )
        self.log.info("Payment request %s is %s", self.payment_request_id, self._status)
        if status not in (PAID, OPEN):
            self.log.warning(
                "Status %r is not one Gini documents (open, paid, invalid); waiting as for open", self._status
            )
        if status == PAID:
            self._paid = payment_request_result(self.payment_request_id, body)
            return True
        return False

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.deferrable:
            try:
                super().execute(context)
            except AirflowSensorTimeout as exc:
                raise AirflowSensorTimeout(
                    f"Payment request {self.payment_request_id} was still {self._status} after "
                    f"{self.timeout:g} s"
                ) from exc
            return self._paid or payment_request_result(self.payment_request_id, {})
        if not self.poke(context):
            trigger = GiniPaymentRequestTrigger(
                payment_request_id=self.payment_request_id,
                gini_conn_id=self.gini_conn_id,
                poll_interval=self.poke_interval,
                timeout=self.timeout,
                hook_params=self.hook_params,
            )
            defer_wait(self, trigger, self.timeout)
        return self._paid or payment_request_result(self.payment_request_id, {})

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        raise_for_event(event, f"payment request {self.payment_request_id}", AirflowSensorTimeout)
        body = event.get("payment_request")
        if not isinstance(body, dict):
            raise AirflowException(
                f"The paid event of payment request {self.payment_request_id} has no request"
            )
        return dict(body)
