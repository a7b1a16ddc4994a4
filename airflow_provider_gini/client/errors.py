"""Typed errors. They carry the status and the request id, never the request, its headers or
its body, so printing one can leak no credential or token."""

from __future__ import annotations

import unicodedata

# Control, format (bidi overrides, zero-width), surrogate, private-use, unassigned and line or
# paragraph separator characters: text from Gini goes into messages and log lines, where these
# could forge or hide a line, or fail a strict UTF-8 log handler.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
REQUEST_ID_LIMIT = 100


def shown(text: str, limit: int = 300) -> str:
    """Text from Gini, fit to show in a message: hidden characters as '?', at most ``limit``."""
    return "".join("?" if unicodedata.category(c) in _HIDDEN else c for c in text[:limit])


class GiniError(Exception):
    """Base of every error this package raises about Gini."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # Sanitised here, the one place every error's request id passes: it comes from the server
        # (a header or a body) and ends up in log lines, where a line break or an ANSI escape in
        # it could forge or hide a line.
        self.request_id = shown(request_id, REQUEST_ID_LIMIT) if request_id else None

    def __str__(self) -> str:
        details = [
            f"HTTP {self.status}" if self.status else "",
            f"X-Request-Id {self.request_id}" if self.request_id else "",
        ]
        details = [d for d in details if d]
        return f"{self.message} ({', '.join(details)})" if details else self.message


class GiniConfigError(GiniError, ValueError):
    """The connection or the arguments are wrong; retrying cannot help. The message says what to fix."""


class GiniAuthError(GiniError):
    """The user center refused to issue a token. Not retried: repeated password attempts can lock
    the account."""


class GiniInvalidUserCredentials(GiniAuthError):
    """The user's login or password was refused (``invalid_grant`` on the password grant)."""


class GiniInvalidClientCredentials(GiniAuthError):
    """The OAuth client id or secret was refused (``invalid_client``)."""


class GiniRefreshRejected(GiniAuthError):
    """The refresh token was refused (``invalid_grant``); the client falls back to one password grant."""


class GiniTransportError(GiniError):
    """The request did not complete: no connection, a timeout, or the connection broke.

    ``sent`` is False only when the request provably never reached the server (the connection
    could not be made), which is when even a non-idempotent request may be sent again.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class GiniProtocolError(GiniError):
    """Gini answered something this client cannot read: not JSON, truncated, or missing fields."""


class GiniRefusedAnswer(GiniProtocolError):
    """An answer past this client's bounds: larger than its size limit, or compressed. Not asked
    for again within the task, as the same request gets the same answer; the message names the
    connection extra that raises the limit."""


class GiniIncompleteListing(GiniProtocolError):
    """Gini's document list could not be proven complete; the message says what was seen.

    Raised instead of returning a partial list: a pull must not report success with less than
    every document of its window.
    """


class GiniHTTPError(GiniError):
    """Gini answered with an error status. ``codes`` are Gini's error codes (API v5 bodies), e.g.
    ``("2501",)`` for a document that does not exist."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        retry_after: float | None = None,
        codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after
        self.codes = codes


class GiniNotFound(GiniHTTPError):
    """404: the document (or resource) does not exist for this user."""


class GiniConflict(GiniHTTPError):
    """409: the resource is not in a state for this request (e.g. still PENDING)."""


class GiniRejected(GiniHTTPError):
    """400, 413, 415 or 422: Gini refused the request's content."""


class GiniUnauthorized(GiniHTTPError):
    """401 on an API call even after re-authenticating, or 403."""


class GiniRetryError(GiniError):
    """Transient failures went on past the retry budget (or a Retry-After exceeded it)."""

    def __init__(self, message: str, *, attempts: int, last: BaseException | None) -> None:
        status = last.status if isinstance(last, GiniError) else None
        request_id = last.request_id if isinstance(last, GiniError) else None
        super().__init__(message, status=status, request_id=request_id)
        self.attempts = attempts
        self.last = last


class GiniProcessingError(GiniError):
    """Gini finished processing a document with progress ERROR."""

    def __init__(self, message: str, *, document_id: str) -> None:
        super().__init__(message)
        self.document_id = document_id


class GiniProcessingTimeout(GiniError):
    """A document was still PENDING when the wait ran out."""

    def __init__(self, message: str, *, document_ids: list[str]) -> None:
        super().__init__(message)
        self.document_ids = document_ids


class GiniCancelled(GiniError):
    """The work was cancelled (the task is being stopped): no request was started after it."""


# Errors a new try cannot fix: a refused credential (where each try would be another password
# attempt towards an account lockout), a wrong argument or connection, a request Gini refused
# for its content, a missing resource, a forbidden one, a document Gini failed to process.
TERMINAL_ERRORS: tuple[type[GiniError], ...] = (
    GiniAuthError,
    GiniConfigError,
    GiniRejected,
    GiniNotFound,
    GiniUnauthorized,
    GiniProcessingError,
)


def is_terminal(exc: BaseException) -> bool:
    """Whether retrying the work that raised ``exc`` cannot succeed."""
    return isinstance(exc, TERMINAL_ERRORS)


class GiniPullIncomplete(GiniError):
    """A pull ran to its end but left more documents unfinished than it may: ``failed`` maps each
    failed document's id to its error, ``pending`` lists those still processing."""

    def __init__(self, message: str, *, failed: dict[str, str], pending: list[str]) -> None:
        super().__init__(message)
        self.failed = failed
        self.pending = pending
