"""Everything the client needs to know, checked once, before any request is made."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_gini.client.errors import GiniConfigError

DEFAULT_API_URL = "https://pay-api.gini.net"
DEFAULT_USER_CENTER_URL = "https://user.gini.net"
MiB = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RetrySettings:
    """Bounds of the one retry policy.

    The defaults ride out a Gini outage of about a minute (a burst of 503s for 30 s is far
    inside them) for unattended scheduled jobs: 8 attempts with exponential backoff from
    0.5 s, capped at 30 s per wait and 120 s in all.
    """

    max_attempts: int = 8
    max_elapsed: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise GiniConfigError("retry max_attempts must be at least 1")
        for name in ("max_elapsed", "backoff_initial", "backoff_max", "retry_after_cap"):
            if getattr(self, name) < 0:
                raise GiniConfigError(f"retry {name} must not be negative")


@dataclass(frozen=True)
class ClientSettings:
    client_id: str
    client_secret: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    user_center_url: str = DEFAULT_USER_CENTER_URL
    api_version: int = 1
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    refresh_leeway: float = 60.0
    pool_size: int = 10
    # Bounds of one request (counted from before connecting: sending, headers and the whole body
    # are cut off at it, connecting has connect_timeout per step; each retry has its own) and of
    # the bodies read: a server that trickles, or sends more than any answer of Gini's holds,
    # fails the request with a typed error instead of holding a task or its memory for ever.
    # Downloads (processed files) get longer: 100 MiB within 600 s is a floor of ~170 KiB/s.
    request_deadline: float = 120.0
    token_deadline: float = 30.0
    download_deadline: float = 600.0
    max_json_bytes: int = 32 * MiB
    max_error_bytes: int = 64 * 1024
    max_download_bytes: int = 100 * MiB
    # A ceiling on this session's request rate to the API; without it the session is unpaced
    # until Gini answers 429, and then paces itself to what Gini accepts (client/throttle.py).
    max_requests_per_second: float | None = None
    verify: bool | str = True
    retry: RetrySettings = field(default_factory=RetrySettings)

    def __post_init__(self) -> None:
        for name, where in (
            ("client_id", "the connection's extra 'client_id'"),
            ("client_secret", "the connection's extra 'client_secret'"),
            ("username", "the connection's Login (the Gini user's email)"),
            ("password", "the connection's Password (the Gini user's password)"),
        ):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise GiniConfigError(f"Gini connection: {name} is missing; set {where}")
        object.__setattr__(self, "api_url", secure_base_url(self.api_url, "host"))
        object.__setattr__(self, "user_center_url", secure_base_url(self.user_center_url, "user_center_url"))
        if (
            isinstance(self.api_version, bool)
            or not isinstance(self.api_version, int)
            or self.api_version < 1
        ):
            raise GiniConfigError(
                f"Gini connection: api_version must be a positive integer, got {self.api_version!r}"
            )
        for name in (
            "connect_timeout",
            "read_timeout",
            "request_deadline",
            "token_deadline",
            "download_deadline",
        ):
            if getattr(self, name) <= 0:
                raise GiniConfigError(f"Gini connection: {name} must be a positive number of seconds")
        for name in ("max_json_bytes", "max_error_bytes", "max_download_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GiniConfigError(
                    f"Gini connection: {name} must be a positive number of bytes, got {value!r}"
                )
        if self.pool_size < 1:
            raise GiniConfigError("Gini connection: pool_size must be at least 1")
        if self.max_requests_per_second is not None:
            checked_rate(self.max_requests_per_second, "Gini connection: max_requests_per_second")

    @property
    def media_type(self) -> str:
        return f"application/vnd.gini.v{self.api_version}+json"

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


MIN_CEILING = 0.01  # requests per second: one every 100 s; slower is a stopped task, not a pace


def checked_rate(value: object, name: str) -> float:
    """A request rate ceiling: a finite number of requests per second, at least MIN_CEILING."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not MIN_CEILING <= value < float("inf")
    ):
        raise GiniConfigError(
            f"{name} must be a number of requests per second from {MIN_CEILING} up, got {value!r}"
        )
    return float(value)


def is_loopback(host: str) -> bool:
    """A literal loopback address, or ``localhost`` itself. Not ``*.localhost``: RFC 6761 asks
    resolvers to keep those on loopback, but /etc/hosts, a search domain or a DNS server can send
    them anywhere, and plain http there would carry the password grant in clear text."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, lower-cased, with the scheme's default port filled in;
    a URL whose port cannot be read has port None, which no configured base URL has."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def is_under(url: str, base: str) -> bool:
    """Whether ``url`` is on ``base``'s origin and under its path, compared by origin and by whole
    path segments, never as strings: ``https://h:8080`` is not under ``https://h:80`` nor
    ``https://h/api-x`` under ``https://h/api``."""
    if url == base or url.startswith(base + "/"):
        # The common case, without parsing (a pull sends thousands of requests): the '/' ends
        # the base's authority or a whole path segment of it, so this is the same origin and prefix.
        return True
    if origin_of(url) != origin_of(base) or origin_of(base)[2] is None:
        return False
    prefix = urlsplit(base).path.rstrip("/")
    path = urlsplit(url).path
    return path == prefix or path.startswith(prefix + "/")


def _shown(value: str) -> str:
    """``value`` quoted for an error message, unless it may carry credentials (``user:pass@``)."""
    return "(not shown: it contains '@', as credentials would)" if "@" in value else repr(value)


def secure_base_url(value: str, name: str) -> str:
    """``https://host[:port][/prefix]`` from a URL or a bare host; plain http only for loopback."""
    if not isinstance(value, str) or not value.strip():
        raise GiniConfigError(f"Gini connection: {name} is empty; give a URL like https://pay-api.gini.net")
    raw = value.strip()
    if "://" not in raw:
        raw = f"https://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise GiniConfigError(f"Gini connection: {name} {_shown(value)} is not a valid URL") from None
    host = parts.hostname or ""
    if not host or parts.username or parts.password or parts.query or parts.fragment or " " in raw:
        raise GiniConfigError(
            f"Gini connection: {name} {_shown(value)} is not a valid base URL; give e.g. "
            "https://pay-api.gini.net (no user:password@, query or fragment)"
        )
    if parts.scheme not in ("https", "http"):
        raise GiniConfigError(f"Gini connection: {name} must use https, not {parts.scheme!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise GiniConfigError(
            f"Gini connection: {name} uses plain http to {host}; credentials are only sent over https "
            "(plain http is allowed only to localhost or a literal loopback address such as 127.0.0.1 "
            "or [::1], e.g. for the Gini sandbox; never through a proxy)"
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
