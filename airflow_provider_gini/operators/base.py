"""What every Gini operator shares: the connection id, hook parameters, the hook itself, and
which errors end a task without further tries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_gini._compat import AirflowException, AirflowFailException
from airflow_provider_gini.client.errors import is_terminal
from airflow_provider_gini.hooks.gini import GiniHook


@contextmanager
def terminal_errors() -> Iterator[None]:
    """Turn the errors a new try cannot fix (client/errors.py's TERMINAL_ERRORS) into
    ``AirflowFailException``, so the task's ``retries`` do not repeat them: each try of a wrong
    password would be one more attempt towards an account lockout. Transient errors pass as
    they are, so retries still apply to them."""
    try:
        yield
    except AirflowFailException:
        raise
    except Exception as exc:
        if is_terminal(exc):
            raise AirflowFailException(f"{exc}. Not retried: another try cannot succeed.") from exc
        raise


def raise_for_event(
    event: dict[str, Any], subject: str, on_timeout: type[Exception] = AirflowException
) -> None:
    """Raise for a trigger event (triggers/documents.py's PollingTrigger) that is not a success:
    ``failed`` and terminal errors without retries, ``timeout`` as ``on_timeout`` (a sensor's
    AirflowSensorTimeout), anything else as a retryable AirflowException."""
    status = event.get("status")
    if status == "success":
        return
    message = event.get("message") or f"Waiting for {subject} ended with {status}"
    if status == "timeout":
        raise on_timeout(message)
    if status == "failed":
        raise AirflowFailException(message)
    if status == "error" and event.get("terminal"):  # e.g. a refused password: no retries
        raise AirflowFailException(f"{message}. Not retried: another try cannot succeed.")
    raise AirflowException(message)


# Beyond a wait's own timeout, the time its trigger has to report it before Airflow's deferral
# timeout fails the task: the trigger's timeout event, with its message, should come first.
DEFERRAL_GRACE = 60.0


def defer_wait(task: Any, trigger: Any, timeout: float) -> None:
    """Hand ``task`` to ``trigger`` until its ``execute_complete``, with Airflow's own deadline
    too: without a triggerer (or one without this provider) the trigger never runs, and the
    task would stay deferred for ever."""
    task.defer(
        trigger=trigger,
        method_name="execute_complete",
        timeout=timedelta(seconds=timeout + DEFERRAL_GRACE),
    )


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
        # A copy: one dict is often shared by many operators (default_args), and operators add
        # their own values to it (the pull sizes its connection pool to its workers).
        self.hook_params = dict(hook_params or {})

    @cached_property
    def hook(self) -> GiniHook:
        return GiniHook(self.gini_conn_id, **self.hook_params)
