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
from typing import Any, TypeVar, cast
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from requests.structures import CaseInsensitiveDict
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors

from airflow_provider_gini import __version__
from airflow_provider_gini.client.bounded import BodyKind, BoundedBody, cut_off, late
from airflow_provider_gini.client.errors import (
    GiniConflict,
    GiniHTTPError,
    GiniNotFound,
    GiniProtocolError,
    GiniRejected,
    GiniTransportError,
    GiniUnauthorized,
    shown,
)
from airflow_provider_gini.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_gini.client.settings import ClientSettings, is_under
from airflow_provider_gini.client.throttle import Throttle
from airflow_provider_gini.client.tokens import (
    Bearer,
    SecretDict,
    Token,
    TokenManager,
    oauth_error,
    parse_token,
)
from airflow_provider_gini.client.watchdog import WATCHDOG, Exchange, exchange, watch_pool

T = TypeVar("T")
USER_AGENT = f"airflow-provider-gini/{__version__}"
_CODE = re.compile(r"\A[A-Za-z0-9._-]{1,20}\Z")
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


class ManagedBearer(AuthBase):
    """Attaches the current access token; for callers who use ``get_conn()``'s Session directly.

    Only to requests under the configured API URL (origin and path prefix): a request of the
    Session to any other host, or to the API's host over another scheme or port, goes without
    it, and an Authorization header set on the Session is taken off such a request too.
    """

    def __init__(self, tokens: TokenManager, api_url: str) -> None:
        self._tokens = tokens
        self._api_url = api_url

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url and is_under(request.url, self._api_url):
            request.headers["Authorization"] = f"Bearer {self._tokens.token()}"
        else:
            request.headers.pop("Authorization", None)
        return request


class _Body:
    """A request body for urllib3 whose repr hides it: a grant's body holds the password or the
    refresh token, and urllib3 keeps the body in the locals of the frames that wait for the
    answer, which Airflow 3.0's console renders when an interrupt or a timeout lands there.
    urllib3 2 sends an iterable body chunk by chunk (Content-Length is set by requests); the one
    chunk is a memoryview, whose repr does not show its bytes either."""

    __slots__ = ("_data",)

    def __init__(self, data: str | bytes) -> None:
        self._data = data.encode("utf-8") if isinstance(data, str) else data

    def __iter__(self) -> Any:
        yield memoryview(self._data)

    def __repr__(self) -> str:
        return f"<request body, {len(self._data)} bytes>"


def _loads(content: bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity, which Python would read, are refused."""
    return json.loads(content, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def json_of(response: requests.Response) -> Any:
    media = response.headers.get("Content-Type", "")
    problem = (
        None
        if "json" in media.lower()
        else f"Gini answered {media or 'no content type'} where JSON was expected"
    )
    if problem is None:
        try:
            return _loads(response.content)
        except (ValueError, RecursionError):  # UnicodeDecodeError and huge integers are ValueErrors
            # Raised below, outside the except block: the decode error keeps the whole body
            # (for a token response, the tokens) and must not ride along as the context.
            problem = "Gini answered unreadable JSON (truncated, malformed or nested too deep)"
    raise GiniProtocolError(
        problem, status=response.status_code, request_id=response.headers.get("X-Request-Id")
    )


def _loose_json(content: bytes) -> Any:
    """An error body's JSON, or None when it is not JSON: error bodies may be anything (nested
    too deep for the parser included)."""
    try:
        return _loads(content)
    except (ValueError, RecursionError):
        return None


def _error_message(response: requests.Response) -> tuple[str, str | None, tuple[str, ...]]:
    """The message, request id and error codes of an error answer, from either body Gini sends:
    ``{"message", "requestId"}`` (the Pay API, gini-api-ruby) or ``{"items": [{"code", "message",
    "object"}], "requestId", "message"?}`` (API v5, the mobile SDKs). docs/gini-compat.md.
    The objects an item names are left out of 401 and 403 answers: they concern credentials."""
    header = response.headers.get("X-Request-Id")
    request_id = shown(header, 100) if header else None
    body = _loose_json(response.content[:65536])
    if not isinstance(body, dict):
        return "no readable error message", request_id, ()
    if request_id is None and isinstance(body.get("requestId"), str):
        request_id = shown(body["requestId"], 100)
    top = body.get("message") or body.get("error_description") or body.get("error")
    parts = [top] if isinstance(top, str) and top else []
    codes: list[str] = []
    items = body.get("items")
    for item in items[:10] if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        code, text, objects = item.get("code"), item.get("message"), item.get("object")
        code = str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None
        part = text if isinstance(text, str) else ""
        if code and _CODE.match(code):
            codes.append(code)
            part = f"{part} (code {code})" if part else f"code {code}"
        if isinstance(objects, list) and objects and response.status_code not in (401, 403):
            part += " [" + ", ".join(str(o)[:64] for o in objects[:5]) + "]"
        if part and part not in parts:
            parts.append(part)
    if not parts:
        return "no readable error message", request_id, tuple(codes)
    return shown("; ".join(parts), 500), request_id, tuple(codes)


class GiniSession:
    def __init__(
        self,
        settings: ClientSettings,
        *,
        on_secret: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        # The environment (proxies, CA bundle) is read once here, not on every request: requests'
        # per-request scan of os.environ costs more CPU than the request itself under load.
        verify = _verify(settings.verify)
        bases = (settings.api_url, settings.user_center_url)
        self._routes = {base: _Route(base, verify, settings.pool_size) for base in bases}
        self._bases = sorted(self._routes, key=len, reverse=True)  # the longer of nested bases first
        # Asked for explicitly, and a compressed answer is refused anyway (client/bounded.py).
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": settings.media_type,
            "Accept-Encoding": "identity",
        }
        s = settings
        self._json_kind = BodyKind(
            "answer", s.request_deadline, "request_deadline", s.max_json_bytes, "max_json_bytes"
        )
        self._download_kind = BodyKind(
            "download", s.download_deadline, "download_deadline", s.max_download_bytes, "max_download_bytes"
        )
        self._token_kind = BodyKind(
            "token answer", s.token_deadline, "token_deadline", s.max_json_bytes, "max_json_bytes"
        )
        # The requests being sent or waiting for headers, and the bodies being read now, which
        # cancel() cuts off.
        self._exchanges: set[Exchange] = set()
        self._open: set[BoundedBody] = set()
        # get_conn()'s Session, for callers who make their own requests; ours do not go through it.
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=settings.pool_size, max_retries=0)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.http.trust_env = False
        self.http.verify = verify
        self.http.headers.update(self._headers)
        self.retry = RetryPolicy(settings.retry, sleep)
        # API requests only: the user center is another server, and a grant is rare.
        self.throttle = Throttle(settings.max_requests_per_second, hold_cap=settings.retry.retry_after_cap)
        self.tokens = TokenManager(
            settings.username,
            settings.password,
            self._send_grant,
            leeway=settings.refresh_leeway,
            on_secret=on_secret,
        )
        self.http.auth = ManagedBearer(self.tokens, settings.api_url)
        # Client authentication is HTTP Basic. Gini's own SDKs send the id and secret as they are;
        # RFC 6749 section 2.3.1 has them form-urlencoded first, and no source says which one
        # Gini's user center decodes (docs/gini-compat.md). The two differ only for characters
        # other than letters, digits and -._~ (a base64-style secret's + / =). So the SDKs' form
        # goes first (UTF-8, so any Unicode secret can be sent), and a 401 to it is asked once
        # more in the RFC's form, which this session then keeps.
        raw = (settings.client_id, settings.client_secret)
        encoded = (quote_plus(settings.client_id), quote_plus(settings.client_secret))
        self._client_auths = [HTTPBasicAuth(raw[0].encode(), raw[1].encode())]
        if encoded != raw:
            self._client_auths.append(HTTPBasicAuth(*encoded))

    def __repr__(self) -> str:
        return f"GiniSession(api_url={self.settings.api_url!r}, username={self.settings.username!r})"

    def cancel(self) -> None:
        """Stop this session's work: retry waits end, no new attempt starts, and requests being
        sent, waiting for their answers or reading them are cut off (GiniCancelled)."""
        self.retry.cancel()
        for current in list(self._exchanges):
            WATCHDOG.cut(current, "cancelled")
        for body in list(self._open):
            body.abort()

    def close(self) -> None:
        self.http.close()
        for route in self._routes.values():
            route.adapter.close()

    def url(self, path: str) -> str:
        """An absolute API URL; absolute URLs (from Location headers) must stay on the API's origin,
        so the token is never sent elsewhere."""
        if "://" not in path:
            if not path.startswith("/"):  # "@host/..." after the base URL would name another host
                raise GiniProtocolError(f"Not an API path: {shown(path, 80)!r}")
            return f"{self.settings.api_url}{path}"
        if not is_under(path, self.settings.api_url):
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
        kind = self._download_kind if kwargs.get("stream") else self._json_kind

        def attempt() -> T:
            bearer = Bearer(self.tokens.token())
            response = self._paced(what, method, url, bearer=bearer, kind=kind, **kwargs)
            if response.status_code == 401:
                self._finish(response)
                self.tokens.invalidate(bearer)
                bearer = Bearer(self.tokens.token())
                response = self._paced(what, method, url, bearer=bearer, kind=kind, **kwargs)
            try:
                self._check(response, expect, what)
                return self._guarded(url, lambda: read(response))
            finally:
                self._finish(response)

        return self.retry.run(attempt, idempotent=idempotent, what=what)

    def _paced(self, what: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``_send`` in its turn (client/throttle.py), telling the throttle how it was answered."""
        pace = self.throttle.turn(self.retry.cancelled)
        self.retry.check_cancelled(what)
        response = self._send(method, url, **kwargs)
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        self.throttle.answered(pace, status, retry_after)
        return response

    def _check(self, response: requests.Response, expect: tuple[int, ...], what: str) -> None:
        status = response.status_code
        if status in expect:
            return
        self._read_error_body(response)
        message, request_id, codes = _error_message(response)
        message = self._redact(message)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        if status == 401:
            message = f"{message}; a freshly issued token was refused too"
        cls = _ERROR_CLASSES.get(status, GiniHTTPError)
        raise cls(
            f"Gini answered {status} to {what}: {message}",
            status=status,
            request_id=request_id,
            retry_after=retry_after,
            codes=codes,
        )

    def _read_error_body(self, response: requests.Response) -> None:
        """Read an error answer's body, at most max_error_bytes of it (inside the retried attempt):
        its message is short, its size is the server's choice."""
        cast(BoundedBody, response.raw).quietly(self.settings.max_error_bytes)
        self._guarded(response.url, lambda: response.content)

    def _redact(self, text: str) -> str:
        """``text`` without any secret this session knows: an error body may echo one."""
        for secret in (self.settings.password, self.settings.client_secret, *self.tokens.current()):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "<redacted>")
        return text

    def _send_grant(self, grant: str, form: SecretDict) -> Token:
        url = f"{self.settings.user_center_url}/oauth/token"
        if grant == "password":
            params, data = {"grant_type": "password"}, form
        else:
            params, data = None, SecretDict(grant_type=grant, **form)

        def attempt() -> Token:
            for auth in list(self._client_auths):
                response = self._send(
                    "POST",
                    url,
                    kind=self._token_kind,
                    params=params,
                    data=data,
                    auth=auth,
                    headers={"Accept": "application/json"},
                )
                if response.status_code != 401 or auth is self._client_auths[-1]:
                    break
                self._finish(response)
                self._client_auths.remove(auth)  # this user center reads the other form
            try:
                if response.status_code != 200:
                    self._read_error_body(response)
                    # The error body goes straight in, never into a local: it may echo the form.
                    error = oauth_error(
                        response.status_code,
                        _loose_json(response.content),
                        grant,
                        response.headers.get("X-Request-Id"),
                    )
                    if isinstance(error, GiniHTTPError):
                        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    raise error
                self._guarded(url, lambda: response.content)  # read here, inside the retried attempt
                return parse_token(json_of(response))
            finally:
                self._finish(response)

        return self.retry.run(attempt, idempotent=True, what=f"{grant} grant")

    def _send(
        self,
        method: str,
        url: str,
        *,
        kind: BodyKind,
        bearer: Bearer | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = False,
        **body: Any,
    ) -> requests.Response:
        """Send one request straight through urllib3's pool for its origin.

        requests' Session.send and Request.prepare cost more CPU than the request itself (cookie
        jars, hooks, settings merging, per-request adapter lookup), and a pull is CPU-bound, so
        requests only encodes bodies (forms, JSON) here; what comes back is a requests.Response
        whose body reads are bounded by ``kind``'s deadline and size (client/bounded.py).
        """
        deadline = time.monotonic() + kind.seconds
        route = self._route(url)
        sent = SecretDict({**self._headers, **(headers or {})})
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer.token}"
        # The body stays in `prepared` (a grant's holds the password), never in a plain local.
        prepared: requests.PreparedRequest | None = None
        if body:
            prepared = requests.Request(method, url, headers=sent, params=params, **body).prepare()
            url, sent = prepared.url or url, SecretDict(prepared.headers)
        elif params:
            url = f"{url}?{urlencode(params)}"
        # Authorization first: urllib3 sends the headers in a loop whose variable keeps the last
        # value while the body goes out, in a frame an interrupt's traceback renders with its
        # locals (an upload can be blocked there for long).
        sent = SecretDict(sorted(sent.items(), key=lambda item: item[0] != "Authorization"))
        raw = self._exchange(
            url,
            kind,
            deadline,
            lambda: route.pool.urlopen(
                method,
                route.target(url),
                body=None if prepared is None or prepared.body is None else _Body(prepared.body),
                headers=sent,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=False,
                # Connecting and each read of the headers within what is left of the deadline;
                # the whole of sending and the headers is bounded by the watchdog, the body's
                # reads by BoundedBody.
                timeout=Timeout(
                    connect=min(self.settings.connect_timeout, kind.seconds),
                    read=min(self.settings.read_timeout, max(deadline - time.monotonic(), 0.001)),
                ),
            ),
        )
        bounded = BoundedBody(raw, url, kind, deadline, self.settings.read_timeout)
        self._open.add(bounded)
        if self.retry.cancelled.is_set():  # cancel() ran before this body was registered
            bounded.abort()
        return _response(bounded, url)

    def _exchange(
        self, url: str, kind: BodyKind, deadline: float, send: Callable[[], BaseHTTPResponse]
    ) -> BaseHTTPResponse:
        """``send()``, guarded, its sending and wait for headers cut off by the watchdog at the
        deadline or by cancel(), with the error that says which. An answer whose headers arrived
        is returned even when cut just then: an upload's Location must not be thrown away (its
        body, if read, fails on its own)."""
        with exchange(deadline) as current:
            self._exchanges.add(current)
            if self.retry.cancelled.is_set():  # cancel() ran before this request was registered
                WATCHDOG.cut(current, "cancelled")
            try:
                return self._guarded(url, send)
            except GiniTransportError:
                if current.cut is None:
                    raise
            finally:
                self._exchanges.discard(current)
        # The cut's own error, without the transport error it caused as context.
        raise late(kind, url) if current.cut == "late" else cut_off(kind, url)

    def _finish(self, response: requests.Response) -> None:
        response.close()
        self._open.discard(response.raw)

    def _route(self, url: str) -> _Route:
        """The pool of the configured base URL that ``url`` is under, compared as origins and path
        segments (a user center URL may be a string prefix of the API's, or the other way round)."""
        for base in self._bases:
            if is_under(url, base):
                return self._routes[base]
        raise GiniProtocolError(f"Refusing to send to {urlsplit(url).netloc!r}: not a configured Gini URL")

    def _guarded(self, url: str, step: Callable[[], T]) -> T:
        """Run ``step``, turning requests' and urllib3's exceptions into GiniTransportError.

        The new error is raised after the ``except`` block, so it has no cause and no context: a
        requests exception holds the prepared request, Authorization header included.
        """
        try:
            return step()
        except _TRANSPORT_ERRORS as exc:
            message, sent = _transport_failure(exc, self.settings.read_timeout)
        # Named only on failure: splitting the URL on every request costs a pull measurable CPU.
        raise GiniTransportError(message.format(host=urlsplit(url).netloc), sent=sent)


_TRANSPORT_ERRORS = (
    requests.ConnectionError,  # ConnectTimeout is one
    requests.ReadTimeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3_errors.HTTPError,
)


def _transport_failure(exc: BaseException, read_timeout: float) -> tuple[str, bool]:
    """What went wrong, with a ``{host}`` placeholder, and whether the request may have reached Gini."""
    if isinstance(exc, requests.ConnectTimeout):
        return "Could not connect to {host} in time", False
    if isinstance(exc, requests.ReadTimeout):
        return f"{{host}} did not answer within {read_timeout:g} s", True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, urllib3_errors.ConnectTimeoutError):
            return "Could not connect to {host}", False
        if _cause(exc) == "ReadTimeoutError":
            return f"{{host}} stopped answering for {read_timeout:g} s", True
        return f"The connection to {{host}} broke ({_cause(exc)})", True
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return f"The answer from {{host}} broke off ({_cause(exc)})", True
    # urllib3's own errors come from sending (requests translates those raised while reading).
    if isinstance(exc, urllib3_errors.ConnectTimeoutError):  # NewConnectionError (refused, no route) is one
        return "Could not connect to {host}", False
    if isinstance(exc, urllib3_errors.ReadTimeoutError):
        return f"{{host}} did not answer within {read_timeout:g} s", True
    return f"The connection to {{host}} broke ({_cause(exc)})", True


class _Route:
    """The connection pool for one origin, and how to name a URL to it: the path, or the whole
    URL when it goes through a plain-HTTP proxy. Proxy and TLS settings are requests' own."""

    def __init__(self, base: str, verify: bool | str, pool_size: int) -> None:
        self.adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        # Plain http is allowed only to loopback (settings.secure_base_url), and never through a
        # proxy: HTTP_PROXY would carry the password grant in clear text to the proxy.
        proxies = requests.utils.get_environ_proxies(base) if base.startswith("https://") else {}
        probe = requests.Request("GET", base).prepare()
        pool = self.adapter.get_connection_with_tls_context(probe, verify, proxies)
        self.pool = cast(HTTPConnectionPool, pool)
        watch_pool(self.pool)
        parts = urlsplit(base)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.whole_url = self.adapter.request_url(probe, proxies) != probe.path_url

    def target(self, url: str) -> str:
        if self.whole_url:
            return url
        if url.startswith(self.origin + "/"):
            return url[len(self.origin) :]
        # url() accepts the origin spelled otherwise too (an explicit default port, upper-case
        # host): then from the parsed URL, as slicing would leave ":443/..." as the target.
        parts = urlsplit(url)
        return f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"


def _response(raw: BoundedBody, url: str) -> requests.Response:
    """What requests' adapter makes of a urllib3 answer, without its cookie extraction."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason or ""
    response.url = url
    return response


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
