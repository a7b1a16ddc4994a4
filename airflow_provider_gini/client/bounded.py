"""Bounded reading of an answer's body, for the transport (client/transport.py), which wraps every
urllib3 answer in a ``BoundedBody`` before requests sees it.

requests reads a body through ``raw.stream()`` (``.content`` and ``iter_content`` both), so that
is the one door: here the body is read one socket read at a time, never decoded, within the
request's total deadline and its kind's size limit. urllib3's read timeout applies to each read
alone, so a server that trickles a byte a second would otherwise hold a request for ever, and its
decoder would turn a small gzip bomb into gigabytes (requests asks for decoded content).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from urllib3 import BaseHTTPResponse
from urllib3 import exceptions as urllib3_errors

from airflow_provider_gini.client.errors import GiniCancelled, GiniRefusedAnswer, GiniTransportError

# Read at most this much per socket read: small enough that the deadline is checked often.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class BodyKind:
    """What kind of answer is read, and its bounds: the whole request's time and the body's size,
    with the names of the settings (connection extras) that raise them."""

    name: str
    seconds: float
    deadline_setting: str
    limit: int
    limit_setting: str


class BoundedBody:
    """A urllib3 answer as requests reads it, bounded. Attributes it does not define are urllib3's."""

    def __init__(
        self, raw: BaseHTTPResponse, url: str, kind: BodyKind, deadline: float, read_timeout: float
    ) -> None:
        self.raw = raw
        self.kind = kind
        self.deadline = deadline
        self._url = url
        self._read_timeout = read_timeout
        self._limit = kind.limit
        self._quiet = False  # an error body: cut at the limit, not refused
        self._received = 0
        self.aborted = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def quietly(self, limit: int) -> None:
        """Read at most ``limit`` bytes of this body and drop the rest: an error answer's body
        carries a short message, and Gini's sending a large one must not cost its size."""
        self._limit, self._quiet = limit, True

    def abort(self) -> None:
        """Cut the connection under a read in progress (from another thread): the session was
        cancelled. The read then raises GiniCancelled rather than end the body early."""
        self.aborted.set()
        with contextlib.suppress(OSError, RuntimeError, ValueError):  # already closed or released
            self.raw.shutdown()

    def stream(self, amt: int | None = CHUNK, decode_content: bool | None = None) -> Iterator[bytes]:
        """The body's bytes as sent (``decode_content`` is ignored: nothing is decoded)."""
        self._refuse_encoding()
        self._check_length()
        size = min(amt or CHUNK, CHUNK)
        while not (self._quiet and self._received >= self._limit):
            chunk = self.read1(size)
            if not chunk:
                return
            yield chunk

    def read1(self, amt: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        self._settimeout(min(remaining, self._read_timeout))
        try:
            chunk = self.raw.read1(amt, decode_content=False)
        except urllib3_errors.ReadTimeoutError:
            if self.aborted.is_set():
                raise self._cancelled() from None
            if time.monotonic() >= self.deadline - 0.01:
                raise self._late() from None
            raise
        except urllib3_errors.HTTPError:
            if self.aborted.is_set():
                raise self._cancelled() from None
            raise
        if self.aborted.is_set():  # the end of the body may only be the cut connection
            raise self._cancelled()
        self._received += len(chunk)
        if self._received > self._limit:
            if self._quiet:
                return chunk[: len(chunk) - (self._received - self._limit)]
            raise self._too_large()
        return chunk

    def _settimeout(self, seconds: float) -> None:
        """The socket's timeout for the next read: never past the deadline."""
        sock = getattr(self.raw.connection, "sock", None)
        if sock is not None:
            sock.settimeout(seconds)

    def _refuse_encoding(self) -> None:
        encoding = self.raw.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return
        if self._quiet:  # an error body: unreadable, so "no readable error message"
            self._limit = 0
            return
        raise GiniRefusedAnswer(
            f"The answer from {self._host()} came with Content-Encoding {encoding[:40]!r} although "
            "this client asks for 'identity': compressed answers are refused, not decoded, so a "
            "small body cannot expand without bound in memory. A proxy between here and Gini may "
            "be compressing answers; configure it not to"
        )

    def _check_length(self) -> None:
        """Refuse at once a body whose announced length is over the limit."""
        length = self.raw.headers.get("Content-Length", "")
        if not self._quiet and length.isascii() and length.isdigit() and int(length) > self._limit:
            raise self._too_large(int(length))

    def _too_large(self, length: int | None = None) -> GiniRefusedAnswer:
        size = f"of {length} bytes" if length is not None else "of more bytes"
        kind = self.kind
        return GiniRefusedAnswer(
            f"The {kind.name} from {self._host()} is {size} than the {kind.limit_setting} limit "
            f"of {kind.limit} bytes, so it was not read; if such answers are expected, raise the "
            f"connection extra {kind.limit_setting!r}"
        )

    def _late(self) -> GiniTransportError:
        return late(self.kind, self._url, self._received)

    def _cancelled(self) -> GiniCancelled:
        return cut_off(self.kind, self._url)

    def _host(self) -> str:
        return urlsplit(self._url).netloc


def late(kind: BodyKind, url: str, received: int = 0) -> GiniTransportError:
    """A request past its kind's deadline, whether in its body (``received`` bytes of it) or before."""
    return GiniTransportError(
        f"The {kind.name} from {urlsplit(url).netloc} did not arrive in full within the "
        f"{kind.seconds:g} s {kind.deadline_setting} (a request's whole time: connecting, sending, "
        f"headers and body, {received} bytes of body received); if Gini is this slow, "
        f"raise the connection extra {kind.deadline_setting!r}",
        sent=True,
    )


def cut_off(kind: BodyKind, url: str) -> GiniCancelled:
    return GiniCancelled(f"The {kind.name} from {urlsplit(url).netloc} was cut off: the work was cancelled")
