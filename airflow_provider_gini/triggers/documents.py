"""GiniDocumentProcessedTrigger: waits in the triggerer until a document leaves PENDING.

Polls use the ordinary (blocking) hook, so there is one transport, one retry policy and one token
lifecycle. They run off the event loop on a thread of the trigger's own: a poll that hangs (a slow
Gini, a retry waiting out its backoff, a read timeout) holds only its own trigger, never the polls
of the other triggers in the triggerer, as a pool shared by all triggers would. The cost is one
thread per running trigger, created when run() starts and let go when it ends; between polls it
sits idle, blocked on its queue, so it takes no GIL time from the event loop, only its stack
(mostly reserved address space, a few pages resident). Threads that all want the GIL at once
would starve the loop, though (a thousand triggers waking together), so calls are let into their
threads a few at a time, and a call that runs long gives up its place after 20 ms (ADMIT_AT_ONCE).

Triggers of the same connection in one triggerer share a hook, so a thousand waiting documents
cost one token grant, not a thousand. The shared hook's connection pool holds as many connections
as the triggerer runs triggers and never blocks, so no poll queues behind another for a
connection.

The wait's ``timeout`` runs on the triggerer's own monotonic clock from the moment run() starts,
so neither a worker's clock nor the time the trigger waited to be picked up shortens it; it also
bounds a poll that hangs. A triggerer that restarts runs the trigger again with a fresh timeout:
Airflow's own deferral timeout, set by the operators, bounds the whole wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow.configuration import conf
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_gini._compat import AirflowNotFoundException
from airflow_provider_gini.client.errors import GiniError, is_terminal, shown

T = TypeVar("T")


# A thread per trigger means a thousand triggers that wake together have a thousand threads
# wanting the GIL at once, and the event loop's thread waits its turn behind them all (stalls of
# one to two seconds in benchmarks/triggers.py). So, per event loop, at most ADMIT_AT_ONCE calls
# (polls, hook builds, thread starts) begin together: each keeps its place until it ends or for
# ADMIT_FOR seconds, whichever comes first. A call still running by then is waiting on the
# network, not using the GIL, so a slow poll holds others up for ADMIT_FOR at most. With 8, the
# benchmark's 1000 triggers polled at 270/s but stalled the loop up to 162 ms (1 run of 4 over
# the 100 ms goal); with 4, 150-160/s (what the old shared pool of 4 threads gave at 20 ms of
# latency, and 200/s whatever the latency) and stalls of 31-49 ms.
ADMIT_AT_ONCE = 4
ADMIT_FOR = 0.02
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_HOOKS: OrderedDict[str, Any] = OrderedDict()
_RECENT: dict[str, tuple[float, str]] = {}
_HOOKS_LOCK = threading.Lock()
_MAX_HOOKS = 32
# How long a connection read is trusted before a new trigger reads it again.
CONNECTION_TTL = 60.0


def shared_hook(gini_conn_id: str, hook_params: dict[str, Any]) -> Any:
    """One hook per connection content, so one token for all the triggers of a connection.

    The connection is read again at most every CONNECTION_TTL seconds; a changed connection (new
    host, rotated secret) then gets a new hook rather than the stale one. Blocking: run it off
    the event loop.
    """
    from airflow_provider_gini.hooks.gini import GiniHook

    asked = json.dumps([gini_conn_id, hook_params], sort_keys=True, default=str)
    with _HOOKS_LOCK:
        fresh_until, key = _RECENT.get(asked, (0.0, ""))
        if time.monotonic() < fresh_until and key in _HOOKS:
            return _HOOKS[key]
    # As many pooled connections as the triggerer runs triggers: every trigger polls on its own
    # thread, and a smaller pool would open connections beyond it only to drop them again after
    # one poll ("Connection pool is full" warnings). The pool never blocks, and holds only as many
    # connections as were ever in use at once.
    pool_size = max(
        int(hook_params.get("pool_size") or 0), conf.getint("triggerer", "capacity", fallback=1000)
    )
    hook = GiniHook(gini_conn_id, **{**hook_params, "pool_size": pool_size})
    # One read of the connection serves both the cache key and the hook's session.
    settings = dataclasses.asdict(hook.gini.settings)
    # A digest, so the cache keys hold no credential.
    key = hashlib.sha256(
        json.dumps([gini_conn_id, settings], sort_keys=True, default=str).encode()
    ).hexdigest()
    with _HOOKS_LOCK:
        if key not in _HOOKS:
            _HOOKS[key] = hook
            while len(_HOOKS) > _MAX_HOOKS:
                _HOOKS.popitem(last=False)[1].close()
        elif _HOOKS[key] is not hook:
            hook.close()  # the connection is unchanged: keep the hook (and token) already shared
        _HOOKS.move_to_end(key)
        _RECENT[asked] = (time.monotonic() + CONNECTION_TTL, key)
        return _HOOKS[key]


def forget_shared_hooks() -> None:
    """Drop the shared hooks, e.g. between tests that each start their own Gini."""
    with _HOOKS_LOCK:
        for hook in _HOOKS.values():
            hook.close()
        _HOOKS.clear()
        _RECENT.clear()


def _nothing() -> None:
    """A task that only makes an executor start its thread."""


async def _admitted(submit: Callable[[], asyncio.Future[T]]) -> T:
    """The result of the future ``submit()`` returns, ``submit`` called once this event loop's
    gate lets it in (see ADMIT_AT_ONCE)."""
    loop = asyncio.get_running_loop()
    gate = _GATES.get(loop)
    if gate is None:
        gate = _GATES[loop] = asyncio.Semaphore(ADMIT_AT_ONCE)
    await gate.acquire()
    holding = True

    def release(*_: object) -> None:
        nonlocal holding
        if holding:
            holding = False
            gate.release()

    timer = loop.call_later(ADMIT_FOR, release)
    try:
        future = submit()
    except BaseException:
        timer.cancel()
        release()
        raise
    future.add_done_callback(release)
    return await future


def _on(poller: ThreadPoolExecutor, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``call(*args)`` on the trigger's thread, through asgiref's sync_to_async: what the call
    asks of the triggerer's supervisor (reading the connection, masking a new token) then goes
    through the event loop, one request at a time. Airflow 3.0 answers requests from plain
    threads out of order ("Response read out of order!")."""
    return asyncio.ensure_future(sync_to_async(call, thread_sensitive=False, executor=poller)(*args))


class _WaitTimedOut(Exception):
    """The wait's deadline passed while a call to Gini was still under way."""


class PollingTrigger(BaseTrigger):
    """Waits in the triggerer until one thing at Gini is finished, polling it with ``_check``
    on a thread of its own (see above). Subclasses say what is polled: ``_subject`` ("document
    <id>"), ``_check`` (one poll) and ``_event`` (their event's shape).

    ``timeout`` is in seconds, counted on the triggerer's clock from when the trigger starts
    running; ``end_time`` (an epoch timestamp, in seconds) is what earlier versions serialized
    and is still honoured; with both, the wait ends at the earlier. ``hook_params`` are plain
    values (numbers, strings), as ``serialize()`` must carry nothing else.
    """

    def __init__(
        self,
        *,
        gini_conn_id: str = "gini_default",
        poll_interval: float = 5.0,
        timeout: float | None = None,
        end_time: float | None = None,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gini_conn_id = gini_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout) if timeout is not None else None
        self.end_time = float(end_time) if end_time is not None else None
        self.hook_params = dict(hook_params or {})

    def _identity(self) -> dict[str, Any]:
        """What is waited for, as serialize() carries it: ``{"document_id": ...}``."""
        raise NotImplementedError

    def _subject(self) -> str:
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self._identity(),
                "gini_conn_id": self.gini_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "end_time": self.end_time,
                "hook_params": self.hook_params,
            },
        )

    def _check(self, hook: Any) -> tuple[TriggerEvent | None, str]:
        """One poll, on the trigger's thread: the final event, or None and the state seen."""
        raise NotImplementedError

    def _event(self, status: str, seen: str | None, message: str, terminal: bool = False) -> TriggerEvent:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The timeout starts now, on this process's monotonic clock: not when (nor by which
        # machine's clock) the task deferred, nor when the triggerer got round to this trigger.
        started = time.monotonic()
        # This trigger's own thread, so a poll that hangs holds up no other trigger.
        poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gini-trigger")
        try:
            event = await self._wait(poller, started)
        finally:
            # Not waiting: a call cut short by the deadline, or by the triggerer cancelling this
            # trigger, ends on its own (the hook's timeouts and retry policy bound it), and the
            # thread then exits. Waiting for it here would block the event loop.
            poller.shutdown(wait=False, cancel_futures=True)
        yield event

    async def _wait(self, poller: ThreadPoolExecutor, started: float) -> TriggerEvent:
        loop = asyncio.get_running_loop()
        seen: str | None = None  # what Gini last answered, fit to show
        subject = self._subject()
        try:
            # The thread is started by the loop's default executor, not on the loop: starting a
            # thread waits for the new thread's first GIL turn, about 10 ms while other triggers'
            # threads are busy, so a thousand triggers arriving together would stall the loop
            # for seconds.
            await self._call(started, lambda: loop.run_in_executor(None, poller.submit, _nothing))
            try:
                hook = await self._call(
                    started,
                    lambda: _on(poller, shared_hook, self.gini_conn_id, self.hook_params),
                )
            except (GiniError, _WaitTimedOut):
                raise
            except AirflowNotFoundException:
                return self._event("error", None, self._failed(self._not_defined()))
            except Exception as exc:
                # Only the exception's class: a secrets backend's message may carry a URL or a
                # credential. Not terminal: a fixed connection or backend makes a new try succeed.
                return self._event(
                    "error",
                    None,
                    self._failed(
                        f"the Gini hook for connection {self.gini_conn_id!r} could not be built in the"
                        f" triggerer ({type(exc).__name__}); check that the connection and the hook_params"
                        " work where the triggerer runs"
                    ),
                )
            while True:
                final, seen = await self._call(started, lambda: _on(poller, self._check, hook))
                if final is not None:
                    return final
                left = self._time_left(started)
                if left is not None and left <= 0:
                    return self._event("timeout", seen, f"{_upper(subject)} was still {seen}")
                # +-20% jitter: triggers deferred together would otherwise wake together, every
                # interval, and a thousand simultaneous wake-ups stall the triggerer's loop.
                delay = self.poll_interval * random.uniform(0.8, 1.2)
                await asyncio.sleep(delay if left is None else min(delay, left))
        except _WaitTimedOut:
            if seen is None:
                message = f"Gini had not answered about {subject} when the wait timed out"
            else:
                message = f"{_upper(subject)} was still {seen}"
            return self._event("timeout", seen, message)
        except GiniError as exc:
            return self._event("error", None, self._failed(str(exc)), terminal=is_terminal(exc))

    async def _call(self, started: float, submit: Callable[[], asyncio.Future[T]]) -> T:
        """The result of the call ``submit()`` hands to a thread, submitted once the gate lets
        it in (see ADMIT_AT_ONCE) and cut short at the deadline (_WaitTimedOut).

        A call made with no time left (only a trigger serialized with an ``end_time`` already
        past gets one) runs to its answer, so a document that completed meanwhile still succeeds.
        """
        left = self._time_left(started)
        if left is None or left <= 0:
            return await _admitted(submit)
        attempt = asyncio.ensure_future(_admitted(submit))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=left)
        finally:
            # Timed out, or this trigger cancelled: the call's result is no longer wanted.
            if not attempt.done():
                attempt.cancel()
        if not done:
            raise _WaitTimedOut
        return attempt.result()

    def _time_left(self, started: float) -> float | None:
        """Seconds until the deadline (negative once past), or None without one."""
        left = [started + self.timeout - time.monotonic()] if self.timeout is not None else []
        if self.end_time is not None:
            left.append(self.end_time - time.time())
        return min(left, default=None)

    def _not_defined(self) -> str:
        return (
            f"the connection {self.gini_conn_id!r} is not defined where the triggerer runs (the"
            " triggerer reads connections like the workers do, but in its own environment: add it"
            " to the metadata database with 'airflow connections add', set"
            f" AIRFLOW_CONN_{self.gini_conn_id.upper()} in the triggerer's environment, or give the"
            " triggerer the workers' secrets backend)"
        )

    def _failed(self, reason: str) -> str:
        return f"Waiting for {self._subject()} failed: {reason}"


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


class GiniDocumentProcessedTrigger(PollingTrigger):
    """Fires ``{"status": "success"|"failed"|"timeout"|"error", "document_id", "progress", "message",
    "terminal"}``; ``terminal`` marks an error a new try cannot fix (a refused password, ...).
    ``timeout``, ``end_time`` and ``hook_params`` as for PollingTrigger.
    """

    def __init__(self, *, document_id: str, poll_interval: float = 5.0, **wait: Any) -> None:
        super().__init__(poll_interval=poll_interval, **wait)
        self.document_id = document_id

    def _identity(self) -> dict[str, Any]:
        return {"document_id": self.document_id}

    def _subject(self) -> str:
        return f"document {self.document_id}"

    def _check(self, hook: Any) -> tuple[TriggerEvent | None, str]:
        progress = hook.get_document(self.document_id).get("progress")
        if progress == "COMPLETED":
            return self._event("success", progress, f"Document {self.document_id} is COMPLETED"), progress
        if progress == "ERROR":
            return self._event(
                "failed", progress, f"Gini could not process document {self.document_id}"
            ), progress
        return None, shown(str(progress), 40)

    def _event(self, status: str, seen: str | None, message: str, terminal: bool = False) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "document_id": self.document_id,
                "progress": seen,
                "message": message,
                "terminal": terminal,
            }
        )
