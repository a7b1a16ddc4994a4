"""user.gini.net: the OAuth2 token endpoint, check_token and user management."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from airflow_provider_gini.sandbox.config import ClientSpec
from airflow_provider_gini.sandbox.errors import OAUTH_NO_STORE, ApiError, OAuthError, json_object
from airflow_provider_gini.sandbox.state import AccessToken, SandboxState

router = APIRouter(tags=["user center"])

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Gini user center"'}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def sandbox(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _form(request: Request, body: bytes) -> dict[str, str]:
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            400, "invalid_request", "The token request body must be application/x-www-form-urlencoded"
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError(400, "invalid_request", "The token request body is not a valid form") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError(400, "invalid_request", f"Parameter {key!r} is repeated")
        form[key] = value
    return form


def _client(state: SandboxState, request: Request, form: dict[str, str]) -> ClientSpec:
    header = request.headers.get("authorization")
    in_body = "client_id" in form or "client_secret" in form
    if header and in_body:
        raise OAuthError(400, "invalid_request", "Authenticate the client by one method only")
    if header:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(
                401, "invalid_client", "Client authentication must use HTTP Basic", BASIC_CHALLENGE
            )
        try:
            client_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise OAuthError(401, "invalid_client", "Malformed HTTP Basic credentials", BASIC_CHALLENGE)
        # RFC 6749 section 2.3.1: Basic credentials are form-urlencoded before base64.
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    elif in_body:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    else:
        raise OAuthError(401, "invalid_client", "Full authentication is required", BASIC_CHALLENGE)
    client = state.clients.get(client_id)
    if client is None or not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
        raise OAuthError(401, "invalid_client", "Bad client credentials", BASIC_CHALLENGE)
    return client


def _token_body(state: SandboxState, access: AccessToken, refresh: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access.value,
        "token_type": "bearer",
        "expires_in": max(0, round(access.expires_at - state.clock.now())),
    }
    if refresh:
        body["refresh_token"] = refresh
    if access.kind == "client":
        body["scope"] = "read"
    return body


TOKEN_FORM = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        k: {"type": "string"}
                        for k in (
                            "grant_type",
                            "username",
                            "password",
                            "refresh_token",
                            "client_id",
                            "client_secret",
                        )
                    },
                }
            }
        },
    },
    "parameters": [{"name": "grant_type", "in": "query", "required": False, "schema": {"type": "string"}}],
}


@router.get("/oauth/token", operation_id="token_get", summary="OAuth2 token endpoint (client_credentials)")
@router.post(
    "/oauth/token", operation_id="token_post", summary="OAuth2 token endpoint", openapi_extra=TOKEN_FORM
)
async def token(request: Request) -> Response:
    state = sandbox(request)
    form = _form(request, await request.body())
    if len(request.query_params.getlist("grant_type")) > 1:
        raise OAuthError(400, "invalid_request", "Parameter 'grant_type' is repeated")
    query_grant = request.query_params.get("grant_type")
    body_grant = form.pop("grant_type", None)
    if query_grant and body_grant and query_grant != body_grant:
        raise OAuthError(400, "invalid_request", "grant_type differs between the query and the body")
    grant = query_grant or body_grant
    if not grant:
        raise OAuthError(400, "invalid_request", "Missing grant_type")
    scope_state = request.scope.setdefault("state", {})
    scope_state["grant_type"] = grant
    state.grant_requests[grant] += 1
    try:
        client = _client(state, request, form)
        scope_state["client_id"] = client.client_id
        body = _grant(state, request, client, grant, form)
    except OAuthError as exc:
        state.grant_errors[f"{grant}:{exc.error}"] += 1
        raise
    state.grants_issued[grant] += 1
    return JSONResponse(body, headers=OAUTH_NO_STORE)


def _grant(
    state: SandboxState, request: Request, client: ClientSpec, grant: str, form: dict[str, str]
) -> dict[str, Any]:
    if grant not in ("password", "refresh_token", "client_credentials"):
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")
    if grant not in client.grants:
        raise OAuthError(400, "unauthorized_client", f"This client may not use the {grant} grant")
    if request.method == "GET" and grant != "client_credentials":
        raise OAuthError(400, "invalid_request", f"The {grant} grant must be sent with POST")
    if grant == "client_credentials":
        return _token_body(state, state.issue_access_token("client", client.client_id, None), None)
    if grant == "password":
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise OAuthError(400, "invalid_request", "The password grant needs username and password")
        user = state.users_by_email.get(username.lower())
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise OAuthError(400, "invalid_grant", "Bad credentials")
        user_id = user.id
    else:
        value = form.get("refresh_token")
        if not value:
            raise OAuthError(400, "invalid_request", "The refresh_token grant needs refresh_token")
        old = state.refresh_tokens.get(value)
        if old is None or old.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        if old.state != "active":
            raise OAuthError(400, "invalid_grant", f"Invalid refresh token (already {old.state})")
        old.state = "used"  # rotation: each refresh token works once
        user_id = old.user_id
    access = state.issue_access_token("user", client.client_id, user_id)
    refresh = state.issue_refresh_token(client.client_id, user_id).value if client.refresh_tokens else None
    return _token_body(state, access, refresh)


@router.get("/oauth/check_token", summary="Who a token belongs to (legacy)")
async def check_token(request: Request, token: str = "") -> Response:
    state = sandbox(request)
    access = state.live_access_token(token)
    if access is None:
        raise OAuthError(400, "invalid_token", "Token was not recognised")
    body: dict[str, Any] = {
        "client_id": access.client_id,
        "exp": int(access.expires_at),
        "scope": ["read", "write"] if access.kind == "user" else ["read"],
    }
    if access.user_id:
        body["user_name"] = access.user_id
    return JSONResponse(body)


def _client_token(state: SandboxState, request: Request) -> AccessToken:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(
            401, "Full authentication is required", {"WWW-Authenticate": 'Bearer realm="Gini user center"'}
        )
    access = state.live_access_token(value.strip())
    if access is None:
        raise ApiError(401, "Invalid access token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if access.kind != "client":
        raise ApiError(403, "User management needs a client token (client_credentials grant)")
    return access


@router.post("/api/users", status_code=201, summary="Create a user (client token)")
async def create_user(request: Request) -> Response:
    state = sandbox(request)
    _client_token(state, request)
    body = await json_object(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        raise ApiError(400, "Validation of the request entity failed: invalid email")
    if not isinstance(password, str) or len(password) < 6:
        raise ApiError(400, "Validation of the request entity failed: password needs at least 6 characters")
    if email.lower() in state.users_by_email:
        raise ApiError(400, "A user with this email already exists")
    user = state.add_user(email, password)
    location = str(request.base_url).rstrip("/") + f"/api/users/{user.id}"
    return Response(status_code=201, headers={"Location": location})


@router.get("/api/users/{user_id}", summary="Get a user (client token)")
async def get_user(request: Request, user_id: str) -> Response:
    state = sandbox(request)
    _client_token(state, request)
    user = state.users.get(user_id)
    if user is None:
        raise ApiError(404, "User not found")
    return JSONResponse({"id": user.id, "email": user.email})
