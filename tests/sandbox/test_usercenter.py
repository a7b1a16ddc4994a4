"""The sandbox's user center over real HTTP: /oauth/token, /oauth/check_token and /api/users."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest

from airflow_provider_gini.sandbox import (
    DEMO_CLIENT,
    DEMO_USER,
    OTHER_USER,
    PLAIN_CLIENT,
    ClientSpec,
    RunningSandbox,
    SandboxConfig,
    UserSpec,
    run_sandbox,
)
from airflow_provider_gini.sandbox.config import RuntimeSettings
from tests.sandbox.helpers import API_JSON, api_headers, client_token, token, token_response

DEMO_AUTH = (DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret)
PLAIN_AUTH = (PLAIN_CLIENT.client_id, PLAIN_CLIENT.client_secret)
DEMO_LOGIN = {"username": DEMO_USER.email, "password": DEMO_USER.password}


def post_token(sandbox: RunningSandbox, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{sandbox.base_url}/oauth/token", **kwargs)


def password_grant(
    sandbox: RunningSandbox, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT
) -> httpx.Response:
    return post_token(
        sandbox,
        params={"grant_type": "password"},
        data={"username": user.email, "password": user.password},
        auth=(client.client_id, client.client_secret),
    )


def refresh_grant(
    sandbox: RunningSandbox, refresh_token: str, client: ClientSpec = DEMO_CLIENT
) -> httpx.Response:
    return post_token(
        sandbox,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client.client_id, client.client_secret),
    )


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["x-request-id"]
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    return body


def assert_invalid_client(response: httpx.Response) -> None:
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "realm=" in response.headers["www-authenticate"]


def assert_user_token(body: dict[str, Any], *, refresh: bool) -> None:
    assert uuid.UUID(body["access_token"])
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3599
    assert "scope" not in body
    if refresh:
        assert uuid.UUID(body["refresh_token"])
        assert body["refresh_token"] != body["access_token"]
    else:
        assert "refresh_token" not in body


def documents_status(sandbox: RunningSandbox, access_token: str) -> httpx.Response:
    return httpx.get(f"{sandbox.base_url}/documents", headers=api_headers(access_token))


# password grant


def test_password_grant_with_basic_auth_and_grant_type_in_query(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data=DEMO_LOGIN,
        auth=DEMO_AUTH,
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert uuid.UUID(response.headers["x-request-id"])
    assert_user_token(response.json(), refresh=True)
    assert documents_status(gini_sandbox, response.json()["access_token"]).status_code == 200


def test_password_grant_with_client_credentials_in_body_and_grant_type_in_body(
    gini_sandbox: RunningSandbox,
) -> None:
    response = post_token(
        gini_sandbox,
        data={
            "grant_type": "password",
            **DEMO_LOGIN,
            "client_id": DEMO_CLIENT.client_id,
            "client_secret": DEMO_CLIENT.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert_user_token(response.json(), refresh=True)


def test_password_grant_with_the_same_grant_type_in_query_and_body(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={"grant_type": "password", **DEMO_LOGIN},
        auth=DEMO_AUTH,
    )
    assert response.status_code == 200, response.text
    assert_user_token(response.json(), refresh=True)


def test_basic_credentials_are_form_urlencoded_before_base64(gini_sandbox: RunningSandbox) -> None:
    # RFC 6749 section 2.3.1: the id and secret are form-urlencoded, then base64'd.
    encoded = base64.b64encode(b"gini-sandbox-client:sandbox%2Dclient%2Dsecret").decode()
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data=DEMO_LOGIN,
        headers={"Authorization": f"Basic {encoded}"},
    )
    assert response.status_code == 200, response.text


def test_username_is_matched_case_insensitively(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email.upper(), "password": DEMO_USER.password},
        auth=DEMO_AUTH,
    )
    assert response.status_code == 200, response.text


def test_plain_client_gets_no_refresh_token(gini_sandbox: RunningSandbox) -> None:
    response = password_grant(gini_sandbox, client=PLAIN_CLIENT)
    assert response.status_code == 200, response.text
    assert_user_token(response.json(), refresh=False)


def test_each_grant_issues_a_fresh_access_token(gini_sandbox: RunningSandbox) -> None:
    first, second = token(gini_sandbox), token(gini_sandbox)
    assert first != second
    assert documents_status(gini_sandbox, first).status_code == 200
    assert documents_status(gini_sandbox, second).status_code == 200


def test_tokens_of_different_users_see_different_documents(gini_sandbox: RunningSandbox) -> None:
    def ids(access_token: str) -> set[str]:
        response = documents_status(gini_sandbox, access_token)
        assert response.status_code == 200, response.text
        return {doc["id"] for doc in response.json()["documents"]}

    demo, other = ids(token(gini_sandbox)), ids(token(gini_sandbox, OTHER_USER))
    assert demo
    assert other
    assert not demo & other


# refresh_token grant


def test_refresh_grant_issues_a_new_access_and_refresh_token(gini_sandbox: RunningSandbox) -> None:
    first = token_response(gini_sandbox)
    response = refresh_grant(gini_sandbox, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert_user_token(second, refresh=True)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert documents_status(gini_sandbox, second["access_token"]).status_code == 200


def test_refreshed_token_belongs_to_the_same_user(gini_sandbox: RunningSandbox) -> None:
    first = token_response(gini_sandbox, OTHER_USER)
    refreshed = refresh_grant(gini_sandbox, first["refresh_token"]).json()

    def who(access_token: str) -> str:
        response = httpx.get(f"{gini_sandbox.base_url}/oauth/check_token", params={"token": access_token})
        assert response.status_code == 200, response.text
        return str(response.json()["user_name"])

    assert who(refreshed["access_token"]) == who(first["access_token"])
    assert who(refreshed["access_token"]) != who(token(gini_sandbox, DEMO_USER))


def test_refresh_token_rotates_and_the_old_one_is_rejected(gini_sandbox: RunningSandbox) -> None:
    old = token_response(gini_sandbox)["refresh_token"]
    new = refresh_grant(gini_sandbox, old).json()["refresh_token"]
    assert new != old
    body = assert_oauth_error(refresh_grant(gini_sandbox, old), 400, "invalid_grant")
    assert "used" in body["error_description"]
    # The rotated token still works, exactly once.
    assert refresh_grant(gini_sandbox, new).status_code == 200
    assert_oauth_error(refresh_grant(gini_sandbox, new), 400, "invalid_grant")


def test_revoked_refresh_token_is_rejected(gini_sandbox: RunningSandbox) -> None:
    refresh = token_response(gini_sandbox)["refresh_token"]
    assert gini_sandbox.revoke_refresh_tokens() >= 1
    body = assert_oauth_error(refresh_grant(gini_sandbox, refresh), 400, "invalid_grant")
    assert "revoked" in body["error_description"]
    # Access tokens are untouched by the revocation, and a password grant still works.
    assert password_grant(gini_sandbox).status_code == 200


def test_revoke_counts_only_active_refresh_tokens(gini_sandbox: RunningSandbox) -> None:
    first = token_response(gini_sandbox)["refresh_token"]
    refresh_grant(gini_sandbox, first)  # first is now used, its successor active
    token_response(gini_sandbox, OTHER_USER)
    assert gini_sandbox.revoke_refresh_tokens() == 2
    assert gini_sandbox.revoke_refresh_tokens() == 0


def test_refresh_token_of_another_client_is_rejected(gini_sandbox: RunningSandbox) -> None:
    refresh = token_response(gini_sandbox, client=DEMO_CLIENT)["refresh_token"]
    assert_oauth_error(refresh_grant(gini_sandbox, refresh, client=PLAIN_CLIENT), 400, "invalid_grant")
    # The failed attempt did not spend the token: its own client can still use it.
    assert refresh_grant(gini_sandbox, refresh, client=DEMO_CLIENT).status_code == 200


def test_unknown_refresh_token_is_rejected(gini_sandbox: RunningSandbox) -> None:
    assert_oauth_error(refresh_grant(gini_sandbox, str(uuid.uuid4())), 400, "invalid_grant")


def test_access_token_is_not_a_refresh_token(gini_sandbox: RunningSandbox) -> None:
    assert_oauth_error(refresh_grant(gini_sandbox, token(gini_sandbox)), 400, "invalid_grant")


def test_refresh_grant_without_refresh_token_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(gini_sandbox, data={"grant_type": "refresh_token"}, auth=DEMO_AUTH)
    assert_oauth_error(response, 400, "invalid_request")


# client_credentials grant


def assert_client_token(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert uuid.UUID(body["access_token"])
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 43199
    assert body["scope"] == "read"
    return str(body["access_token"])


def test_client_credentials_via_get(gini_sandbox: RunningSandbox) -> None:
    response = httpx.get(
        f"{gini_sandbox.base_url}/oauth/token",
        params={"grant_type": "client_credentials"},
        auth=DEMO_AUTH,
        headers={"Accept": "application/json"},
    )
    assert_client_token(response)


def test_client_credentials_via_post_without_body(gini_sandbox: RunningSandbox) -> None:
    response = post_token(gini_sandbox, params={"grant_type": "client_credentials"}, auth=DEMO_AUTH)
    assert_client_token(response)


def test_client_credentials_via_post_form(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        data={
            "grant_type": "client_credentials",
            "client_id": PLAIN_CLIENT.client_id,
            "client_secret": PLAIN_CLIENT.client_secret,
        },
    )
    assert_client_token(response)


def test_client_token_cannot_read_documents(gini_sandbox: RunningSandbox) -> None:
    response = documents_status(gini_sandbox, client_token(gini_sandbox))
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["www-authenticate"]
    assert set(response.json()) == {"message", "requestId"}


def test_client_restricted_to_some_grants_gets_unauthorized_client() -> None:
    backend = ClientSpec(
        client_id="backend-only", client_secret="backend-secret", grants=["client_credentials"]
    )
    with run_sandbox(SandboxConfig(clients=[backend], seed=False)) as sandbox:
        response = post_token(
            sandbox,
            params={"grant_type": "password"},
            data=DEMO_LOGIN,
            auth=(backend.client_id, backend.client_secret),
        )
        assert_oauth_error(response, 400, "unauthorized_client")
        assert_client_token(
            post_token(
                sandbox,
                params={"grant_type": "client_credentials"},
                auth=(backend.client_id, backend.client_secret),
            )
        )
        # The demo client is not configured in this sandbox.
        assert_invalid_client(password_grant(sandbox))


# token lifetimes


def test_user_token_ttl_setting_applies_to_the_next_token(gini_sandbox: RunningSandbox) -> None:
    assert token_response(gini_sandbox)["expires_in"] == 3599
    assert gini_sandbox.settings(user_token_ttl=5)["user_token_ttl"] == 5
    body = token_response(gini_sandbox)
    assert body["expires_in"] == 5
    refreshed = refresh_grant(gini_sandbox, body["refresh_token"]).json()
    assert refreshed["expires_in"] == 5
    # Client tokens keep their own lifetime.
    response = post_token(gini_sandbox, params={"grant_type": "client_credentials"}, auth=DEMO_AUTH)
    assert response.json()["expires_in"] == 43199


def test_client_token_ttl_setting(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.settings(client_token_ttl=7)
    response = post_token(gini_sandbox, params={"grant_type": "client_credentials"}, auth=DEMO_AUTH)
    assert response.json()["expires_in"] == 7
    assert token_response(gini_sandbox)["expires_in"] == 3599


def test_short_ttl_token_expires_with_the_clock(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.settings(user_token_ttl=5)
    access = token(gini_sandbox)
    gini_sandbox.advance_clock(4)
    assert documents_status(gini_sandbox, access).status_code == 200
    gini_sandbox.advance_clock(2)
    assert documents_status(gini_sandbox, access).status_code == 401


def test_run_sandbox_with_custom_settings() -> None:
    client = ClientSpec(client_id="custom-client", client_secret="custom-secret")
    user = UserSpec(email="custom@example.com", password="custom-password")
    config = SandboxConfig(
        clients=[client],
        users=[user],
        settings=RuntimeSettings(user_token_ttl=120, client_token_ttl=600),
        seed=False,
    )
    with run_sandbox(config) as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        body = token_response(sandbox, user, client)
        assert body["expires_in"] == 120
        assert "refresh_token" in body
        response = post_token(
            sandbox,
            params={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
        )
        assert response.json()["expires_in"] == 600
        # The demo user does not exist here.
        assert_oauth_error(password_grant(sandbox, DEMO_USER, client), 400, "invalid_grant")
        listing = documents_status(sandbox, body["access_token"])
        assert listing.status_code == 200
        assert listing.json()["documents"] == []


# errors (RFC 6749 section 5.2)


def test_wrong_user_password_is_invalid_grant(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": DEMO_USER.password + "x"},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_grant")
    assert "www-authenticate" not in response.headers


def test_unknown_user_is_invalid_grant(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={"username": "nobody@sandbox.gini.test", "password": DEMO_USER.password},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_grant")


def test_password_of_another_user_is_invalid_grant(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": OTHER_USER.password},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_grant")


def test_unknown_client_is_invalid_client(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox, params={"grant_type": "password"}, data=DEMO_LOGIN, auth=("nobody", "secret")
    )
    assert_invalid_client(response)


def test_wrong_client_secret_is_invalid_client(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data=DEMO_LOGIN,
        auth=(DEMO_CLIENT.client_id, PLAIN_CLIENT.client_secret),
    )
    assert_invalid_client(response)


def test_wrong_client_secret_in_body_is_invalid_client(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        data={
            "grant_type": "password",
            **DEMO_LOGIN,
            "client_id": DEMO_CLIENT.client_id,
            "client_secret": "wrong",
        },
    )
    assert_invalid_client(response)


def test_no_client_authentication_is_invalid_client(gini_sandbox: RunningSandbox) -> None:
    response = post_token(gini_sandbox, params={"grant_type": "password"}, data=DEMO_LOGIN)
    assert_invalid_client(response)


def test_client_credentials_without_client_authentication_is_invalid_client(
    gini_sandbox: RunningSandbox,
) -> None:
    response = httpx.get(f"{gini_sandbox.base_url}/oauth/token", params={"grant_type": "client_credentials"})
    assert_invalid_client(response)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer sandbox-client-secret",
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
    ],
)
def test_malformed_client_authorization_is_invalid_client(
    gini_sandbox: RunningSandbox, authorization: str
) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data=DEMO_LOGIN,
        headers={"Authorization": authorization},
    )
    assert_invalid_client(response)


def test_unknown_grant_type_is_unsupported_grant_type(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox, data={"grant_type": "authorization_code", "code": "x"}, auth=DEMO_AUTH
    )
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_missing_grant_type_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(gini_sandbox, data=DEMO_LOGIN, auth=DEMO_AUTH)
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "grant_type" in body["error_description"]


def test_empty_grant_type_is_treated_as_missing(gini_sandbox: RunningSandbox) -> None:
    # RFC 6749 section 3.2: parameters sent without a value are treated as omitted.
    response = post_token(gini_sandbox, data={"grant_type": "", **DEMO_LOGIN}, auth=DEMO_AUTH)
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "login",
    [
        {"password": DEMO_USER.password},
        {"username": "", "password": DEMO_USER.password},
        {"username": DEMO_USER.email},
        {},
    ],
)
def test_password_grant_without_username_or_password_is_invalid_request(
    gini_sandbox: RunningSandbox, login: dict[str, str]
) -> None:
    response = post_token(gini_sandbox, params={"grant_type": "password"}, data=login, auth=DEMO_AUTH)
    assert_oauth_error(response, 400, "invalid_request")


def test_conflicting_grant_type_in_query_and_body_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "client_credentials"},
        data={"grant_type": "password", **DEMO_LOGIN},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_json_body_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(gini_sandbox, params={"grant_type": "password"}, json=DEMO_LOGIN, auth=DEMO_AUTH)
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "x-www-form-urlencoded" in body["error_description"]


def test_repeated_form_parameter_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        content=f"username={DEMO_USER.email}&username=x&password={DEMO_USER.password}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_repeated_query_grant_type_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    # RFC 6749 section 3.2: request parameters must not be included more than once.
    response = post_token(
        gini_sandbox,
        params=[("grant_type", "client_credentials"), ("grant_type", "password")],
        data=DEMO_LOGIN,
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_basic_and_body_client_credentials_together_is_invalid_request(gini_sandbox: RunningSandbox) -> None:
    response = post_token(
        gini_sandbox,
        params={"grant_type": "password"},
        data={**DEMO_LOGIN, "client_id": DEMO_CLIENT.client_id, "client_secret": DEMO_CLIENT.client_secret},
        auth=DEMO_AUTH,
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("grant", ["password", "refresh_token"])
def test_user_grants_via_get_are_invalid_request(gini_sandbox: RunningSandbox, grant: str) -> None:
    response = httpx.get(
        f"{gini_sandbox.base_url}/oauth/token",
        params={"grant_type": grant, **DEMO_LOGIN, "refresh_token": "x"},
        auth=DEMO_AUTH,
    )
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "POST" in body["error_description"]


def test_token_endpoint_rejects_other_methods(gini_sandbox: RunningSandbox) -> None:
    response = httpx.put(f"{gini_sandbox.base_url}/oauth/token", params={"grant_type": "password"})
    assert response.status_code == 405
    assert response.headers["x-request-id"]


# counters


def test_grant_counters_reflect_requests(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.reset_counters()
    assert gini_sandbox.counters()["grants"] == {}
    refresh = token_response(gini_sandbox)["refresh_token"]
    password_grant(gini_sandbox, client=PLAIN_CLIENT)
    refresh_grant(gini_sandbox, refresh)
    refresh_grant(gini_sandbox, refresh)  # reused: invalid_grant
    post_token(gini_sandbox, params={"grant_type": "client_credentials"}, auth=DEMO_AUTH)
    post_token(gini_sandbox, params={"grant_type": "password"}, data=DEMO_LOGIN, auth=("nobody", "x"))
    post_token(gini_sandbox, data={"grant_type": "implicit"}, auth=DEMO_AUTH)

    counters = gini_sandbox.counters()
    assert counters["grants"] == {"password": 3, "refresh_token": 2, "client_credentials": 1, "implicit": 1}
    assert counters["grants_issued"] == {"password": 2, "refresh_token": 1, "client_credentials": 1}
    assert counters["grant_errors"] == {
        "refresh_token:invalid_grant": 1,
        "password:invalid_client": 1,
        "implicit:unsupported_grant_type": 1,
    }
    assert counters["routes"]["POST /oauth/token"] == 7
    assert counters["statuses"] == {"200": 4, "400": 2, "401": 1}

    gini_sandbox.reset_counters()
    after = gini_sandbox.counters()
    assert after["grants"] == after["grants_issued"] == after["grant_errors"] == {}


def test_request_log_records_grant_and_client(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.reset_counters()
    response = password_grant(gini_sandbox)
    log = gini_sandbox.requests()
    assert len(log) == 1
    entry = log[0]
    assert entry["route"] == "/oauth/token"
    assert entry["status"] == 200
    assert entry["grantType"] == "password"
    assert entry["clientId"] == DEMO_CLIENT.client_id
    assert entry["authScheme"] == "Basic"
    assert entry["requestId"] == response.headers["x-request-id"]


# X-Request-Id


def test_every_response_has_a_distinct_request_id(gini_sandbox: RunningSandbox) -> None:
    base = gini_sandbox.base_url
    responses = [
        password_grant(gini_sandbox),
        post_token(gini_sandbox, params={"grant_type": "password"}, data=DEMO_LOGIN),
        httpx.get(f"{base}/oauth/check_token", params={"token": "nope"}),
        httpx.post(f"{base}/api/users", json={}),
        httpx.get(f"{base}/documents"),
        httpx.get(f"{base}/no/such/route"),
        httpx.get(f"{base}/__sandbox/health"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert [r.status_code for r in responses] == [200, 401, 400, 401, 401, 404, 200]
    assert all(uuid.UUID(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Pay API style error bodies carry the same id as the header.
    for response in responses[3:6]:
        assert response.json()["requestId"] == response.headers["x-request-id"]


# check_token


def test_check_token_for_a_user_token(gini_sandbox: RunningSandbox) -> None:
    access = token(gini_sandbox)
    response = httpx.get(
        f"{gini_sandbox.base_url}/oauth/check_token",
        params={"token": access},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert uuid.UUID(body["user_name"])
    assert body["client_id"] == DEMO_CLIENT.client_id
    assert isinstance(body["exp"], int)
    assert "write" in body["scope"]


def test_check_token_user_name_is_the_user_id(gini_sandbox: RunningSandbox) -> None:
    user = UserSpec(email="checked@example.com", password="checked-password")
    location = create_user(gini_sandbox, user.email, user.password).headers["location"]
    access = token(gini_sandbox, user)
    body = httpx.get(f"{gini_sandbox.base_url}/oauth/check_token", params={"token": access}).json()
    assert body["user_name"] == location.rsplit("/", 1)[1]


def test_check_token_for_a_client_token_has_no_user_name(gini_sandbox: RunningSandbox) -> None:
    response = httpx.get(
        f"{gini_sandbox.base_url}/oauth/check_token",
        params={"token": client_token(gini_sandbox, PLAIN_CLIENT)},
    )
    assert response.status_code == 200
    body = response.json()
    assert "user_name" not in body
    assert body["client_id"] == PLAIN_CLIENT.client_id
    assert body["scope"] == ["read"]


@pytest.mark.parametrize("value", ["", "not-a-token", "6c470ffa-abf1-41aa-b866-cd3be0ee84f4"])
def test_check_token_for_an_unknown_token_is_400(gini_sandbox: RunningSandbox, value: str) -> None:
    response = httpx.get(f"{gini_sandbox.base_url}/oauth/check_token", params={"token": value})
    assert_oauth_error(response, 400, "invalid_token")


def test_check_token_for_an_expired_token_is_400(gini_sandbox: RunningSandbox) -> None:
    access = token(gini_sandbox)
    assert gini_sandbox.expire_tokens() >= 1
    response = httpx.get(f"{gini_sandbox.base_url}/oauth/check_token", params={"token": access})
    assert_oauth_error(response, 400, "invalid_token")


# /api/users


def create_user(
    sandbox: RunningSandbox, email: str, password: str, *, scheme: str = "Bearer", access: str | None = None
) -> httpx.Response:
    access = access if access is not None else client_token(sandbox)
    return httpx.post(
        f"{sandbox.base_url}/api/users",
        json={"email": email, "password": password},
        headers={"Authorization": f"{scheme} {access}", "Accept": "application/json"},
    )


def test_create_user_with_upper_case_bearer(gini_sandbox: RunningSandbox) -> None:
    response = create_user(gini_sandbox, "new-user@example.com", "secret6", scheme="BEARER")
    assert response.status_code == 201, response.text
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert response.headers["x-request-id"]
    location = response.headers["location"]
    prefix = f"{gini_sandbox.base_url}/api/users/"
    assert location.startswith(prefix)
    user_id = location[len(prefix) :]
    assert uuid.UUID(user_id)

    # The new user can log in and has no documents.
    new_user = UserSpec(email="new-user@example.com", password="secret6")
    body = token_response(gini_sandbox, new_user)
    assert_user_token(body, refresh=True)
    listing = documents_status(gini_sandbox, body["access_token"])
    assert listing.status_code == 200
    assert listing.json()["documents"] == []

    # And can be read back.
    response = httpx.get(location, headers={"Authorization": f"Bearer {client_token(gini_sandbox)}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": user_id, "email": "new-user@example.com"}


def test_create_user_with_lower_case_bearer(gini_sandbox: RunningSandbox) -> None:
    assert create_user(gini_sandbox, "lower@example.com", "secret6", scheme="bearer").status_code == 201


def test_created_user_with_wrong_password_is_invalid_grant(gini_sandbox: RunningSandbox) -> None:
    assert create_user(gini_sandbox, "pw@example.com", "right-password").status_code == 201
    response = password_grant(gini_sandbox, UserSpec(email="pw@example.com", password="wrong-password"))
    assert_oauth_error(response, 400, "invalid_grant")


def assert_api_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "requestId"}
    assert body["requestId"] == response.headers["x-request-id"]
    return str(body["message"])


def test_create_user_with_existing_email_is_400(gini_sandbox: RunningSandbox) -> None:
    message = assert_api_error(create_user(gini_sandbox, DEMO_USER.email, "another-password"), 400)
    assert "exists" in message
    # Case does not make it a different email.
    assert_api_error(create_user(gini_sandbox, OTHER_USER.email.upper(), "another-password"), 400)
    assert create_user(gini_sandbox, "twice@example.com", "secret6").status_code == 201
    assert_api_error(create_user(gini_sandbox, "twice@example.com", "secret7"), 400)
    # The original password still works.
    assert (
        password_grant(gini_sandbox, UserSpec(email="twice@example.com", password="secret6")).status_code
        == 200
    )


def test_create_user_with_short_password_is_400(gini_sandbox: RunningSandbox) -> None:
    message = assert_api_error(create_user(gini_sandbox, "short@example.com", "12345"), 400)
    assert "6" in message
    assert create_user(gini_sandbox, "short@example.com", "123456").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "secret6"},
        {"password": "secret6"},
        {"email": "x@example.com"},
        {"email": "x@example.com", "password": 123456},
        ["x@example.com", "secret6"],
    ],
)
def test_create_user_with_invalid_entity_is_400(gini_sandbox: RunningSandbox, body: Any) -> None:
    response = httpx.post(
        f"{gini_sandbox.base_url}/api/users",
        json=body,
        headers={"Authorization": f"Bearer {client_token(gini_sandbox)}"},
    )
    assert_api_error(response, 400)


def test_create_user_with_non_json_body_is_400(gini_sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{gini_sandbox.base_url}/api/users",
        content=b"email=x@example.com&password=secret6",
        headers={
            "Authorization": f"Bearer {client_token(gini_sandbox)}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert_api_error(response, 400)


def test_create_user_with_user_token_is_403(gini_sandbox: RunningSandbox) -> None:
    response = create_user(gini_sandbox, "forbidden@example.com", "secret6", access=token(gini_sandbox))
    assert_api_error(response, 403)
    # Nothing was created.
    response = password_grant(gini_sandbox, UserSpec(email="forbidden@example.com", password="secret6"))
    assert_oauth_error(response, 400, "invalid_grant")


def test_create_user_without_token_is_401(gini_sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{gini_sandbox.base_url}/api/users", json={"email": "anon@example.com", "password": "secret6"}
    )
    assert_api_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_create_user_with_basic_client_auth_is_401(gini_sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{gini_sandbox.base_url}/api/users",
        json={"email": "basic@example.com", "password": "secret6"},
        auth=DEMO_AUTH,
    )
    assert_api_error(response, 401)


def test_create_user_with_unknown_or_expired_token_is_401(gini_sandbox: RunningSandbox) -> None:
    response = create_user(gini_sandbox, "a@example.com", "secret6", access=str(uuid.uuid4()))
    assert_api_error(response, 401)
    assert "invalid_token" in response.headers["www-authenticate"]
    access = client_token(gini_sandbox)
    gini_sandbox.advance_clock(43200)
    response = create_user(gini_sandbox, "a@example.com", "secret6", access=access)
    assert_api_error(response, 401)
    assert "invalid_token" in response.headers["www-authenticate"]


def test_get_user(gini_sandbox: RunningSandbox) -> None:
    location = create_user(gini_sandbox, "Mixed.Case@Example.com", "secret6").headers["location"]
    user_id = location.rsplit("/", 1)[1]
    headers = {"Authorization": f"Bearer {client_token(gini_sandbox)}", "Accept": "application/json"}
    response = httpx.get(f"{gini_sandbox.base_url}/api/users/{user_id}", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"id": user_id, "email": "Mixed.Case@Example.com"}


def test_get_unknown_user_is_404(gini_sandbox: RunningSandbox) -> None:
    headers = {"Authorization": f"Bearer {client_token(gini_sandbox)}"}
    response = httpx.get(f"{gini_sandbox.base_url}/api/users/{uuid.uuid4()}", headers=headers)
    assert_api_error(response, 404)


def test_get_user_needs_a_client_token(gini_sandbox: RunningSandbox) -> None:
    location = create_user(gini_sandbox, "get@example.com", "secret6").headers["location"]
    assert_api_error(httpx.get(location), 401)
    assert_api_error(httpx.get(location, headers={"Authorization": f"Bearer {token(gini_sandbox)}"}), 403)


# expiry of access tokens on the Pay API


def test_access_token_expires_after_its_lifetime(gini_sandbox: RunningSandbox) -> None:
    access = token(gini_sandbox)
    assert documents_status(gini_sandbox, access).status_code == 200
    gini_sandbox.advance_clock(3600)
    response = documents_status(gini_sandbox, access)
    assert_api_error(response, 401)
    assert "invalid_token" in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    # A new token works again, and the refresh token outlives the access token.
    assert documents_status(gini_sandbox, token(gini_sandbox)).status_code == 200


def test_refresh_token_outlives_its_access_token(gini_sandbox: RunningSandbox) -> None:
    body = token_response(gini_sandbox)
    gini_sandbox.advance_clock(3600)
    assert documents_status(gini_sandbox, body["access_token"]).status_code == 401
    refreshed = refresh_grant(gini_sandbox, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert documents_status(gini_sandbox, refreshed.json()["access_token"]).status_code == 200


def test_expire_tokens_invalidates_every_live_access_token(gini_sandbox: RunningSandbox) -> None:
    user_access, client_access = token(gini_sandbox), client_token(gini_sandbox)
    assert gini_sandbox.expire_tokens() == 2
    assert documents_status(gini_sandbox, user_access).status_code == 401
    response = create_user(gini_sandbox, "late@example.com", "secret6", access=client_access)
    assert response.status_code == 401
    assert gini_sandbox.expire_tokens() == 0


def test_missing_bearer_on_the_pay_api_is_401_without_invalid_token(gini_sandbox: RunningSandbox) -> None:
    response = httpx.get(f"{gini_sandbox.base_url}/documents", headers={"Accept": API_JSON})
    assert_api_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "invalid_token" not in response.headers["www-authenticate"]
