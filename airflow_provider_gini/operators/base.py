"""What every Gini operator shares: the connection id, hook parameters, and the hook itself."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_gini.hooks.gini import GiniHook


class GiniBaseOperator(BaseOperator):
    """``gini_conn_id`` names the connection; ``hook_params`` go to :class:`GiniHook` (timeouts,
    retry limits, ...). Nothing is read or requested before ``execute``."""

    template_fields: Sequence[str] = ("gini_conn_id",)

    def __init__(
        self,
        *,
        gini_conn_id: str = GiniHook.default_conn_name,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gini_conn_id = gini_conn_id
        self.hook_params = hook_params or {}

    @cached_property
    def hook(self) -> GiniHook:
        return GiniHook(self.gini_conn_id, **self.hook_params)
