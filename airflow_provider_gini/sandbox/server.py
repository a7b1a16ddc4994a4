"""Serving the sandbox with uvicorn: in the foreground (the CLI) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from airflow_provider_gini.sandbox.access import Access, check_bind
from airflow_provider_gini.sandbox.app import create_app
from airflow_provider_gini.sandbox.config import (
    DEMO_CLIENT,
    DEMO_USER,
    ApiProfile,
    ClientSpec,
    SandboxConfig,
    UserSpec,
    profile,
)
from airflow_provider_gini.sandbox.state import SandboxState


def connection_dict(
    base_url: str, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT
) -> dict[str, Any]:
    """An Airflow connection of type ``gini`` for this sandbox (both hosts are the same origin)."""
    return {
        "conn_type": "gini",
        "host": base_url,
        "login": user.email,
        "password": user.password,
        "extra": {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "user_center_url": base_url,
        },
    }


def user_token(base_url: str, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT) -> str:
    """An access token from a password grant at the sandbox, for tests that call the API by hand."""
    answer = httpx.post(
        f"{base_url}/oauth/token",
        params={"grant_type": "password"},
        auth=(client.client_id, client.client_secret),
        data={"username": user.email, "password": user.password},
        headers={"Accept": "application/json"},
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _uvicorn_server(app: Any, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    state = getattr(getattr(app, "state", None), "sandbox", None)
    if isinstance(state, SandboxState):
        _watch_transports(server, state)
    return server


def _watch_transports(server: uvicorn.Server, state: SandboxState) -> None:
    """Lets reset faults find the transport of a client (host, port)."""

    def find_transport(client: Any) -> asyncio.Transport | None:
        target = tuple(client) if client else None
        for protocol in list(server.server_state.connections):
            if getattr(protocol, "client", None) == target:
                transport: asyncio.Transport = protocol.transport
                return transport
        return None

    state.find_transport = find_transport


def _bind(host: str, port: int, allow_remote: bool) -> socket.socket:
    check_bind(host, allow_remote)  # every way of serving binds here: one place for the rule
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def base_url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    config: SandboxConfig,
    host: str,
    port: int,
    log_level: str = "warning",
    on_ready: Any = None,
    *,
    access: Access | None = None,
    allow_remote: bool = False,
) -> None:
    """Serve in the foreground until interrupted. A host other than loopback needs
    ``allow_remote`` (else :class:`SandboxAccessError`)."""
    sock = _bind(host, port, allow_remote)
    app = create_app(config, access)
    server = _uvicorn_server(app, log_level)
    if on_ready is not None:
        on_ready(base_url_of(host, sock.getsockname()[1]))
    server.run(sockets=[sock])


class RunningSandbox:
    """A sandbox serving in a background thread, with helpers over its admin API. ``admin`` is an
    httpx client for ``/__sandbox`` that carries the admin token (``admin_token``)."""

    def __init__(self, base_url: str, state: SandboxState, admin_token: str | None = None) -> None:
        self.base_url = base_url
        self.state = state  # in-process only; read it through the admin API from other processes
        self.admin_token = admin_token
        headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.admin = httpx.Client(base_url=f"{base_url}/__sandbox", headers=headers, timeout=30)

    def connection(self, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT) -> dict[str, Any]:
        return connection_dict(self.base_url, user, client)

    def user_token(self, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT) -> str:
        return user_token(self.base_url, user, client)

    def connection_json(self, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT) -> str:
        return json.dumps(self.connection(user, client))

    def connection_env(self, conn_id: str = "gini_default", **kwargs: Any) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.connection_json(**kwargs)}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "/counters"))

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset")

    def requests(self, limit: int = 100_000) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests", params={"limit": limit}))

    def add_fault(self, kind: str, **rule: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/faults", json={"kind": kind, **rule}))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def settings(self, **change: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", "/settings", json=change))

    def advance_clock(self, seconds: float) -> None:
        self._call("POST", "/clock/advance", json={"seconds": seconds})

    def expire_tokens(self) -> int:
        return int(self._call("POST", "/tokens/expire")["expired"])

    def revoke_refresh_tokens(self) -> int:
        return int(self._call("POST", "/tokens/revoke-refresh")["revoked"])

    def change_password(self, email: str, password: str) -> None:
        self._call("PATCH", f"/users/{email}", json={"password": password})

    def secrets(self) -> dict[str, list[str]]:
        return dict(self._call("GET", "/secrets"))

    def documents(self, owner: str = DEMO_USER.email, **window: int) -> list[dict[str, Any]]:
        return list(self._call("GET", "/documents", params={"owner": owner, **window}))

    def document(self, document_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/documents/{document_id}"))

    def insert_documents(self, owner: str = DEMO_USER.email, **spec: Any) -> list[str]:
        return list(self._call("POST", "/documents", json={"owner": owner, **spec})["ids"])

    def change_document(self, document_id: str, **change: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/documents/{document_id}", json=change))

    def delete_document(self, document_id: str) -> None:
        self._call("DELETE", f"/documents/{document_id}")


@contextmanager
def serving(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    *,
    allow_remote: bool = False,
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yields its base URL. The sandbox's
    runner, also used by the test suite's replay of Gini's recorded shapes."""
    sock = _bind(host, port, allow_remote)
    server = _uvicorn_server(app, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gini-serving", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The server did not start")
            time.sleep(0.01)
        yield base_url_of(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def run_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    api: ApiProfile | str | None = None,
    *,
    allow_remote: bool = False,
    allowed_hosts: Iterable[str] = (),
    admin_token: str | None = None,
) -> Iterator[RunningSandbox]:
    """Serve a sandbox on a free port (by default) for the duration of the block. ``api`` is an
    API profile, or a profile's name (``"pay-api"``, ``"legacy"``), replacing the config's.

    A ``host`` other than loopback needs ``allow_remote=True``; ``allowed_hosts`` are Host names
    answered besides loopback ones and the bind address. The admin token is generated unless
    given; the yielded sandbox sends it (``sandbox.admin_token``)."""
    if api is not None:
        chosen = profile(api) if isinstance(api, str) else api
        config = (config or SandboxConfig()).model_copy(update={"api": chosen})
    access = Access.build(admin_token, host, allowed_hosts)
    app = create_app(config, access)
    with serving(app, host, port, log_level, allow_remote=allow_remote) as base_url:
        running = RunningSandbox(base_url, app.state.sandbox, access.admin_token)
        try:
            yield running
        finally:
            running.admin.close()
