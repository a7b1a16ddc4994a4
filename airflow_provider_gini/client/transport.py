"""The single owner of the wire: one pooled requests.Session, the token lifecycle, the retry
policy, timeouts, and the translation of every failure into a typed error.

Every request goes through ``GiniSession.call``: take a token, send with explicit timeouts,
on a 401 forget the token and replay once with a fresh one, check the status, read the body
(inside the retried attempt, so a truncated answer is retried like a 503).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_gini import __version__
from airflow_provider_gini.client.errors import (
    GiniConflict,
    GiniHTTPError,
    GiniNotFound,
    GiniProtocolError,
    GiniRejected,
    GiniTransportError,
    GiniUnauthorized,
)
from airflow_provider_gini.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_gini.client.settings import ClientSettings
from airflow_provider_gini.client.tokens import SecretForm, Token, TokenManager, oauth_error, parse_token

T = TypeVar("T")
USER_AGENT = f"airflow-provider-gini/{__version__}"
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")
_ERROR_CLASSES: dict[int, type[GiniHTTPError]] = {
    400: GiniRejected,
    401: GiniUnauthorized,
    403: GiniUnauthorized,
    404: GiniNotFound,
    409: GiniConflict,
    413: GiniRejected,
    415: GiniRejected,
    422: GiniRejected,
}


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(<token>)"


class ManagedBearer(AuthBase):
    """Attaches the current access token; for callers who use ``get_conn()``'s Session directly."""

    def __init__(self, tokens: TokenManager) -> None:
        self._tokens = tokens

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._tokens.token()}"
        return request


def json_of(response: requests.Response) -> Any:
    media = response.headers.get("Content-Type", "")
    problem = (
        None
        if "json" in media.lower()
        else f"Gini answered {media or 'no content type'} where JSON was expected"
    )
    if problem is None:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            # Raised below, outside the except block: the decode error keeps the whole body
            # (for a token response, the tokens) and must not ride along as the context.
            problem = "Gini answered unreadable JSON (truncated or malformed)"
    raise GiniProtocolError(
        problem, status=response.status_code, request_id=response.headers.get("X-Request-Id")
    )


def _loose_json(content: bytes) -> Any:
    """An error body's JSON, or None when it is not JSON: error bodies may be anything."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_message(response: requests.Response) -> tuple[str, str | None]:
    request_id = response.headers.get("X-Request-Id")
    body = _loose_json(response.content[:65536])
    if not isinstance(body, dict):
        return "no readable error message", request_id
    message = body.get("message") or body.get("error_description") or body.get("error")
    request_id = request_id or (body.get("requestId") if isinstance(body.get("requestId"), str) else None)
    if not isinstance(message, str):
        return "no readable error message", request_id
    return _UNPRINTABLE.sub("?", message)[:300], request_id


class GiniSession:
    def __init__(
        self,
        settings: ClientSettings,
        *,
        on_secret: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=settings.pool_size, max_retries=0)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        # The environment (proxies, CA bundle) is read once here, not on every request: requests'
        # per-request scan of os.environ costs more CPU than the request itself under load.
        self.http.trust_env = False
        self.http.verify = _verify(settings.verify)
        self._proxies = {
            base: requests.utils.get_environ_proxies(base)
            for base in (settings.api_url, settings.user_center_url)
        }
        self.http.headers.update({"User-Agent": USER_AGENT, "Accept": settings.media_type})
        self.retry = RetryPolicy(settings.retry, sleep)
        self.tokens = TokenManager(
            settings.username,
            settings.password,
            self._send_grant,
            leeway=settings.refresh_leeway,
            on_secret=on_secret,
        )
        self.http.auth = ManagedBearer(self.tokens)
        self._client_auth = HTTPBasicAuth(settings.client_id, settings.client_secret)

    def __repr__(self) -> str:
        return f"GiniSession(api_url={self.settings.api_url!r}, username={self.settings.username!r})"

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        """An absolute API URL; absolute URLs (from Location headers) must stay on the API's origin,
        so the token is never sent elsewhere."""
        if "://" not in path:
            return f"{self.settings.api_url}{path}"
        if not (path == self.settings.api_url or path.startswith(self.settings.api_url + "/")):
            raise GiniProtocolError(
                f"Gini pointed to {urlsplit(path).netloc!r}, outside {self.settings.api_url}"
            )
        return path

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        read: Callable[[requests.Response], T],
        idempotent: bool = True,
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> T:
        url = self.url(path)

        def attempt() -> T:
            # The token stays inside _Bearer (whose repr hides it), not in a local: Airflow 3.0's
            # console log renders the locals of every frame of a task's traceback.
            auth = _Bearer(self.tokens.token())
            response = self._send(method, url, auth=auth, **kwargs)
            if response.status_code == 401:
                response.close()
                self.tokens.invalidate(auth.token)
                response = self._send(method, url, auth=_Bearer(self.tokens.token()), **kwargs)
            try:
                self._check(response, expect, what)
                return self._guarded(url, lambda: read(response))
            finally:
                response.close()

        return self.retry.run(attempt, idempotent=idempotent, what=what)

    def _check(self, response: requests.Response, expect: tuple[int, ...], what: str) -> None:
        status = response.status_code
        if status in expect:
            return
        message, request_id = _error_message(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        if status == 401:
            message = f"{message}; a freshly issued token was refused too"
        cls = _ERROR_CLASSES.get(status, GiniHTTPError)
        raise cls(
            f"Gini answered {status} to {what}: {message}",
            status=status,
            request_id=request_id,
            retry_after=retry_after,
        )

    def _send_grant(self, grant: str, form: dict[str, str]) -> Token:
        url = f"{self.settings.user_center_url}/oauth/token"
        if grant == "password":
            params, data = {"grant_type": "password"}, form
        else:
            params, data = None, SecretForm(grant_type=grant, **form)

        def attempt() -> Token:
            response = self._send(
                "POST",
                url,
                params=params,
                data=data,
                auth=self._client_auth,
                headers={"Accept": "application/json"},
            )
            try:
                content = self._guarded(url, lambda: response.content)
                request_id = response.headers.get("X-Request-Id")
                if response.status_code != 200:
                    error = oauth_error(response.status_code, _loose_json(content), grant, request_id)
                    if isinstance(error, GiniHTTPError):
                        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    raise error
                return parse_token(json_of(response))
            finally:
                response.close()

        return self.retry.run(attempt, idempotent=True, what=f"{grant} grant")

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        **body: Any,
    ) -> requests.Response:
        """Prepare and send one request. The request is built here rather than by
        ``Session.request``, whose merging of session settings costs a third of a request's CPU."""
        prepared = requests.Request(
            method, url, headers={**self.http.headers, **(headers or {})}, **body
        ).prepare()
        base = (
            self.settings.user_center_url
            if url.startswith(self.settings.user_center_url)
            else self.settings.api_url
        )
        return self._guarded(
            url,
            lambda: self.http.send(
                prepared,
                timeout=self.settings.timeout,
                verify=self.http.verify,
                proxies=self._proxies[base],
                stream=stream,
                allow_redirects=False,
            ),
        )

    def _guarded(self, url: str, step: Callable[[], T]) -> T:
        """Run ``step``, turning requests' exceptions into GiniTransportError.

        The new error is raised after the ``except`` block, so it has no cause and no context: a
        requests exception holds the prepared request, Authorization header included.
        """
        host = urlsplit(url).netloc
        try:
            return step()
        except requests.ConnectTimeout:
            error = GiniTransportError(f"Could not connect to {host} in time", sent=False)
        except requests.ReadTimeout:
            error = GiniTransportError(
                f"{host} did not answer within {self.settings.read_timeout:g} s", sent=True
            )
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
                error = GiniTransportError(f"Could not connect to {host}", sent=False)
            elif _cause(exc) == "ReadTimeoutError":
                error = GiniTransportError(
                    f"{host} stopped answering for {self.settings.read_timeout:g} s", sent=True
                )
            else:
                error = GiniTransportError(f"The connection to {host} broke ({_cause(exc)})", sent=True)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            error = GiniTransportError(f"The answer from {host} broke off ({_cause(exc)})", sent=True)
        raise error


def _verify(configured: bool | str) -> bool | str:
    """``verify=True`` honours REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE as requests would; an explicit CA
    bundle or ``false`` in the connection wins over them (unlike requests, psf/requests#3829)."""
    if configured is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return configured


def _cause(exc: BaseException) -> str:
    """The innermost cause's class name: enough to tell a reset from a truncation, with no URL or data."""
    current = exc
    for _ in range(6):
        inner = getattr(current, "reason", None)
        if inner is None and current.args and isinstance(current.args[-1], BaseException):
            inner = current.args[-1]
        if not isinstance(inner, BaseException):
            break
        current = inner
    return type(current).__name__
