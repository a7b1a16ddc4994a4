"""The ``gini`` connection in every form Airflow accepts, and every way it can be wrong.

The forms (JSON env var, URI env var, Airflow's own ``get_uri()`` round trip) are proven by a
real call against the sandbox. The checks on a wrong connection need no request: they happen
in ``hook.settings()``, before any I/O, and each error must say what to fix without echoing
a credential.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from airflow_provider_gini.client import GiniConfigError, GiniError, GiniHTTPError
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox
from tests.compat import connection_from_json

MakeHook = Callable[..., GiniHook]
SetConnection = Callable[..., None]
# Credentials of a connection that never reaches a server: only the settings are checked.
OFFLINE_PASSWORD = "offline-user-password-7f3a"
OFFLINE_SECRET = "offline-client-secret-91c2"
SECRETS = (DEMO_USER.password, DEMO_CLIENT.client_secret, OFFLINE_PASSWORD, OFFLINE_SECRET)


def offline_connection(**change: Any) -> dict[str, Any]:
    """A complete connection to the real Gini hosts; ``change`` overrides top-level fields and
    ``extra`` keys (a value of None removes the field)."""
    conn: dict[str, Any] = {
        "conn_type": "gini",
        "host": "https://pay-api.gini.net",
        "login": "user@example.com",
        "password": OFFLINE_PASSWORD,
        "extra": {"client_id": "offline-client", "client_secret": OFFLINE_SECRET},
    }
    for key, value in change.items():
        target = conn if key in ("host", "login", "password", "port", "schema") else conn["extra"]
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return conn


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert leaked == [], f"secret in error text: {text!r}"


def config_error(set_connection: SetConnection, **change: Any) -> GiniConfigError:
    set_connection("gini_check", offline_connection(**change))
    with pytest.raises(GiniConfigError) as caught:
        GiniHook("gini_check").settings()
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))
    assert_no_secret("".join(traceback.format_exception(caught.value)))
    return caught.value


def port_of(sandbox: RunningSandbox) -> int:
    port = urlsplit(sandbox.base_url).port
    assert port is not None
    return port


# --- the forms -------------------------------------------------------------------------------


def test_json_env_form_lists_documents(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    page = hook.list_documents(limit=3)
    assert [d["id"] for d in page["documents"]] == [d["id"] for d in gini_connection.documents()][::-1][:3]
    assert hook.settings().api_url == gini_connection.base_url


def test_uri_env_form_lists_documents(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: SetConnection
) -> None:
    port = port_of(gini_connection)
    uri = (
        f"gini://{quote(DEMO_USER.email, safe='')}:{quote(DEMO_USER.password, safe='')}"
        f"@127.0.0.1:{port}/http"
        f"?client_id={DEMO_CLIENT.client_id}&client_secret={DEMO_CLIENT.client_secret}"
        f"&user_center_url={quote(gini_connection.base_url, safe='')}"
    )
    set_connection("gini_uri", uri)
    hook = make_hook("gini_uri")
    settings = hook.settings()
    # schema "http" selects plain http (allowed: loopback); host and port make up the origin.
    assert settings.api_url == f"http://127.0.0.1:{port}"
    assert settings.user_center_url == gini_connection.base_url
    assert settings.username == DEMO_USER.email
    assert len(hook.list_documents(limit=2)["documents"]) == 2
    assert gini_connection.counters()["grants"] == {"password": 1}


def test_airflow_get_uri_round_trip_with_special_characters(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: SetConnection
) -> None:
    """The URI Airflow itself writes for a JSON connection (host with scheme, a password full
    of URI delimiters) reads back into a working hook."""
    password = "p@ss:w/rd?#&=%+ x"
    gini_connection.change_password(DEMO_USER.email, password)
    conn = gini_connection.connection()
    conn["password"] = password
    uri = connection_from_json(json.dumps(conn), conn_id="gini_src").get_uri()
    assert uri.startswith("gini://")
    set_connection("gini_round_trip", uri)
    hook = make_hook("gini_round_trip")
    assert hook.settings().api_url == gini_connection.base_url
    assert hook.list_documents(limit=1)["documents"]


def test_numeric_extras_as_strings_are_accepted(set_connection: SetConnection) -> None:
    set_connection(
        "gini_check",
        offline_connection(
            read_timeout="30",
            connect_timeout="2.5",
            max_attempts="3",
            max_elapsed="40",
            pool_size="4",
            refresh_leeway="15",
            api_version="2",
            max_requests_per_second="12.5",
        ),
    )
    settings = GiniHook("gini_check").settings()
    assert settings.max_requests_per_second == 12.5
    assert GiniHook("gini_check").gini.throttle.rate == 12.5
    assert settings.timeout == (2.5, 30.0)
    assert settings.retry.max_attempts == 3
    assert isinstance(settings.retry.max_attempts, int)
    assert settings.retry.max_elapsed == 40.0
    assert settings.pool_size == 4
    assert settings.refresh_leeway == 15.0
    assert settings.api_version == 2
    assert settings.media_type == "application/vnd.gini.v2+json"


def test_numeric_extras_in_uri_form(set_connection: SetConnection) -> None:
    set_connection(
        "gini_check",
        f"gini://user%40example.com:{OFFLINE_PASSWORD}@pay-api.gini.net"
        f"?client_id=c&client_secret={OFFLINE_SECRET}&read_timeout=12&max_attempts=2&api_version=1",
    )
    settings = GiniHook("gini_check").settings()
    assert settings.api_url == "https://pay-api.gini.net"
    assert settings.read_timeout == 12.0
    assert settings.retry.max_attempts == 2


# --- defaults --------------------------------------------------------------------------------


def test_bare_host_means_https_and_defaults(set_connection: SetConnection) -> None:
    set_connection("gini_check", offline_connection(host="pay-api.gini.net"))
    settings = GiniHook("gini_check").settings()
    assert settings.api_url == "https://pay-api.gini.net"
    assert settings.user_center_url == "https://user.gini.net"
    assert settings.api_version == 1
    assert settings.media_type == "application/vnd.gini.v1+json"
    assert settings.verify is True


def test_no_host_means_the_gini_api(set_connection: SetConnection) -> None:
    set_connection("gini_check", offline_connection(host=None))
    assert GiniHook("gini_check").settings().api_url == "https://pay-api.gini.net"


def test_default_api_version_sends_v1_accept(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    make_hook().list_documents(limit=1)
    api_calls = [r for r in gini_connection.requests() if r["path"] == "/documents"]
    assert [r["accept"] for r in api_calls] == ["application/vnd.gini.v1+json"]


def test_hook_kwargs_override_extras(set_connection: SetConnection) -> None:
    set_connection("gini_check", offline_connection(max_attempts=8, read_timeout=60))
    settings = GiniHook("gini_check", max_attempts=2, read_timeout=5.0).settings()
    assert settings.retry.max_attempts == 2
    assert settings.read_timeout == 5.0


def test_unknown_hook_kwarg_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_attempt"):
        GiniHook("gini_check", max_attempt=2)


# --- what is missing or malformed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "names", "where"),
    [
        ({"client_id": None}, "client_id", "extra 'client_id'"),
        ({"client_id": ""}, "client_id", "extra 'client_id'"),
        ({"client_secret": None}, "client_secret", "extra 'client_secret'"),
        ({"login": None}, "username", "Login"),
        ({"password": None}, "password", "Password"),
        ({"password": ""}, "password", "Password"),
    ],
)
def test_missing_piece_is_named_with_where_to_set_it(
    set_connection: SetConnection, change: dict[str, Any], names: str, where: str
) -> None:
    error = config_error(set_connection, **change)
    message = str(error)
    assert names in message
    assert "missing" in message
    assert where in message


@pytest.mark.parametrize("host", ["http://", "exa mple.com", "ftp://x", "https://", "https://host/?q=1"])
def test_malformed_host(set_connection: SetConnection, host: str) -> None:
    error = config_error(set_connection, host=host)
    assert "host" in str(error)


def test_ftp_host_says_https(set_connection: SetConnection) -> None:
    assert "https" in str(config_error(set_connection, host="ftp://x"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host": "http://pay-api.gini.net"}, "host"),
        ({"host": "pay-api.gini.net", "schema": "http"}, "host"),
        ({"user_center_url": "http://user.gini.net"}, "user_center_url"),
    ],
)
def test_plain_http_to_a_remote_host_is_refused(
    set_connection: SetConnection, change: dict[str, Any], field: str
) -> None:
    message = str(config_error(set_connection, **change))
    assert field in message
    assert "https" in message
    assert "plain http" in message


@pytest.mark.parametrize("host", ["http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:8080"])
def test_plain_http_to_loopback_is_allowed(set_connection: SetConnection, host: str) -> None:
    set_connection("gini_check", offline_connection(host=host))
    assert GiniHook("gini_check").settings().api_url == host


def test_credentials_in_host_are_refused_without_echoing_them(set_connection: SetConnection) -> None:
    error = config_error(set_connection, host=f"https://someone:{OFFLINE_PASSWORD}@pay-api.gini.net")
    assert "host" in str(error)


@pytest.mark.parametrize(
    "host",
    [
        f"https://someone:{OFFLINE_PASSWORD}@pay-api.gini.net:x",  # bad port
        f"https://someone:{OFFLINE_PASSWORD}@pay-api.gini.net:99999",  # port out of range
        f"https://someone:{OFFLINE_PASSWORD}@[::1",  # bad IPv6 literal
        f"https://someone:{OFFLINE_PASSWORD}\uff03@pay-api.gini.net",  # NFKC-unsafe netloc
    ],
)
def test_unparsable_host_does_not_echo_credentials(set_connection: SetConnection, host: str) -> None:
    assert "host" in str(config_error(set_connection, host=host))


@pytest.mark.parametrize("version", ["abc", 1.5, True, [1]])
def test_api_version_must_be_an_integer(set_connection: SetConnection, version: Any) -> None:
    conn = offline_connection()
    conn["extra"]["api_version"] = version
    set_connection("gini_check", conn)
    with pytest.raises(GiniConfigError, match="api_version") as caught:
        GiniHook("gini_check").settings()
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize("version", [0, -1, "0"])
def test_api_version_must_be_positive(set_connection: SetConnection, version: Any) -> None:
    assert "api_version" in str(config_error(set_connection, api_version=version))


@pytest.mark.parametrize(("version", "expected"), [(2, 2), ("3", 3), ("v1", 1), (1.0, 1)])
def test_api_version_forms(set_connection: SetConnection, version: Any, expected: int) -> None:
    set_connection("gini_check", offline_connection(api_version=version))
    assert GiniHook("gini_check").settings().api_version == expected


@pytest.mark.parametrize("blank", [None, "", " "])
def test_blank_api_version_means_the_default(set_connection: SetConnection, blank: Any) -> None:
    """Airflow's connection form saves an optional field left empty as null (see tests/ui)."""
    conn = offline_connection()
    conn["extra"]["api_version"] = blank
    set_connection("gini_check", conn)
    assert GiniHook("gini_check").settings().api_version == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("read_timeout", "abc"), ("read_timeout", [1]), ("connect_timeout", "fast"), ("max_attempts", 2.5)],
)
def test_non_numeric_extra(set_connection: SetConnection, name: str, value: Any) -> None:
    message = str(config_error(set_connection, **{name: value}))
    assert repr(name) in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("read_timeout", 0), ("connect_timeout", -1), ("pool_size", 0), ("max_requests_per_second", 0)],
)
def test_non_positive_extra(set_connection: SetConnection, name: str, value: Any) -> None:
    assert name in str(config_error(set_connection, **{name: value}))


def test_verify_extra(set_connection: SetConnection) -> None:
    set_connection("gini_check", offline_connection(verify="false"))
    assert GiniHook("gini_check").settings().verify is False
    assert "verify" in str(config_error(set_connection, verify=1))


def test_missing_connection_is_not_a_gini_error() -> None:
    # Airflow's own "not found" error, naming the connection id.
    with pytest.raises(Exception, match="gini_nowhere") as caught:
        GiniHook("gini_nowhere").settings()
    assert not isinstance(caught.value, GiniError)


# --- an API version the server does not serve ------------------------------------------------


def test_unsupported_api_version_is_406_without_retry(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: SetConnection
) -> None:
    conn = gini_connection.connection()
    conn["extra"]["api_version"] = 2
    set_connection("gini_v2", conn)
    with pytest.raises(GiniHTTPError) as caught:
        make_hook("gini_v2").list_documents(limit=1)
    error = caught.value
    # Not refused content (GiniRejected), not auth: the plain HTTP error class, with its status.
    assert type(error) is GiniHTTPError
    assert error.status == 406
    assert error.request_id
    assert "406" in str(error)
    assert "application/vnd.gini.v1+json" in str(error)  # the server's list of what it serves
    routes = gini_connection.counters()["routes"]
    assert routes["GET /documents"] == 1  # not retried
    assert routes["POST /oauth/token"] == 1  # the token endpoint speaks application/json
    api_calls = [r for r in gini_connection.requests() if r["path"] == "/documents"]
    assert api_calls[0]["accept"] == "application/vnd.gini.v2+json"
    assert_no_secret(str(error))
    assert_no_secret(repr(error))
