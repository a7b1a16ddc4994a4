"""The token lifecycle: the password and refresh_token grants, the cache, early refresh,
the fallback from a rejected refresh token, and single-flight under threads.

``TokenManager`` decides *when* and *which* grant; the transport sends it (with the one
retry policy). Tokens live here and only here, never in cached connection config, so a
task that runs longer than ``expires_in`` keeps working.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_gini.client.errors import (
    GiniAuthError,
    GiniHTTPError,
    GiniInvalidClientCredentials,
    GiniInvalidUserCredentials,
    GiniProtocolError,
    GiniRefreshRejected,
)

log = logging.getLogger("airflow_provider_gini.client")

# A token response without expires_in is trusted this long; a 401 still forces a new one earlier.
DEFAULT_TTL = 300.0
# Token endpoint errors that mean "try again later" rather than "your request is wrong".
TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
# RFC 6750's b64token, loosened to any visible ASCII: what an Authorization header can carry as is.
_BEARER_TOKEN = re.compile(r"\A[\x21-\x7e]+\Z")


class SecretDict(dict[str, Any]):
    """Secret-bearing fields: a grant's form, a request's headers, a token response. Its repr
    shows only the keys: Airflow 3.0's console log renders the locals of every frame of a task's
    traceback (dag.test(), ``airflow tasks test``), these included."""

    def __repr__(self) -> str:
        return f"SecretDict({sorted(self)})"

    def copy(self) -> SecretDict:  # urllib3 copies the headers it sends through a proxy
        return SecretDict(self)


class Bearer:
    """An access token on its way into a header or back to ``invalidate``: a token travels in
    one of these or in a SecretDict, never in a plain local, for the reason SecretDict gives."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "Bearer(<token>)"


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)


def parse_token(body: Any) -> Token:
    """Read a token response body, refusing anything that is not a usable bearer token.

    The messages never quote the body: it holds the tokens. For the same reason no token is bound
    to a local name here (the body is read through a SecretDict and the checks are helpers that
    return), so a refused response leaves no token in the locals a traceback renders.
    """
    fields = SecretDict(body) if isinstance(body, dict) else None
    del body
    if fields is None:
        raise GiniProtocolError("The Gini token response is not a JSON object")
    problem = _access_problem(fields.get("access_token"))
    if problem:
        raise GiniProtocolError(problem)
    # Optional, as in Gini's iOS SDKs (Token.swift decodes it only if present; a fixture has
    # none): docs/gini-compat.md. When given, it must be bearer.
    token_type = fields.get("token_type")
    token_type = "bearer" if token_type is None else token_type
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = (
            token_type if isinstance(token_type, str) and len(token_type) < 40 else type(token_type).__name__
        )
        raise GiniProtocolError(f"The Gini token response has token_type {shown!r}; only bearer is supported")
    expires_in = fields.get("expires_in")
    if expires_in is None:
        ttl = DEFAULT_TTL
    else:
        try:
            ttl = float(expires_in)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of 309+ digits
            ttl = math.nan
        if isinstance(expires_in, bool) or not math.isfinite(ttl) or ttl <= 0:
            raise GiniProtocolError(
                "The Gini token response has an invalid expires_in (not a positive number)"
            )
    if not _refresh_usable(fields.get("refresh_token")):
        raise GiniProtocolError("The Gini token response has a refresh_token that is not a string")
    return Token(
        access_token=fields["access_token"], expires_in=ttl, refresh_token=fields.get("refresh_token") or None
    )


def _access_problem(access: Any) -> str | None:
    if not isinstance(access, str) or not access.strip():
        return "The Gini token response has no access_token string"
    if not _BEARER_TOKEN.match(access):
        # It goes into an Authorization header: a line break or a non-latin-1 character there makes
        # requests fail with an error that quotes the header, token included.
        return "The Gini token response has an access_token with characters a bearer token cannot have"
    return None


def _refresh_usable(refresh: Any) -> bool:
    return refresh is None or (isinstance(refresh, str) and bool(refresh.strip()))


def oauth_error(status: int, body: Any, grant: str, request_id: str | None) -> Exception:
    """The typed error for a refused token request. Never echoes credentials."""
    code = body.get("error") if isinstance(body, dict) else None
    code = code if isinstance(code, str) and len(code) < 64 else None
    if code in TRANSIENT_OAUTH_ERRORS or status >= 500 or status in (408, 429):
        return GiniHTTPError(
            f"The Gini user center is unavailable ({code or 'no error code'})",
            status=status,
            request_id=request_id,
        )
    if code == "invalid_client" or (status == 401 and code is None):
        return GiniInvalidClientCredentials(
            "The Gini user center refused the OAuth client credentials (invalid_client); check the "
            "connection's client_id and client_secret",
            status=status,
            request_id=request_id,
        )
    if code == "invalid_grant" and grant == "password":
        return GiniInvalidUserCredentials(
            "The Gini user center refused the user credentials (invalid_grant); check the connection's "
            "Login and Password. Not retried: repeated attempts can lock the account",
            status=status,
            request_id=request_id,
        )
    if code == "invalid_grant":
        return GiniRefreshRejected(
            "The Gini user center rejected the refresh token (invalid_grant)",
            status=status,
            request_id=request_id,
        )
    return GiniAuthError(
        f"The Gini user center refused the {grant} grant ({code or 'no error code'}); check the client's "
        "configuration at Gini",
        status=status,
        request_id=request_id,
    )


SendGrant = Callable[[str, SecretDict], Token]


class TokenManager:
    def __init__(
        self,
        username: str,
        password: str,
        send_grant: SendGrant,
        *,
        leeway: float = 60.0,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._username = username
        self._password = password
        self._send_grant = send_grant
        self._leeway = leeway
        self._on_secret = on_secret or (lambda _: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._refresh_at = 0.0
        self.grants: dict[str, int] = {"password": 0, "refresh_token": 0}

    def __repr__(self) -> str:
        return f"TokenManager(username={self._username!r}, has_token={self._access is not None})"

    def token(self) -> str:
        """A valid access token, fetched or refreshed when needed; one grant for all threads."""
        access = self._access
        if access is not None and self._clock() < self._refresh_at:
            return access
        # Not left in this frame while a grant runs: an interrupt there renders its locals.
        del access
        with self._lock:
            if self._access is None or self._clock() >= self._refresh_at:
                self._obtain()
            assert self._access is not None
            return self._access

    def current(self) -> tuple[str, ...]:
        """The tokens held now, for redacting text that may echo them."""
        return tuple(t for t in (self._access, self._refresh) if t)

    def invalidate(self, rejected: Bearer) -> None:
        """Forget ``rejected`` after a 401, unless another thread already replaced it. (A Bearer,
        not the token: this may wait for the lock while another thread runs a grant.)"""
        with self._lock:
            if self._access == rejected.token:
                self._access = None

    def _obtain(self) -> None:
        if self._refresh is not None:
            try:
                self._store(self._grant("refresh_token", SecretDict(refresh_token=self._refresh)))
                return
            except GiniRefreshRejected as exc:
                log.warning(
                    "The Gini refresh token was rejected (%s); signing in again with the password", exc
                )
                self._refresh = None
        self._store(self._grant("password", SecretDict(username=self._username, password=self._password)))

    def _grant(self, grant: str, form: SecretDict) -> Token:
        self.grants[grant] += 1
        return self._send_grant(grant, form)

    def _store(self, token: Token) -> None:
        self._on_secret(token.access_token)
        if token.refresh_token:
            self._on_secret(token.refresh_token)
            self._refresh = token.refresh_token  # rotation: the new one replaces the old at once
        leeway = min(self._leeway, token.expires_in / 2 * 0.99)
        self._access = token.access_token
        self._refresh_at = self._clock() + token.expires_in - leeway
