"""A hostile stand-in for Gini: a stdlib HTTP server on 127.0.0.1 (port 0, in a thread) that
answers the token request properly and every other route as a test scripts it: trickled a byte
at a time, compressed into a bomb, or far larger than any answer of Gini's. Bodies are streamed
from generators, so the test process never holds what it sends."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_gini.client import ClientSettings, GiniSession, RetrySettings
from airflow_provider_gini.client.api import GiniAPI

TOKEN = {"access_token": "hostile-access-token", "token_type": "bearer", "expires_in": 3600}
CLIENT = {"client_id": "hostile-client", "client_secret": "hostile-client-secret"}
USER = {"username": "user@example.com", "password": "hostile-password"}


@dataclass
class Answer:
    """One scripted answer: status, headers, and the body as chunks with a pause before each."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Callable[[], Iterable[bytes]] = lambda: ()
    pause: float = 0.0
    before_headers: float = 0.0  # seconds of silence before the status line
    header_pause: float = 0.0  # seconds before each byte of the status line and headers
    before_reading: float = 0.0  # seconds before the request's body is read (a stalled upload)


def trickle(data: bytes, every: float = 1.0, **headers: str) -> Answer:
    """``data`` one byte per ``every`` seconds after the headers (which announce its length)."""
    return Answer(
        headers={"Content-Type": "application/json", "Content-Length": str(len(data)), **headers},
        body=lambda: (data[i : i + 1] for i in range(len(data))),
        pause=every,
    )


def repeated(piece: bytes, total: int) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


def gzip_bomb(expanded: int) -> bytes:
    """``expanded`` bytes of zeros, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(expanded // len(zeros))]
    return b"".join(parts) + packer.flush()


def json_answer(value: Any, status: int = 200) -> Answer:
    data = json.dumps(value).encode()
    return Answer(
        status, {"Content-Type": "application/json", "Content-Length": str(len(data))}, lambda: [data]
    )


class HostileGini(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        # A small receive buffer (inherited by accepted sockets), so an upload the server does not
        # read blocks the sender after a few MiB, not after what loopback's large buffers take.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.server_bind()
        self.server_activate()
        self.scheme = "http"
        if tls is not None:  # served over TLS, with the certificate the test gives
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.routes: dict[str, Answer] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.arrived: dict[str, float] = {}  # path -> wall-clock time of its first request
        self.arrival = threading.Event()  # set when any request (but the token's) arrives

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)

    def session(self, **settings: Any) -> GiniSession:
        retry = RetrySettings(**{"backoff_initial": 0.01, "backoff_max": 0.05, **settings.pop("retry", {})})
        return GiniSession(
            ClientSettings(
                **CLIENT,
                **USER,
                api_url=self.base_url,
                user_center_url=self.base_url,
                retry=retry,
                **settings,
            )
        )

    def connection(self) -> dict[str, Any]:
        """An Airflow connection of type ``gini`` for this server."""
        return {
            "conn_type": "gini",
            "host": self.base_url,
            "login": USER["username"],
            "password": USER["password"],
            "extra": {**CLIENT, "user_center_url": self.base_url},
        }


class Client(GiniAPI):
    def __init__(self, session: GiniSession) -> None:
        self._session = session

    @property
    def gini(self) -> GiniSession:
        return self._session


class _Handler(BaseHTTPRequestHandler):
    server: HostileGini
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests.append((self.command, path, dict(self.headers)))
        self.server.arrived.setdefault(path, time.time())
        if path != "/oauth/token":
            self.server.arrival.set()
        answer = self.server.routes.get(path)
        if answer is None:
            answer = json_answer(TOKEN) if path == "/oauth/token" else json_answer({"message": "no"}, 404)
        try:
            time.sleep(answer.before_reading)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            time.sleep(answer.before_headers)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if "Content-Length" not in answer.headers:
                self.send_header("Connection", "close")  # the body ends where the connection does
                self.close_connection = True
            if answer.header_pause:
                self._trickle_headers(answer.header_pause)
            self.end_headers()
            self.wfile.flush()
            for chunk in answer.body():
                if answer.pause:
                    time.sleep(answer.pause)
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it should

    def _trickle_headers(self, pause: float) -> None:
        """The status line and headers so far, then 60 more headers, a byte per ``pause``."""
        buffered = b"".join(self._headers_buffer) + b"".join(b"X-Slow: %d\r\n" % i for i in range(60))
        self._headers_buffer = []
        for i in range(len(buffered)):
            time.sleep(pause)
            self.wfile.write(buffered[i : i + 1])
            self.wfile.flush()


@contextmanager
def hostile_gini(tls: ssl.SSLContext | None = None) -> Iterator[HostileGini]:
    server = HostileGini(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
