"""GiniDocumentProcessedTrigger: waits in the triggerer until a document leaves PENDING.

Polls run on a small thread pool with the ordinary (blocking) hook, so the event loop never
blocks and there is one transport, one retry policy and one token lifecycle. Triggers of the
same connection in one triggerer share a hook, so a thousand waiting documents cost one
token grant, not a thousand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_gini.client.errors import GiniError, is_terminal, shown

# Few threads on purpose: every extra thread contends for the GIL with the event loop.
POLLER_THREADS = 4
_POLLERS = ThreadPoolExecutor(max_workers=POLLER_THREADS, thread_name_prefix="gini-trigger")
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
    hook = GiniHook(gini_conn_id, **{"pool_size": POLLER_THREADS, **hook_params})
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


class GiniDocumentProcessedTrigger(BaseTrigger):
    """Fires ``{"status": "success"|"failed"|"timeout"|"error", "document_id", "progress", "message",
    "terminal"}``; ``terminal`` marks an error a new try cannot fix (a refused password, ...).

    ``end_time`` is an epoch timestamp (seconds); ``hook_params`` are plain values (numbers,
    strings), as ``serialize()`` must carry nothing else.
    """

    def __init__(
        self,
        *,
        document_id: str,
        gini_conn_id: str = "gini_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.document_id = document_id
        self.gini_conn_id = gini_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else None
        self.hook_params = dict(hook_params or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "document_id": self.document_id,
                "gini_conn_id": self.gini_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "hook_params": self.hook_params,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        try:
            hook = await loop.run_in_executor(_POLLERS, shared_hook, self.gini_conn_id, self.hook_params)
            while True:
                doc = await loop.run_in_executor(_POLLERS, hook.get_document, self.document_id)
                progress = doc.get("progress")
                if progress == "COMPLETED":
                    yield self._event("success", progress, f"Document {self.document_id} is COMPLETED")
                    return
                if progress == "ERROR":
                    yield self._event(
                        "failed", progress, f"Gini could not process document {self.document_id}"
                    )
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    shown_progress = shown(str(progress), 40)
                    yield self._event(
                        "timeout", shown_progress, f"Document {self.document_id} was still {shown_progress}"
                    )
                    return
                # +-20% jitter: triggers deferred together would otherwise wake together, every
                # interval, and a thousand simultaneous wake-ups stall the triggerer's loop.
                delay = self.poll_interval * random.uniform(0.8, 1.2)
                if self.end_time is not None:
                    delay = max(0.0, min(delay, self.end_time - time.time()))
                await asyncio.sleep(delay)
        except GiniError as exc:
            message = f"Waiting for document {self.document_id} failed: {exc}"
            yield self._event("error", None, message, terminal=is_terminal(exc))

    def _event(self, status: str, progress: str | None, message: str, terminal: bool = False) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "document_id": self.document_id,
                "progress": progress,
                "message": message,
                "terminal": terminal,
            }
        )
