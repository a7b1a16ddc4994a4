"""The token lifecycle against the sandbox: wire format, cache, early refresh, rotation,
fallback, 401 replay and single-flight. Every figure is read from the sandbox's counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from airflow_provider_gini.client import (
    GiniInvalidClientCredentials,
    GiniInvalidUserCredentials,
    GiniUnauthorized,
)
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import DEMO_USER, PLAIN_CLIENT, RunningSandbox

MakeHook = Callable[..., GiniHook]


def api_requests(sandbox: RunningSandbox) -> int:
    routes = sandbox.counters()["routes"]
    return sum(n for route, n in routes.items() if not route.startswith("POST /oauth/token"))


def test_password_grant_wire_format(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    make_hook().list_documents(limit=1)
    grant, call = gini_connection.requests()
    assert grant["method"] == "POST"
    assert grant["path"] == "/oauth/token"
    assert grant["query"] == "grant_type=password"
    assert grant["authScheme"] == "Basic"
    assert grant["contentType"] == "application/x-www-form-urlencoded"
    assert grant["accept"] == "application/json"
    assert grant["grantType"] == "password"
    assert call["authScheme"] == "Bearer"
    assert call["accept"] == "application/vnd.gini.v1+json"
    assert call["userAgent"].startswith("airflow-provider-gini/")


def test_token_is_cached_across_calls(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    for _ in range(20):
        hook.list_documents(limit=1)
    assert gini_connection.counters()["grants"] == {"password": 1}
    assert api_requests(gini_connection) == 20


def test_refreshes_before_expiry_and_rotates(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    gini_connection.settings(user_token_ttl=4)
    hook = make_hook()
    hook.list_documents(limit=1)
    for _ in range(2):
        time.sleep(2.2)  # past expires_in minus the leeway (clamped below half of 4 s)
        hook.list_documents(limit=1)
    counters = gini_connection.counters()
    # Each refresh used the newest refresh token: the sandbox rejects a reused one.
    assert counters["grants"] == {"password": 1, "refresh_token": 2}
    assert counters["grant_errors"] == {}
    assert counters["statuses"] == {"200": 6}  # 3 grants, 3 calls: no 401, the refresh came first


def test_long_task_outlives_expires_in(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    # Refreshed at half the TTL: 3 s of margin before expiry absorb a loaded machine's stalls.
    # The task runs until three refreshes happened (not for a fixed time, which a busy machine
    # would fill with fewer calls); not one call may meet an expired token on the way.
    gini_connection.settings(user_token_ttl=6)
    hook = make_hook()
    deadline = time.monotonic() + 120
    calls = 0
    while gini_connection.counters()["grants"].get("refresh_token", 0) < 3:
        assert time.monotonic() < deadline, f"fewer than 3 refreshes in 120 s ({calls} calls)"
        hook.list_documents(limit=1)
        calls += 1
        time.sleep(0.1)
    counters = gini_connection.counters()
    assert counters["statuses"].get("401", 0) == 0
    assert counters["grants"]["password"] == 1
    assert calls > 3


def test_client_without_refresh_tokens_signs_in_again(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    set_connection("gini_plain", gini_connection.connection(client=PLAIN_CLIENT))
    # 4 s tokens, renewed past half their life: 2 s of margin for a busy machine's stalls, which
    # with 1 s tokens made a call meet an expired token (a third grant) in CI.
    gini_connection.settings(user_token_ttl=4)
    hook = make_hook("gini_plain")
    hook.list_documents(limit=1)
    time.sleep(2.2)
    hook.list_documents(limit=1)
    assert gini_connection.counters()["grants"] == {"password": 2}


def signed_in_with_dead_tokens(sandbox: RunningSandbox, make_hook: MakeHook) -> GiniHook:
    """A hook that signed in, whose access token has expired and whose refresh token is revoked."""
    hook = make_hook()
    hook.list_documents(limit=1)
    sandbox.revoke_refresh_tokens()
    sandbox.expire_tokens()
    return hook


def test_rejected_refresh_token_falls_back_to_one_password_grant(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = signed_in_with_dead_tokens(gini_connection, make_hook)
    hook.list_documents(limit=1)
    counters = gini_connection.counters()
    assert counters["grants"] == {"password": 2, "refresh_token": 1}
    assert counters["grant_errors"] == {"refresh_token:invalid_grant": 1}
    assert counters["routes"]["GET /documents"] == 3  # the call, the 401, the replay


def test_fallback_password_refused_fails_without_retry(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = signed_in_with_dead_tokens(gini_connection, make_hook)
    gini_connection.change_password(DEMO_USER.email, "changed-elsewhere")
    with pytest.raises(GiniInvalidUserCredentials) as caught:
        hook.list_documents(limit=1)
    counters = gini_connection.counters()
    assert counters["grants"] == {"password": 2, "refresh_token": 1}
    assert "user credentials" in str(caught.value)
    assert DEMO_USER.password not in str(caught.value)
    assert DEMO_USER.email not in str(caught.value)


def test_bad_user_password_fails_at_once(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    conn = gini_connection.connection()
    conn["password"] = "wrong-password-123"
    set_connection("gini_wrong", conn)
    with pytest.raises(GiniInvalidUserCredentials) as caught:
        make_hook("gini_wrong").list_documents()
    assert gini_connection.counters()["grants"] == {"password": 1}
    assert caught.value.status == 400
    assert "wrong-password-123" not in str(caught.value)


def test_bad_client_secret_says_client(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    conn = gini_connection.connection()
    conn["extra"]["client_secret"] = "not-the-secret"
    set_connection("gini_bad_client", conn)
    with pytest.raises(GiniInvalidClientCredentials) as caught:
        make_hook("gini_bad_client").list_documents()
    assert "client credentials" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)
    assert gini_connection.counters()["grants"] == {"password": 1}


def test_401_mid_run_reauthenticates_and_replays_once(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    for i in range(50):
        if i == 25:
            gini_connection.add_fault("status", status=401, path="/documents", first=1)
        hook.list_documents(limit=1)
    counters = gini_connection.counters()
    assert sum(counters["grants"].values()) == 2  # the first sign-in and one refresh
    assert api_requests(gini_connection) == 51


def test_second_401_fails(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    hook.list_documents(limit=1)
    gini_connection.reset_counters()
    gini_connection.add_fault("status", status=401, path="/documents", first=2)
    with pytest.raises(GiniUnauthorized) as caught:
        hook.list_documents(limit=1)
    assert caught.value.status == 401
    counters = gini_connection.counters()
    assert counters["routes"] == {"GET /documents": 2, "POST /oauth/token": 1}
    assert counters["grants"] == {"refresh_token": 1}


@pytest.mark.parametrize("expiry", ["client clock", "server revoked"])
def test_single_flight_under_threads(
    gini_connection: RunningSandbox, make_hook: MakeHook, expiry: str
) -> None:
    gini_connection.settings(user_token_ttl=4)
    hook = make_hook()
    hook.list_documents(limit=1)
    if expiry == "client clock":
        time.sleep(2.2)
    else:
        gini_connection.expire_tokens()
    gini_connection.reset_counters()
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            hook.list_documents(limit=1)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert gini_connection.counters()["grants"] == {"refresh_token": 1}


def test_get_access_token_and_session(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    token = hook.get_access_token()
    assert token in gini_connection.secrets()["issued_tokens"]
    session = hook.get_conn()
    assert session is hook.get_conn()
    response = session.get(f"{gini_connection.base_url}/documents", params={"limit": 2}, timeout=10)
    assert response.status_code == 200
    assert len(response.json()["documents"]) == 2
    assert gini_connection.counters()["grants"] == {"password": 1}
