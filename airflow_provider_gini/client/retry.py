"""The one retry policy, for every request this package makes (token requests included).

Retried: connection failures; timeouts, broken connections, 5xx, 408 and unreadable answers
on idempotent requests; 429 always (Gini refused it unprocessed). A request that is not
idempotent (an upload, a create) is retried only when it provably never reached Gini.
``Retry-After`` (seconds or HTTP-date) is honoured, capped, and gives up at once when it
would overrun the budget. Waits grow exponentially with jitter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

import tenacity

from airflow_provider_gini.client.errors import (
    GiniCancelled,
    GiniError,
    GiniHTTPError,
    GiniProtocolError,
    GiniRefusedAnswer,
    GiniRetryError,
    GiniTransportError,
)
from airflow_provider_gini.client.settings import RetrySettings

log = logging.getLogger("airflow_provider_gini.client")
T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²" or "١٢": str.isdigit() takes those too
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return max(0.0, (when - current).total_seconds())


def is_transient(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, GiniTransportError):
        return idempotent or not exc.sent
    if isinstance(exc, GiniHTTPError):
        if exc.status == 429:
            return True
        return idempotent and exc.status in RETRY_STATUSES
    if isinstance(exc, GiniRefusedAnswer):  # the same request would get the same answer
        return False
    if isinstance(exc, GiniProtocolError):
        return idempotent
    return False


class RetryPolicy:
    def __init__(self, settings: RetrySettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        # Set by cancel(): waits end at once and no further attempt starts, so a task being
        # stopped (on_kill, execution_timeout, a terminal error elsewhere) is not held by a backoff.
        self.cancelled = threading.Event()
        # Exponential from backoff_initial, capped, plus up to backoff_initial of jitter.
        self._backoff = tenacity.wait_exponential(
            multiplier=settings.backoff_initial, max=settings.backoff_max
        ) + tenacity.wait_random(0, settings.backoff_initial)
        self._stop_attempts = tenacity.stop_after_attempt(settings.max_attempts)

    def cancel(self) -> None:
        self.cancelled.set()

    def check_cancelled(self, what: str) -> None:
        if self.cancelled.is_set():
            raise GiniCancelled(f"Gini {what} was not sent: the work was cancelled")

    def _wait(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            self.cancelled.wait(seconds)  # the same pause, but cancel() ends it
        else:
            self._sleep(seconds)

    def run(self, operation: Callable[[], T], *, idempotent: bool, what: str) -> T:
        self.check_cancelled(what)
        started = time.monotonic()
        # Nearly every call succeeds at once, and tenacity's bookkeeping costs more CPU than a
        # fast request: the first attempt runs bare, and a failure goes to tenacity as attempt 1.
        try:
            return operation()
        except Exception as exc:
            first: Exception = exc
        return self._retry(operation, first, started, idempotent=idempotent, what=what)

    def _retry(
        self, operation: Callable[[], T], first: Exception, started: float, *, idempotent: bool, what: str
    ) -> T:
        s = self.settings
        verdict: dict[str, str] = {}
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise first
            self.check_cancelled(what)
            return operation()

        def should_retry(exc: BaseException) -> bool:
            if self.cancelled.is_set() or not is_transient(exc, idempotent):
                return False
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                remaining = s.max_elapsed - (time.monotonic() - started)
                if retry_after > min(s.retry_after_cap, remaining):
                    verdict["reason"] = (
                        f"Gini asked to retry after {retry_after:.0f} s, more than the "
                        f"{min(s.retry_after_cap, max(remaining, 0)):.0f} s this task may still wait"
                    )
                    return False
            return True

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = self._backoff(state)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, retry_after)
            remaining = s.max_elapsed - (time.monotonic() - started)
            return max(0.0, min(delay, remaining))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "Gini %s failed (%s); attempt %d of %d, retrying in %.1f s",
                what,
                describe(exc),
                state.attempt_number,
                s.max_attempts,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            # The budget counts from before the first attempt, which ran before tenacity started.
            stop=self._stop_attempts
            | tenacity.stop_after_delay(s.max_elapsed - (time.monotonic() - started)),
            wait=wait,
            retry=tenacity.retry_if_exception(should_retry),
            before_sleep=before_sleep,
            sleep=self._wait,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as exc:
            last = exc.last_attempt.exception()
            raise GiniRetryError(
                f"Gini {what} failed {attempts} times, giving up: {describe(last)}",
                attempts=attempts,
                last=last,
            ) from last
        except GiniError as exc:
            if "reason" in verdict:
                raise GiniRetryError(
                    f"Gini {what} gave up after {attempts} attempt(s): {verdict['reason']} ({describe(exc)})",
                    attempts=attempts,
                    last=exc,
                ) from exc
            raise


def describe(exc: BaseException | None) -> str:
    """A short, secret-free description of a failure for log lines and messages."""
    if exc is None:
        return "no error"
    if isinstance(exc, GiniError):
        return str(exc)
    return type(exc).__name__
