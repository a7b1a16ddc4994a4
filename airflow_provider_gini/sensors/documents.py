"""GiniDocumentProcessedSensor: waits until Gini has processed a document."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, Context

from airflow_provider_gini._compat import AirflowSensorTimeout
from airflow_provider_gini.client.errors import shown
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.operators.base import defer_wait, terminal_errors
from airflow_provider_gini.operators.documents import complete_processing_event, fail_on_error
from airflow_provider_gini.triggers.documents import GiniDocumentProcessedTrigger


class GiniDocumentProcessedSensor(BaseSensorOperator):
    """Succeeds when the document is COMPLETED and fails (without retries) when it is in ERROR.

    Works in ``poke`` and ``reschedule`` mode, or, with ``deferrable`` (default:
    ``[operators] default_deferrable``), waits in the triggerer. ``timeout`` bounds the wait in
    every mode. Returns (XCom) the document id.
    """

    template_fields: Sequence[str] = ("gini_conn_id", "document_id")

    def __init__(
        self,
        *,
        document_id: str,
        gini_conn_id: str = GiniHook.default_conn_name,
        hook_params: dict[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        if deferrable and "poke_interval" not in kwargs:
            kwargs["poke_interval"] = 5
        super().__init__(**kwargs)
        self.document_id = document_id
        self.gini_conn_id = gini_conn_id
        self.hook_params = dict(hook_params or {})  # a copy: default_args share one dict
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> GiniHook:
        return GiniHook(self.gini_conn_id, **self.hook_params)

    def poke(self, context: Context) -> bool:
        with terminal_errors():
            document = self.hook.get_document(self.document_id)
        progress = fail_on_error(self.document_id, document["progress"])
        self.log.info("Document %s is %s", self.document_id, shown(str(progress), 40))
        return bool(progress == "COMPLETED")

    def execute(self, context: Context) -> str:
        if not self.deferrable:
            super().execute(context)
            return self.document_id
        if not self.poke(context):
            trigger = GiniDocumentProcessedTrigger(
                document_id=self.document_id,
                gini_conn_id=self.gini_conn_id,
                poll_interval=self.poke_interval,
                timeout=self.timeout,
                hook_params=self.hook_params,
            )
            defer_wait(self, trigger, self.timeout)
        return self.document_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        return complete_processing_event(event, AirflowSensorTimeout)
