"""Secrets stay secret: not in reprs, URLs or exception texts; every token is registered with
Airflow's secrets masker; TLS is verified, every request has timeouts and says who it is.

The secrets searched for are the sandbox's own list (every token it issued, every client
secret, every password) plus the wrong credentials a test made up."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from urllib3.exceptions import InsecureRequestWarning

from airflow_provider_gini import __version__
from airflow_provider_gini.client import (
    GiniError,
    GiniInvalidClientCredentials,
    GiniInvalidUserCredentials,
    GiniRetryError,
    GiniTransportError,
    GiniUnauthorized,
)
from airflow_provider_gini.client.errors import GiniCancelled
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox
from tests.compat import redact

MakeHook = Callable[..., GiniHook]
SetConnection = Callable[..., None]
WRONG_PASSWORD = "wrong-password-e5d1c0"
WRONG_SECRET = "wrong-client-secret-4b7f"


def all_secrets(sandbox: RunningSandbox, *extra: str) -> list[str]:
    return [s for values in sandbox.secrets().values() for s in values] + list(extra)


def issued(sandbox: RunningSandbox) -> list[str]:
    return list(sandbox.secrets()["issued_tokens"])


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def refreshed_hook(sandbox: RunningSandbox, make_hook: MakeHook) -> GiniHook:
    """A hook that went through a password grant and one refresh (so a rotated refresh token)."""
    sandbox.settings(user_token_ttl=4)
    hook = make_hook()
    hook.list_documents(limit=1)
    time.sleep(2.2)  # past expires_in minus the leeway (clamped below half of 4 s)
    hook.list_documents(limit=1)
    assert sandbox.counters()["grants"] == {"password": 1, "refresh_token": 1}
    return hook


# --- reprs -----------------------------------------------------------------------------------


def test_reprs_hold_no_secret(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = refreshed_hook(gini_connection, make_hook)
    tokens = issued(gini_connection)
    assert len(tokens) == 4  # two access tokens, two refresh tokens
    assert hook.get_access_token() in tokens  # the hook really holds one of them
    secrets = all_secrets(gini_connection)
    objects: dict[str, Any] = {
        "hook": hook,
        "settings": hook.settings(),
        "session settings": hook.gini.settings,
        "retry settings": hook.gini.settings.retry,
        "session": hook.gini,
        "tokens": hook.gini.tokens,
        "conn": hook.get_conn(),
        "conn auth": hook.get_conn().auth,
    }
    for name, obj in objects.items():
        for text in (repr(obj), str(obj), f"{obj!r:}", f"{obj}"):
            assert leaked(text, secrets) == [], f"{name}: {text}"


def test_settings_repr_keeps_what_is_not_secret(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    text = repr(make_hook().settings())
    assert DEMO_CLIENT.client_id in text
    assert DEMO_USER.email in text
    assert gini_connection.base_url in text
    assert "client_secret" not in text
    assert "password" not in text


# --- URLs ------------------------------------------------------------------------------------


def test_no_token_ever_appears_in_a_request_url(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = refreshed_hook(gini_connection, make_hook)
    gini_connection.add_fault("status", status=401, path="/documents", first=1)
    hook.list_documents(limit=1)  # 401, a fresh token, the replay
    document_id = hook.list_documents(limit=1)["documents"][0]["id"]
    hook.get_document(document_id)
    counters = gini_connection.counters()
    assert counters["statuses"]["401"] == 1
    assert counters["grants"]["refresh_token"] == 2
    tokens = issued(gini_connection)
    assert len(tokens) == 6
    log = gini_connection.requests()
    assert len(log) == counters["requests"]
    secrets = all_secrets(gini_connection)
    for entry in log:
        assert leaked(entry["path"], secrets) == []
        assert leaked(entry["query"], secrets) == []
        assert leaked(json.dumps(entry), secrets) == []  # nor anywhere else the sandbox logged
    grants = [entry for entry in log if entry["path"] == "/oauth/token"]
    assert [entry["query"] for entry in grants] == ["grant_type=password", "", ""]  # refresh: in the body


# --- Airflow's secrets masker ----------------------------------------------------------------


def test_tokens_are_registered_with_the_secrets_masker(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    never_seen = str(uuid.uuid4())
    hook = refreshed_hook(gini_connection, make_hook)
    tokens = issued(gini_connection)
    assert len(tokens) == 4
    for token in [*tokens, DEMO_USER.password, DEMO_CLIENT.client_secret]:
        assert redact(f"Authorization: Bearer {token} done") == "Authorization: Bearer *** done"
    # The control: a value the hook never saw is left alone.
    assert redact(f"id {never_seen}") == f"id {never_seen}"
    assert hook.get_access_token() in tokens


def test_a_token_is_masked_as_soon_as_it_is_received(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    """Masked by the grant itself, before the API call that uses it, even when that call fails."""
    gini_connection.add_fault("status", status=404, path="/documents")
    with pytest.raises(GiniError):
        make_hook().list_documents(limit=1)
    (access, refresh) = issued(gini_connection)
    assert redact(f"{access}|{refresh}") == "***|***"


# --- exception texts -------------------------------------------------------------------------


def fault_401_twice(sandbox: RunningSandbox, conn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("status", status=401, path="/documents", first=2)
    return conn, {}


def fault_503(sandbox: RunningSandbox, conn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("status", status=503, path="/documents")
    return conn, {"max_attempts": 2}


def fault_wrong_password(
    sandbox: RunningSandbox, conn: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    conn["password"] = WRONG_PASSWORD
    return conn, {}


def fault_wrong_secret(
    sandbox: RunningSandbox, conn: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    conn["extra"]["client_secret"] = WRONG_SECRET
    return conn, {}


def fault_truncate(sandbox: RunningSandbox, conn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("truncate", path="/documents")
    return conn, {"max_attempts": 1}


def fault_truncated_token(
    sandbox: RunningSandbox, conn: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    # Half of a token response: the client holds part of a token that was issued.
    sandbox.add_fault("truncate", path="/oauth/token")
    return conn, {"max_attempts": 1}


def fault_reset(sandbox: RunningSandbox, conn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("reset", path="/documents")
    return conn, {"max_attempts": 2}


def fault_close_mid_body(
    sandbox: RunningSandbox, conn: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("close_mid_body", path="/documents")
    return conn, {"max_attempts": 1}


def fault_html_token(sandbox: RunningSandbox, conn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sandbox.add_fault("html", status=200, path="/oauth/token")
    return conn, {"max_attempts": 1}


FAULTS: dict[str, tuple[Callable[..., tuple[dict[str, Any], dict[str, Any]]], type[GiniError]]] = {
    "401 twice": (fault_401_twice, GiniUnauthorized),
    "503, 2 attempts": (fault_503, GiniRetryError),
    "wrong password": (fault_wrong_password, GiniInvalidUserCredentials),
    "wrong client secret": (fault_wrong_secret, GiniInvalidClientCredentials),
    "truncate, 1 attempt": (fault_truncate, GiniRetryError),
    "truncated token": (fault_truncated_token, GiniRetryError),
    "reset": (fault_reset, GiniRetryError),
    "close mid body": (fault_close_mid_body, GiniRetryError),
    "html token answer": (fault_html_token, GiniRetryError),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_exception_texts_hold_no_secret(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: SetConnection, case: str
) -> None:
    arrange, expected = FAULTS[case]
    conn, kwargs = arrange(gini_connection, gini_connection.connection())
    set_connection("gini_fault", conn)
    with pytest.raises(GiniError) as caught:
        make_hook("gini_fault", **kwargs).list_documents(limit=1)
    error = caught.value
    assert isinstance(error, expected), repr(error)
    secrets = all_secrets(gini_connection, WRONG_PASSWORD, WRONG_SECRET)
    texts = {
        "str": str(error),
        "repr": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
        "attributes": repr(vars(error)),
    }
    for kind, text in texts.items():
        assert leaked(text, secrets) == [], f"{case}: secret in {kind}: {text[-600:]}"


def test_the_401_case_really_held_a_token(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    """The search above is not vacuous: on a double 401 the client held two issued tokens."""
    gini_connection.add_fault("status", status=401, path="/documents", first=2)
    hook = make_hook()
    with pytest.raises(GiniUnauthorized) as caught:
        hook.list_documents(limit=1)
    assert len(issued(gini_connection)) == 4
    assert hook.gini.tokens.grants == {"password": 1, "refresh_token": 1}
    text = "".join(traceback.format_exception(caught.value))
    assert leaked(text, all_secrets(gini_connection)) == []
    assert "401" in str(caught.value)


# --- transport: TLS, timeouts, User-Agent ----------------------------------------------------


def test_tls_verification_is_on_by_default(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    assert hook.settings().verify is True
    # True, or the CA bundle the environment names (as requests itself would use); never off.
    env_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    assert hook.gini.http.verify == (env_bundle or True)


def test_every_request_has_explicit_timeouts(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    assert hook.gini.settings.timeout == (10.0, 60.0)
    assert make_hook(connect_timeout=2, read_timeout=7).gini.settings.timeout == (2, 7)


@pytest.mark.parametrize("path", ["/oauth/token", "/documents"])
def test_read_timeout_is_applied_on_the_wire(
    gini_connection: RunningSandbox, make_hook: MakeHook, path: str
) -> None:
    """A slow answer ends the request after read_timeout, on the token endpoint and the API."""
    gini_connection.add_fault("latency", path=path, delay=8)
    hook = make_hook(read_timeout=0.2, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(GiniRetryError) as caught:
        hook.list_documents(limit=1)
    assert time.monotonic() - started < 5  # not the 8 s the answer takes
    assert isinstance(caught.value.last, GiniTransportError)
    assert "0.2 s" in str(caught.value)


def test_user_agent_on_every_request(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = refreshed_hook(gini_connection, make_hook)
    hook.get_conn().get(f"{gini_connection.base_url}/documents", params={"limit": 1}, timeout=10)
    log = gini_connection.requests()
    assert {entry["path"] for entry in log} == {"/oauth/token", "/documents"}
    assert {entry["userAgent"] for entry in log} == {f"airflow-provider-gini/{__version__}"}


# --- TLS for real: a server with a self-signed certificate -----------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Refuses every password grant; enough to show that a request got through TLS."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"error": "invalid_grant"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[tuple[str, list[str]]]:
    cert_path, key_path = self_signed
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    seen: list[str] = []
    _Refusing.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("stop", ["deadline", "cancel"])
def test_a_tls_answer_trickling_its_headers_is_cut_off_cleanly(
    self_signed: tuple[Path, Path], set_connection: SetConnection, stop: str
) -> None:
    # The watchdog shuts the TCP socket under a TLS one from another thread: the waiting request
    # must end with the typed error, not a ValueError or AttributeError from the TLS layer.
    from tests.reliability.hostile import Answer, hostile_gini

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    with hostile_gini(context) as server:
        server.routes["/oauth/token"] = Answer(headers={"Content-Length": "0"}, header_pause=0.1)
        extra = {"verify": str(self_signed[0]), "token_deadline": 1.5 if stop == "deadline" else 60}
        set_connection("gini_tls", tls_connection(server.base_url, **extra))
        hook = GiniHook("gini_tls", max_attempts=1, read_timeout=30)
        if stop == "cancel":
            threading.Timer(1.0, hook.gini.cancel).start()
        started = time.monotonic()
        with pytest.raises(GiniError) as caught:
            hook.get_access_token()
        took = time.monotonic() - started
        hook.close()
        assert server.hits("/oauth/token") == 1
    error = getattr(caught.value, "last", None) or caught.value
    if stop == "deadline":
        assert isinstance(error, GiniTransportError), repr(error)
        assert "1.5 s token_deadline" in str(error)
    else:
        assert isinstance(error, GiniCancelled), repr(error)
    assert took < 5, took  # not the minute the headers take, nor the 30 s read timeout


def tls_connection(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "gini",
        "host": url,
        "login": DEMO_USER.email,
        "password": DEMO_USER.password,
        "extra": {
            "client_id": DEMO_CLIENT.client_id,
            "client_secret": DEMO_CLIENT.client_secret,
            "user_center_url": url,
            **extra,
        },
    }


def test_an_untrusted_certificate_is_refused(
    tls_server: tuple[str, list[str]], set_connection: SetConnection
) -> None:
    url, seen = tls_server
    set_connection("gini_tls", tls_connection(url))
    hook = GiniHook("gini_tls", max_attempts=1)
    with pytest.raises(GiniRetryError) as caught:
        hook.list_documents(limit=1)
    assert isinstance(caught.value.last, GiniTransportError)
    assert "SSL" in str(caught.value)
    assert seen == []  # no request crossed the failed handshake
    text = "".join(traceback.format_exception(caught.value))
    assert leaked(text, [DEMO_USER.password, DEMO_CLIENT.client_secret]) == []
    hook.close()


@pytest.fixture
def env_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine-wide CA bundle in the environment, as many images set; requests lets it override
    ``Session.verify`` (psf/requests#3829), so the connection's own setting must still win."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())


@pytest.mark.usefixtures("env_ca_bundle")
def test_a_trusted_ca_bundle_from_the_verify_extra(
    tls_server: tuple[str, list[str]], set_connection: SetConnection, self_signed: tuple[Path, Path]
) -> None:
    url, seen = tls_server
    set_connection("gini_tls", tls_connection(url, verify=str(self_signed[0])))
    hook = GiniHook("gini_tls", max_attempts=1)
    assert hook.gini.http.verify == str(self_signed[0])
    with pytest.raises(GiniInvalidUserCredentials):  # through TLS, refused by the server
        hook.list_documents(limit=1)
    assert seen == ["/oauth/token?grant_type=password"]
    hook.close()


@pytest.mark.usefixtures("env_ca_bundle")
def test_verify_false_extra_is_honoured(
    tls_server: tuple[str, list[str]], set_connection: SetConnection
) -> None:
    url, seen = tls_server
    set_connection("gini_tls", tls_connection(url, verify="false"))
    hook = GiniHook("gini_tls", max_attempts=1)
    assert hook.gini.http.verify is False
    with (
        pytest.warns(InsecureRequestWarning),  # urllib3 saw an unverified request: verify really is off
        pytest.raises(GiniInvalidUserCredentials),
    ):
        hook.list_documents(limit=1)
    assert seen == ["/oauth/token?grant_type=password"]
    hook.close()


@pytest.mark.usefixtures("env_ca_bundle")
def test_default_verification_with_an_env_bundle_still_refuses(
    tls_server: tuple[str, list[str]], set_connection: SetConnection
) -> None:
    url, seen = tls_server
    set_connection("gini_tls", tls_connection(url))
    hook = GiniHook("gini_tls", max_attempts=1)
    with pytest.raises(GiniRetryError, match="SSL"):
        hook.list_documents(limit=1)
    assert seen == []
    hook.close()
