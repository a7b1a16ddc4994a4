"""Who may reach the sandbox: the bind address, the Host header, and the admin token.

The sandbox serves well-known demo credentials and an admin API that reveals every secret it
issued and can change any user's password, so it must not be reachable by accident:

- it binds to loopback unless ``allow_remote`` (``--allow-remote``) says otherwise;
- it answers only requests whose ``Host`` is a loopback name or address, the bind address, or a
  name the user allowed (``--allowed-host``): a web page that rebinds its own DNS name to
  127.0.0.1 (DNS rebinding) sends its own name, and is refused;
- the admin API under ``/__sandbox/`` wants ``Authorization: Bearer <admin token>``, a header an
  HTML form cannot send and that a cross-site script may only send after a CORS preflight, which
  the sandbox never grants. A token in the query string or a cookie is not read at all;
- a state-changing admin request carries ``Content-Type: application/json`` or no content type
  at all: what a form or a no-CORS fetch sends (urlencoded, multipart, text/plain) is refused
  even with the token.

``GET /__sandbox/health`` needs no token, so that readiness probes stay simple; it tells
nothing but counts.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

ADMIN_PREFIX = "/__sandbox"
HEALTH = f"{ADMIN_PREFIX}/health"
TOKEN_ENV = "GINI_SANDBOX_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
ANY_HOST = "*"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names the addresses, binds none


class SandboxAccessError(ValueError):
    """The sandbox was asked to listen where it must not without being told it may."""


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback bind without ``allow_remote``; warn on stderr with it."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise SandboxAccessError(
            f"refusing to listen on {host!r}: the sandbox serves well-known demo credentials and "
            "must stay on loopback (127.0.0.1, ::1, localhost). To serve other machines anyway, add "
            "--allow-remote (run_sandbox(..., allow_remote=True) in Python), and --allowed-host NAME "
            "for each name clients use to reach it"
        )
    print(
        f"WARNING: the Gini sandbox listens on {host!r} and is reachable from other machines. It "
        "serves well-known demo credentials over plain HTTP; keep it on a trusted network. Its admin "
        "API still needs the admin token, and only Host headers naming loopback, the bind address "
        "or an --allowed-host are answered.",
        file=sys.stderr,
        flush=True,
    )


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8080`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Access:
    """The admin token (generated unless given) and the Host names answered besides loopback."""

    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    allowed_hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.admin_token.strip():
            raise SandboxAccessError(
                f"the admin token is empty: give a non-empty --admin-token or {TOKEN_ENV}, or "
                "neither to have one generated"
            )

    @classmethod
    def build(cls, admin_token: str | None, bind_host: str, allowed_hosts: Iterable[str] = ()) -> Access:
        """The bind address is answered too, unless it is a wildcard (0.0.0.0, ::)."""
        hosts = {host_name(h) for h in allowed_hosts if h.strip()}
        if bind_host not in WILDCARD_BINDS:
            hosts.add(host_name(bind_host))
        if admin_token is None:
            return cls(allowed_hosts=frozenset(hosts))
        return cls(admin_token=admin_token, allowed_hosts=frozenset(hosts))

    def host_allowed(self, header: str) -> bool:
        if ANY_HOST in self.allowed_hosts:
            return True
        name = host_name(header)
        return bool(name) and (is_loopback(name) or name in self.allowed_hosts)

    def token_matches(self, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        return hmac.compare_digest(given.strip().encode(), self.admin_token.encode())


def env_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class AccessGuard:
    """ASGI middleware, outermost: refused requests are neither faulted, counted nor logged."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access
        # Host verdicts by header value: parsing an address costs more than the rest of the
        # check, and a client sends the same Host every time. Bounded against a flood of names.
        self._hosts: dict[str, bool] = {}

    def _host_allowed(self, host: str) -> bool:
        verdict = self._hosts.get(host)
        if verdict is None:
            verdict = self.access.host_allowed(host)
            if len(self._hosts) < 256:
                self._hosts[host] = verdict
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, error, message, headers = refusal
        body = json.dumps({"error": error, "message": message}).encode()
        base = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": base + headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        host = _header(scope, b"host")
        if not self._host_allowed(host):
            return (
                421,
                "host_not_allowed",
                f"The sandbox does not answer for Host {host!r}: only loopback names (localhost, "
                "127.x.x.x, [::1]), its bind address and names given with --allowed-host (run_sandbox"
                "(..., allowed_hosts=[...])) are answered, against DNS rebinding.",
                [],
            )
        path: str = scope["path"]
        if path != ADMIN_PREFIX and not path.startswith(ADMIN_PREFIX + "/"):
            return None
        method: str = scope["method"]
        if path == HEALTH and method in ("GET", "HEAD"):
            return None
        if not self.access.token_matches(_header(scope, b"authorization")):
            return (
                401,
                "admin_token_required",
                "The sandbox's admin API needs its token as 'Authorization: Bearer <token>' (not in "
                "the query string or a cookie). The command line prints it at start (or takes it from "
                f"--admin-token or {TOKEN_ENV}); in Python, RunningSandbox sends it for you and "
                "holds it as sandbox.admin_token.",
                [(b"www-authenticate", b'Bearer realm="Gini sandbox admin"')],
            )
        content_type = _header(scope, b"content-type").split(";", 1)[0].strip().lower()
        if method in STATE_CHANGING and content_type not in ("", "application/json"):
            return (
                415,
                "json_required",
                f"Admin {method} requests carry a JSON body (Content-Type: application/json) or "
                f"no body, not {content_type!r}: what an HTML form can send is refused.",
                [],
            )
        return None
