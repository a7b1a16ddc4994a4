"""ASGI middleware: request ids, fault injection on the wire, and the request log.

A plain ASGI class rather than Starlette's BaseHTTPMiddleware, which costs a
task and a queue per request; the sandbox must not be the bottleneck of any
benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import struct
import time
import uuid
from email.utils import formatdate
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_gini.sandbox.access import ADMIN_PREFIX
from airflow_provider_gini.sandbox.errors import error_body
from airflow_provider_gini.sandbox.faults import FaultDecision, Identity
from airflow_provider_gini.sandbox.state import SandboxState

UNOBSERVED = ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect")
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>%d Error</title></head>"
    b"<body><h1>%d Error</h1><p>The upstream server is temporarily unavailable.</p></body></html>"
)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _route_template(scope: Scope) -> str:
    """The path template of the request's route, also when a fault kept the handler from running."""
    route = scope.get("route")
    if route is None:
        for candidate in scope["app"].router.routes:
            if candidate.matches(scope)[0] == Match.FULL:
                route = candidate
                break
    return str(getattr(route, "path", None) or scope["path"])


def _identity(state: SandboxState, scope: Scope) -> Identity:
    """Whose request this is, for a rate limit: a live bearer token's client and user, or the
    client id of a Basic header (a token request); None for neither (it will be answered 401)."""
    scheme, _, value = _header(scope, b"authorization").partition(" ")
    if scheme.lower() == "bearer":
        token = state.live_access_token(value.strip())
        return (token.client_id, token.user_id) if token is not None else None
    if scheme.lower() == "basic":
        try:
            client = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (client, None) if client else None
    return None


def _tag(send: Send, request_id: str, seen: dict[str, Any]) -> Send:
    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            seen["status"] = message["status"]
        await send(message)

    return tagged


class SandboxMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: SandboxState = scope["app"].state.sandbox
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        seen: dict[str, Any] = {"status": 0}
        if path.startswith(ADMIN_PREFIX) or path in UNOBSERVED:
            await self.app(scope, receive, _tag(send, request_id, seen))
            return
        started = time.time()
        decision = state.faults.decide(scope["method"], path, lambda: _identity(state, scope))
        try:
            if decision.delay:
                await asyncio.sleep(decision.delay)
            if decision.action is None:
                await self.app(scope, receive, _tag(send, request_id, seen))
            else:
                await self._fault(decision, state, scope, receive, _tag(send, request_id, seen), seen)
        finally:
            self._observe(state, scope, seen, decision, request_id, started)

    async def _fault(
        self,
        decision: FaultDecision,
        state: SandboxState,
        scope: Scope,
        receive: Receive,
        send: Send,
        seen: dict[str, Any],
    ) -> None:
        rule = decision.action
        assert rule is not None
        kind = rule.kind
        status = rule.default_status()
        if kind in ("status", "retry_after", "rate_limit"):
            headers: list[tuple[bytes, bytes]] = []
            if kind == "retry_after" or (kind == "rate_limit" and rule.retry_after_header):
                value = (
                    decision.retry_after()
                    if rule.retry_after_form == "seconds" or kind == "rate_limit"
                    else formatdate(time.time() + rule.retry_after, usegmt=True)
                )
                headers.append((b"retry-after", value.encode()))
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="Gini API", error="invalid_token"'))
            # Gini's 429 is an API v5 error (code 2400, "too many requests"): its body is v5's.
            shape = "items" if kind == "rate_limit" else state.config.api.error_body
            message = "Too many requests" if kind == "rate_limit" else f"Injected fault: HTTP {status}"
            body = json.dumps(error_body(shape, status, message, scope["state"]["request_id"])).encode()
            await _respond(send, status, body, b"application/json", headers)
        elif kind == "html":
            await _respond(send, status, HTML_PAGE % (status, status), b"text/html; charset=utf-8", [])
        elif kind == "reset":
            if rule.after_handler:
                await self.app(scope, receive, _discard)
            seen["status"] = "reset"
            await _abort(state, scope, reset=True)
        else:
            start, body = await _capture(self.app, scope, receive)
            half = len(body) // 2
            if kind == "truncate":
                start["headers"] = [
                    (k, str(half).encode() if k.lower() == b"content-length" else v)
                    for k, v in start["headers"]
                ]
                await send(start)
                await send({"type": "http.response.body", "body": body[:half]})
                return
            await send(start)
            await send({"type": "http.response.body", "body": body[:half], "more_body": True})
            if kind == "slow_body":
                await asyncio.sleep(rule.delay)
                await send({"type": "http.response.body", "body": body[half:]})
            else:  # close_mid_body
                seen["status"] = f"{seen['status']}-closed"
                await _abort(state, scope, reset=False)

    def _observe(
        self,
        state: SandboxState,
        scope: Scope,
        seen: dict[str, Any],
        decision: FaultDecision,
        rid: str,
        t0: float,
    ) -> None:
        route = _route_template(scope)
        method = scope["method"]
        status = seen["status"]
        state.route_counts[f"{method} {route}"] += 1
        state.status_counts[status] += 1
        if state.request_log.maxlen == 0:
            return
        extra = scope["state"]
        state.request_log.append(
            {
                "time": t0,
                "duration": round(time.time() - t0, 6),
                "method": method,
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "route": route,
                "status": status,
                "requestId": rid,
                "grantType": extra.get("grant_type"),
                "clientId": extra.get("client_id"),
                "authScheme": _header(scope, b"authorization").partition(" ")[0],
                "userAgent": _header(scope, b"user-agent"),
                "accept": _header(scope, b"accept"),
                "contentType": _header(scope, b"content-type"),
                "faults": decision.fired,
            }
        )


async def _respond(
    send: Send, status: int, body: bytes, media: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    base = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": base + headers})
    await send({"type": "http.response.body", "body": body})


async def _discard(message: Message) -> None:
    return None


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    start["headers"] = list(start.get("headers", []))
    return start, b"".join(chunks)


async def _abort(state: SandboxState, scope: Scope, *, reset: bool) -> None:
    transport = state.find_transport(scope.get("client")) if state.find_transport else None
    if transport is None:
        raise RuntimeError(
            "This fault needs the sandbox's own server (python -m airflow_provider_gini.sandbox)"
        )
    if reset:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server see the connection is gone before the app returns, so it sends nothing more.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
