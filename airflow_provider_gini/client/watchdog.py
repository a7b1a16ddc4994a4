"""The request deadline before the body: sending a request and waiting for its answer's headers.

urllib3 bounds each socket operation, not their sum, so a server that reads an upload slowly or
sends its status line a byte at a time holds a request for as long as it likes, and a task being
stopped cannot cut such a wait off. Bodies are bounded by client/bounded.py; this bounds what
comes before. The transport opens an ``Exchange`` around each request; the connection classes
below hand the exchange their socket while they send and wait, and one thread per process shuts
that socket down when the exchange's deadline passes or its session is cancelled, which ends the
blocked read or write at once. (urllib3 2.3's own ``HTTPResponse.shutdown`` cuts reads the same
way, and only once there is a response.)
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool


class Exchange:
    """One request's sending and wait for its headers. ``cut`` says why the watchdog ended it."""

    __slots__ = ("cut", "deadline", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sock: Any = None  # a socket, an SSLSocket, or an HTTPS proxy tunnel's SSLTransport
        self.cut: str | None = None  # "late" or "cancelled"


class _Watchdog:
    def __init__(self) -> None:
        self._reset()
        # A forked task process gets a fresh lock and thread (the parent's thread does not exist
        # there, and its lock may have been held at the fork).
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a child, the exchanges in flight were the parent's threads': their sockets are the
        # parent's connections too, which a cut here would shut down.
        for inherited in getattr(self, "_watched", ()):
            inherited.sock = None
        # Reentrant (Condition's default): a signal handler that cancels a session (on_kill,
        # execution_timeout) may run in a thread that holds the lock.
        self._lock = threading.Condition()
        self._watched: set[Exchange] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange, sock: Any) -> None:
        if exchange.sock is sock:  # sending watched it already; the wait for headers goes on
            return
        with self._lock:
            exchange.sock = sock
            if exchange.cut is not None:  # cancelled before it began
                _shut(sock)
                return
            self._watched.add(exchange)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gini-deadlines", daemon=True)
                self._thread.start()
            elif exchange.deadline < self._wake_at:  # deadlines are seconds apart: rare
                self._lock.notify()

    def unwatch(self, exchange: Exchange) -> None:
        with self._lock:
            self._watched.discard(exchange)
            exchange.sock = None

    def cut(self, exchange: Exchange, why: str) -> None:
        with self._lock:
            self._cut(exchange, why)

    def _cut(self, exchange: Exchange, why: str) -> None:
        self._watched.discard(exchange)
        if exchange.cut is None:
            exchange.cut = why
            if exchange.sock is not None:
                _shut(exchange.sock)

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for exchange in [e for e in self._watched if e.deadline <= now]:
                    self._cut(exchange, "late")  # never raises: this thread must not die
                # Sleeps until the earliest deadline; an exchange that ends first is only dropped
                # from the set, so a busy pull wakes this thread about once a deadline, not per request.
                self._wake_at = min((e.deadline for e in self._watched), default=math.inf)
                self._lock.wait(None if self._wake_at == math.inf else self._wake_at - now)


def _shut(sock: Any) -> None:
    """Shut down the TCP socket under ``sock``, both ways: a blocked write (an upload Gini reads
    slowly) ends too, not only a read."""
    # The plain socket's own shutdown: SSLSocket.shutdown first drops its TLS state, which the
    # thread using it may be about to touch (and then writes in clear), and an HTTPS proxy's
    # tunnel (urllib3's SSLTransport) has no shutdown at all, only the socket it wraps.
    raw = getattr(sock, "socket", sock) if not isinstance(sock, socket.socket) else sock
    with contextlib.suppress(Exception):  # already closed, or not a socket: nothing to cut
        socket.socket.shutdown(raw, socket.SHUT_RDWR)


WATCHDOG = _Watchdog()
_current = threading.local()


@contextlib.contextmanager
def exchange(deadline: float) -> Iterator[Exchange]:
    """The exchange of the request this thread sends within the block."""
    current = Exchange(deadline)
    _current.exchange = current
    try:
        yield current
    finally:
        _current.exchange = None
        WATCHDOG.unwatch(current)


def _watch(connection: HTTPConnection) -> None:
    """Watch ``connection``'s socket for this thread's exchange, from now until the exchange ends
    (``exchange()`` unwatches it, before the connection can go back to its pool)."""
    current: Exchange | None = getattr(_current, "exchange", None)
    if current is not None and connection.sock is not None:
        WATCHDOG.watch(current, connection.sock)


class WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, its sending and its wait for headers watched by the deadline."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is None:
            # Connected here rather than inside request(), so the socket exists to be watched;
            # connecting has its own timeout. (urllib3 connects its HTTPS connections early too.)
            self.connect()
        _watch(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        _watch(self)  # a no-op after request(), which urllib3 always calls first
        return super().getresponse()


class WatchedHTTPSConnection(WatchedHTTPConnection, HTTPSConnection):
    pass


def watch_pool(pool: HTTPConnectionPool) -> None:
    """Make ``pool`` open watched connections. Connection classes other than urllib3's own (a
    SOCKS proxy's) are left as they are: their waits are bounded per read only."""
    if pool.ConnectionCls is HTTPSConnection:
        pool.ConnectionCls = WatchedHTTPSConnection
    elif pool.ConnectionCls is HTTPConnection:
        pool.ConnectionCls = WatchedHTTPConnection
