"""Small helpers shared by the sandbox tests: tokens and API headers over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, ClientSpec, RunningSandbox, UserSpec

API_JSON = "application/vnd.gini.v1+json"


def token_response(
    sandbox: RunningSandbox, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT
) -> dict[str, Any]:
    """The JSON body of a successful password grant (Basic client auth, grant_type in the query)."""
    response = httpx.post(
        f"{sandbox.base_url}/oauth/token",
        params={"grant_type": "password"},
        data={"username": user.email, "password": user.password},
        auth=(client.client_id, client.client_secret),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def token(sandbox: RunningSandbox, user: UserSpec = DEMO_USER, client: ClientSpec = DEMO_CLIENT) -> str:
    """A user access token from a password grant."""
    return str(token_response(sandbox, user, client)["access_token"])


def client_token(sandbox: RunningSandbox, client: ClientSpec = DEMO_CLIENT) -> str:
    """A client access token from a client_credentials grant."""
    response = httpx.post(
        f"{sandbox.base_url}/oauth/token",
        params={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def api_headers(access_token: str, accept: str = API_JSON) -> dict[str, str]:
    """Headers for a Pay API call as the owner of ``access_token``."""
    return {"Authorization": f"Bearer {access_token}", "Accept": accept}
