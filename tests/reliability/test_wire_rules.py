"""The wire rules of issue 15 (items 4, 5 and 7, client side), each against a real server on
loopback: a hostile stdlib server started here, or the sandbox.

Secrets stay out of every frame's locals (rendered as Airflow 3.0's console renders them) also
when an interrupt lands during a grant; client credentials are form-encoded before HTTP Basic;
request ids are sanitised; the bearer token goes only to the API's origin; plain http only to
literal loopback and never through a proxy; base URLs compare as origins; ids from a Location
follow the id rule; every malformed body is a GiniProtocolError.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
import structlog.dev
import structlog.tracebacks

from airflow_provider_gini.client import ClientSettings, GiniClient, RetrySettings
from airflow_provider_gini.client.api import safe_id
from airflow_provider_gini.client.errors import (
    GiniAuthError,
    GiniConfigError,
    GiniError,
    GiniProtocolError,
    GiniRejected,
    GiniRetryError,
)
from airflow_provider_gini.client.settings import is_loopback, is_under
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import DEMO_USER, ClientSpec, RunningSandbox, run_sandbox
from airflow_provider_gini.sandbox.config import SandboxConfig
from tests.reliability.hostile import TOKEN as hostile_token

pytestmark = pytest.mark.timeout(120)

PASSWORD = "pw-Secret-4711"
CLIENT_SECRET = "client-Secret-0815"
ACCESS = "access-Token-a1b2c3"
REFRESH = "refresh-Token-d4e5f6"
NEW_ACCESS = "access-Token-g7h8i9"
ONE_TRY = {"max_attempts": 1}


# --- a hostile server -------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], bytes] | None  # None: read the request, never answer
Script = Callable[[Seen], Answer]


@dataclass
class Hostile:
    url: str
    # Not in the repr: the test's own frame is rendered with the client's, and what the server
    # saw (the grant's body, the Basic header) is no part of what the client leaves behind.
    seen: list[Seen] = field(default_factory=list, repr=False)
    hanging: threading.Event = field(default_factory=threading.Event)  # set when a request hangs
    release: threading.Event = field(default_factory=threading.Event)


def _handler(state: Hostile, script: Script) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen = Seen(self.command, self.path, dict(self.headers.items()), body)
            state.seen.append(seen)
            answer = script(seen)
            if answer is None:
                state.hanging.set()
                state.release.wait(30)
                return
            status, headers, content = answer
            # Raw, so a header may carry what BaseHTTPRequestHandler.send_header would not write.
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\n".encode()
            for name, value in headers.items():
                head += name.encode() + b": " + value.encode("latin-1") + b"\r\n"
            self.wfile.write(head + b"\r\n" + content)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def hostile(script: Script, port: int = 0) -> Iterator[Hostile]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    server.daemon_threads = True
    state = Hostile(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(state, script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def token_answer(
    access: str = ACCESS, refresh: str | None = REFRESH, expires_in: float = 3599, **more: Any
) -> Answer:
    body = {"access_token": access, "token_type": "bearer", "expires_in": expires_in, **more}
    if refresh:
        body["refresh_token"] = refresh
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def json_answer(body: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def client(
    url: str, user_center_url: str | None = None, secret: str = CLIENT_SECRET, **retry: Any
) -> GiniClient:
    return GiniClient(
        ClientSettings(
            client_id="wire-client",
            client_secret=secret,
            username="user@example.test",
            password=PASSWORD,
            api_url=url,
            user_center_url=user_center_url or url,
            read_timeout=20,
            retry=RetrySettings(backoff_initial=0.01, backoff_max=0.02, **retry),
        )
    )


# --- 1. no secret in any frame's locals --------------------------------------------------------


def rendered_with_locals(exc: BaseException) -> str:
    """``exc`` (and the last error of a GiniRetryError) rendered with every frame's locals: as
    Python's traceback module does, as Airflow 3.0's console does (structlog's
    RichTracebackFormatter, show_locals on by default) and as its JSON logs' dict tracebacks."""
    texts = []
    for error in (exc, getattr(exc, "last", None)):
        if error is None:
            continue
        texts.append(
            "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
        )
        exc_info = (type(error), error, error.__traceback__)
        out = io.StringIO()
        structlog.dev.RichTracebackFormatter(color_system=None, show_locals=True, max_frames=200, width=200)(
            out, exc_info
        )
        texts.append(out.getvalue())
        as_dict = structlog.tracebacks.ExceptionDictTransformer(show_locals=True, use_rich=False)(exc_info)
        texts.append(json.dumps(as_dict, default=str))
    return "\n".join(texts)


HOSTILE_ACCESS = hostile_token["access_token"]


def basic(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()


SECRETS = [PASSWORD, CLIENT_SECRET, basic("wire-client", CLIENT_SECRET), ACCESS, REFRESH, NEW_ACCESS]


def assert_no_secret(text: str) -> None:
    assert [s for s in SECRETS if s in text] == []


class TaskTimeout(Exception):
    """What Airflow's execution_timeout raises from its SIGALRM handler (AirflowTaskTimeout)."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _raise_timeout(signum: int, frame: Any) -> None:
    raise TaskTimeout("Timeout, PID: 1")


@contextmanager
def interrupt_when(
    ready: threading.Event, signum: int, handler: Callable[[int, Any], None], settle: float = 0.3
) -> Iterator[None]:
    """Deliver ``signum`` to the main thread (where the client waits) ``settle`` seconds after
    ``ready`` is set (a server holds a request): as Ctrl-C, SIGTERM or Airflow's
    execution_timeout alarm would."""
    previous = signal.signal(signum, handler)
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def fire() -> None:
        if ready.wait(20):
            time.sleep(settle)  # the client is blocked where the test means it to be by now
            signal.pthread_kill(main, signum)

    killer = threading.Thread(target=fire, daemon=True)
    killer.start()
    try:
        yield
    finally:
        killer.join(25)
        signal.signal(signum, previous)


INTERRUPTS = pytest.mark.parametrize(
    ("signum", "handler", "raised"),
    [(signal.SIGINT, _raise_interrupt, KeyboardInterrupt), (signal.SIGUSR1, _raise_timeout, TaskTimeout)],
    ids=["ctrl-c", "execution-timeout"],
)


@INTERRUPTS
def test_an_interrupt_during_the_password_grant_leaves_no_secret_in_any_frame(
    signum: int, handler: Callable[[int, Any], None], raised: type[BaseException]
) -> None:
    with (
        hostile(lambda seen: None) as server,
        client(server.url) as gini,
        interrupt_when(server.hanging, signum, handler),
        pytest.raises(raised) as caught,
    ):
        gini.get_access_token()
    text = rendered_with_locals(caught.value)
    assert "SecretDict(['password', 'username'])" in text  # the grant's frames were rendered
    assert "<request body," in text  # ... down to urllib3's, which hold the body
    assert_no_secret(text)
    assert PASSWORD in unquote_plus(server.seen[0].body.decode())  # the grant was really sent


@INTERRUPTS
def test_an_interrupt_during_the_refresh_grant_leaves_no_token_in_any_frame(
    signum: int, handler: Callable[[int, Any], None], raised: type[BaseException]
) -> None:
    def script(seen: Seen) -> Answer:
        if b"grant_type=refresh_token" in seen.body:
            return None
        return token_answer(expires_in=1)  # refreshed half a second later

    with hostile(script) as server, client(server.url) as gini:
        gini.get_access_token()
        time.sleep(0.6)
        with interrupt_when(server.hanging, signum, handler), pytest.raises(raised) as caught:
            gini.get_access_token()
    text = rendered_with_locals(caught.value)
    assert "SecretDict(['grant_type', 'refresh_token'])" in text
    assert_no_secret(text)
    assert REFRESH in server.seen[-1].body.decode()


# Built inside the server's thread, by name: a test's own frame is rendered too, and a canned
# answer among its locals would show the tokens the client is meant to hide.
REFUSED: dict[str, Callable[[], Answer]] = {
    "token-type": lambda: token_answer(token_type="mac"),
    "expires-in": lambda: token_answer(expires_in=-1),
    "refresh-token": lambda: token_answer(refresh=None, refresh_token=7),
    "not-an-object": lambda: json_answer([ACCESS, REFRESH]),
    "echoed-form": lambda: json_answer(
        {"error": "invalid_grant", "echo": f"password={PASSWORD}"}, status=400
    ),
}


@pytest.mark.parametrize("refused", REFUSED)
def test_a_refused_token_response_leaves_no_secret_in_any_frame(refused: str) -> None:
    with (
        hostile(lambda seen: REFUSED[refused]()) as server,
        client(server.url, **ONE_TRY) as gini,
        pytest.raises(GiniError) as caught,
    ):
        gini.get_access_token()
    expected = GiniAuthError if refused == "echoed-form" else GiniRetryError
    assert isinstance(caught.value, expected)
    text = rendered_with_locals(caught.value)
    assert "_send_grant" in text
    if expected is GiniRetryError:
        assert isinstance(caught.value.last, GiniProtocolError)  # type: ignore[attr-defined]
        assert "parse_token" in text
    assert_no_secret(text)


# --- 2. client credentials form-encoded before HTTP Basic ---------------------------------------

UNICODE_ID = "client é:1"
UNICODE_SECRET = "sëcret ✓ 密 +%&=:/"


def basic_credentials(seen: Seen) -> tuple[str, str]:
    scheme, _, encoded = seen.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def test_client_credentials_go_as_gini_sdks_send_them() -> None:
    with hostile(lambda seen: token_answer()) as server, client(server.url, secret=UNICODE_SECRET) as gini:
        gini.get_access_token()
    assert [basic_credentials(seen) for seen in server.seen] == [("wire-client", UNICODE_SECRET)]


def test_a_user_center_that_decodes_per_rfc_6749_gets_form_encoded_credentials() -> None:
    """RFC 6749 section 2.3.1: it refuses the raw form (the secret's "+" reads as a space); the
    form-urlencoded one follows at once, and the session keeps it for the refresh grant."""

    def rfc(seen: Seen) -> Answer:
        user, password = basic_credentials(seen)
        if (unquote_plus(user), unquote_plus(password)) == ("wire-client", UNICODE_SECRET):
            return token_answer(expires_in=2)
        return json_answer({"error": "invalid_client"}, status=401)

    with hostile(rfc) as server, client(server.url, secret=UNICODE_SECRET) as gini:
        gini.get_access_token()
        time.sleep(1.2)  # past half of the 2 s lifetime: the next call refreshes
        gini.get_access_token()
    forms = [basic_credentials(seen)[1] == UNICODE_SECRET for seen in server.seen]
    assert forms == [True, False, False], "raw, then form-encoded, then form-encoded again"
    assert "grant_type=refresh_token" in server.seen[2].body.decode() + server.seen[2].path


def test_a_unicode_client_secret_signs_in_at_the_sandbox() -> None:
    unicode_client = ClientSpec(client_id=UNICODE_ID, client_secret=UNICODE_SECRET)
    with run_sandbox(SandboxConfig(clients=[unicode_client])) as sandbox:
        settings = ClientSettings(
            client_id=UNICODE_ID,
            client_secret=UNICODE_SECRET,
            username=DEMO_USER.email,
            password=DEMO_USER.password,
            api_url=sandbox.base_url,
            user_center_url=sandbox.base_url,
        )
        with GiniClient(settings) as gini:
            assert gini.list_documents(limit=1)["documents"] is not None
        wrong = ClientSettings(**{**vars(settings), "client_secret": UNICODE_SECRET + "x"})
        with GiniClient(wrong) as gini, pytest.raises(GiniAuthError, match="client_id and client_secret"):
            gini.get_access_token()


# --- 3. request ids sanitised --------------------------------------------------------------------

HOSTILE_ID = "req-\x1b[2J\x1b[31mFORGED\x07\x85\x7f" + "x" * 500


@pytest.mark.parametrize(
    "answer",
    [
        (
            400,
            {"Content-Type": "application/json", "X-Request-Id": HOSTILE_ID},
            b'{"error": "invalid_grant"}',
        ),
        (503, {"Content-Type": "application/json", "X-Request-Id": HOSTILE_ID}, b"{}"),
        (200, {"Content-Type": "text/html", "X-Request-Id": HOSTILE_ID}, b"<html>"),
    ],
    ids=["oauth-error", "user-center-unavailable", "not-json"],
)
def test_request_ids_reach_errors_sanitised(answer: Answer) -> None:
    with (
        hostile(lambda seen: answer) as server,
        client(server.url, **ONE_TRY) as gini,
        pytest.raises(GiniError) as caught,
    ):
        gini.get_access_token()
    errors = [caught.value, getattr(caught.value, "last", None)]
    for error in filter(None, errors):
        assert error.request_id is not None
        assert error.request_id.startswith("req-?[2J?[31mFORGED")
        assert len(error.request_id) <= 100
        for text in (error.request_id, str(error)):
            assert not any(c in text for c in "\x1b\x07\x85\x7f\r\n")


# --- 4. transport rules ---------------------------------------------------------------------------


def test_get_conn_sends_the_token_only_to_the_api_origin(gini_connection: RunningSandbox) -> None:
    hook = GiniHook()
    session = hook.get_conn()
    with hostile(lambda seen: json_answer({})) as other:
        assert session.get(f"{gini_connection.base_url}/documents", params={"limit": 1}, timeout=10).ok
        session.get(f"{other.url}/documents", timeout=10)  # another port of the same host
        session.headers["Authorization"] = "Bearer set-by-hand"
        session.get(f"{other.url}/x", timeout=10)
    hook.close()
    assert [s.headers.get("Authorization") for s in other.seen] == [None, None]
    assert [r["path"] for r in gini_connection.requests()] == ["/oauth/token", "/documents"]


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8080", True),
        ("http://LOCALHOST:8080", True),
        ("http://127.0.0.2:8080", True),
        ("http://[::1]:8080", True),
        ("http://gini.localhost:8080", False),
        ("http://localhost.example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_plain_http_only_to_literal_loopback(url: str, loopback: bool) -> None:
    make = lambda: ClientSettings("c", "s", "u", "p", api_url=url, user_center_url=url)  # noqa: E731
    if loopback:
        assert make().api_url == url.replace("LOCALHOST", "localhost")
    else:
        with pytest.raises(GiniConfigError, match=r"plain http.*localhost or a literal loopback address"):
            make()
    assert is_loopback("gini.localhost") is False


def test_plain_http_loopback_never_goes_through_a_proxy(
    gini_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile(lambda seen: (502, {}, b"")) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        settings = ClientSettings(
            "gini-sandbox-client",
            "sandbox-client-secret",
            DEMO_USER.email,
            DEMO_USER.password,
            api_url=gini_sandbox.base_url,
            user_center_url=gini_sandbox.base_url,
        )
        with GiniClient(settings) as gini:
            gini.list_documents(limit=1)
    assert proxy.seen == []
    assert [r["path"] for r in gini_sandbox.requests()] == ["/oauth/token", "/documents"]


@contextmanager
def prefix_ports(script: Script) -> Iterator[tuple[Hostile, Hostile]]:
    """Two servers whose URLs are string prefixes: http://127.0.0.1:4512 and http://127.0.0.1:45123."""
    for _ in range(200):
        with hostile(script) as longer:
            port = int(longer.url.rsplit(":", 1)[1])
            if port < 10240:
                continue
            try:
                with hostile(script, port // 10) as shorter:
                    yield shorter, longer
                    return
            except OSError:
                continue
    pytest.skip("no pair of free ports where one is a prefix of the other")


def api_or_token(seen: Seen) -> Answer:
    if seen.path.startswith("/oauth/token"):
        return token_answer()
    return json_answer({"documents": [], "totalCount": 0})


@pytest.mark.parametrize("prefix_is", ["user center", "api"])
def test_a_base_url_that_is_a_prefix_of_the_other_routes_correctly(prefix_is: str) -> None:
    with prefix_ports(api_or_token) as (shorter, longer):
        center, api = (shorter, longer) if prefix_is == "user center" else (longer, shorter)
        with client(api.url, user_center_url=center.url) as gini:
            gini.list_documents(limit=1)
    assert [s.path.split("?")[0] for s in center.seen] == ["/oauth/token"]
    assert [s.path.split("?")[0] for s in api.seen] == ["/documents"]
    assert api.seen[0].headers.get("Authorization", "").startswith("Bearer ")


@pytest.mark.parametrize(
    ("url", "base", "under"),
    [
        ("https://h/documents/1", "https://h", True),
        ("https://h:443/documents", "https://h", True),
        ("HTTPS://H/documents", "https://h", True),
        ("https://h:8443/documents", "https://h", False),
        ("http://h/documents", "https://h", False),
        ("https://h.evil/documents", "https://h", False),
        ("https://h/api-x/documents", "https://h/api", False),
        ("https://h/api/documents", "https://h/api", True),
        ("https://h/api", "https://h/api", True),
        ("https://h@evil/api", "https://h/api", False),
        ("https://h:x/api", "https://h/api", False),
    ],
)
def test_urls_compare_as_origins_and_path_segments(url: str, base: str, under: bool) -> None:
    assert is_under(url, base) is under


def created_at(location: str) -> Script:
    """Answers 201 with ``location``, its "API" replaced by this server's own URL."""

    def script(seen: Seen) -> Answer:
        if seen.path.startswith("/oauth/token"):
            return token_answer()
        return 201, {"Location": location.replace("API", f"http://{seen.headers['Host']}")}, b""

    return script


@pytest.mark.parametrize(
    ("location", "created"),
    [
        ("API/documents/6f1c2a7e-3b0d", "6f1c2a7e-3b0d"),
        ("API/documents/6f1c2a7e-3b0d/", "6f1c2a7e-3b0d"),
        ("/documents/abc", "abc"),
        ("API/documents/..", None),
        ("API/documents/%2e%2e", None),
        ("API/documents/a/b", None),
        ("API/documents/", None),
        ("API/paymentRequests/abc", None),
        ("http://127.0.0.1:1/documents/abc", None),
        ("API/documents/abc%0A", None),
    ],
)
def test_ids_from_a_location_follow_the_id_rule(location: str, created: str | None) -> None:
    with hostile(created_at(location)) as server, client(server.url) as gini:
        if created is not None:
            assert gini.upload_document(b"%PDF-1.4 x", filename="a.pdf") == created
        else:
            with pytest.raises(GiniProtocolError, match="Location"):
                gini.upload_document(b"%PDF-1.4 x", filename="a.pdf")


def test_a_payment_request_id_is_not_taken_from_a_document_location() -> None:
    with (
        hostile(created_at("API/documents/abc")) as server,
        client(server.url) as gini,
        pytest.raises(GiniProtocolError, match="outside /paymentRequests/"),
    ):
        gini.create_payment_request(
            payment_provider="p",
            recipient="r",
            iban="DE02120300000000202051",
            amount="1.00:EUR",
            purpose="x",
        )


def test_the_id_rule_refuses_a_trailing_newline() -> None:
    assert safe_id("6f1c2a7e-3b0d") == "6f1c2a7e-3b0d"
    for hostile_id in ("abc\n", "abc\r", "..", ".", "a/b", "", "x" * 200, "\x00", None):
        with pytest.raises(GiniProtocolError):
            safe_id(hostile_id)


# --- 5. every malformed body is a GiniProtocolError ------------------------------------------------

MALFORMED = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "huge integer": b'{"documents": [], "totalCount": ' + b"9" * 5000 + b"}",
    "invalid utf-8": b'{"documents": [], "x": "\xff\xfe"}',
    "NaN": b'{"documents": [], "totalCount": NaN}',
    "Infinity": b'{"access_token": "a", "expires_in": Infinity}',
}


READS: dict[str, Callable[[GiniClient], Any]] = {
    "token": lambda gini: gini.get_access_token(),
    "list": lambda gini: gini.list_documents(limit=1),
    "listing": lambda gini: list(gini.iter_documents(created_after=0, created_before=10)),
    "document": lambda gini: gini.get_document("abc"),
}


def malformed(where: str, body: bytes) -> Script:
    def script(seen: Seen) -> Answer:
        if seen.path.startswith("/oauth/token") and where != "token":
            return token_answer()
        return 200, {"Content-Type": "application/json"}, body

    return script


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("where", ["token", "list", "listing", "document"])
def test_a_malformed_body_is_a_protocol_error(where: str, body: bytes) -> None:
    with (
        hostile(malformed(where, body)) as server,
        client(server.url, **ONE_TRY) as gini,
        pytest.raises(GiniRetryError) as caught,
    ):
        READS[where](gini)
    assert isinstance(caught.value.last, GiniProtocolError), repr(caught.value.last)
    assert caught.value.last.__context__ is None  # the decoder's error (holding the body) is dropped


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_error_body_is_still_a_typed_error(body: bytes) -> None:
    def script(seen: Seen) -> Answer:
        if seen.path.startswith("/oauth/token"):
            return token_answer()
        return 400, {"Content-Type": "application/json"}, body

    with hostile(script) as server, client(server.url) as gini, pytest.raises(GiniRejected) as caught:
        gini.get_document("abc")
    assert "no readable error message" in str(caught.value)


def test_the_recursion_limit_is_what_deep_nesting_hits() -> None:
    """Not vacuous: the nesting above is deeper than Python's parser goes."""
    with pytest.raises(RecursionError):
        json.loads(MALFORMED["deep nesting"])
    assert sys.getrecursionlimit() < 100_000


@INTERRUPTS
def test_an_interrupt_while_an_upload_is_being_sent_leaves_no_token_in_any_frame(
    signum: int, handler: Callable[[int, Any], None], raised: type[BaseException]
) -> None:
    from tests.reliability.hostile import Answer, Client, hostile_gini

    with hostile_gini() as server:
        # Gini reads nothing of the upload for a while: the client stays blocked sending it.
        server.routes["/documents"] = Answer(before_reading=20, status=201)
        gini = Client(server.session())
        gini.get_access_token()
        # Once the upload's headers are out, while its body is being sent.
        try:
            with interrupt_when(server.arrival, signum, handler, settle=0.5), pytest.raises(raised) as caught:
                gini.upload_document(io.BytesIO(b"%PDF-" + bytes(9 * 1024 * 1024)), "big.pdf")
        finally:
            gini.gini.close()
    text = rendered_with_locals(caught.value)
    assert "upload_document" in text  # the upload's frames were rendered
    assert re.search(r'http/client\.py", line \d+, in send\b', text)  # ... down to the blocked send
    assert HOSTILE_ACCESS not in text  # (a module constant: this test's own frame is rendered too)
