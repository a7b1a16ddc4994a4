"""Bearer authentication and content negotiation for pay-api routes."""

from __future__ import annotations

import re

from fastapi import Request

from airflow_provider_gini.sandbox.errors import ApiError
from airflow_provider_gini.sandbox.state import SandboxState, User

_VENDOR_RE = re.compile(r"^application/vnd\.gini\.v(\d+)\+json$")


def sandbox(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def authenticate(request: Request) -> User:
    """The user behind the request's bearer token.

    Called inline rather than as a FastAPI dependency, which would cost a third of a request.
    """
    state = sandbox(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "Credentials are missing", {"WWW-Authenticate": 'Bearer realm="Gini API"'})
    token = state.live_access_token(value.strip())
    if token is None:
        raise ApiError(
            401,
            "The access token is invalid or has expired",
            {"WWW-Authenticate": 'Bearer realm="Gini API", error="invalid_token"'},
        )
    if token.kind != "user" or token.user_id is None:
        raise ApiError(
            403,
            "A client token cannot access documents; use a user token",
            {"WWW-Authenticate": 'Bearer realm="Gini API", error="insufficient_scope"'},
        )
    request.scope.setdefault("state", {})["client_id"] = token.client_id
    return state.users[token.user_id]


def accepted_types(request: Request) -> list[str]:
    header = request.headers.get("accept", "")
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def json_media_type(request: Request) -> str:
    """The JSON media type to answer with, or 406 when the client accepts none we serve."""
    versions = sandbox(request).config.api_versions
    types = accepted_types(request)
    if not types:
        return f"application/vnd.gini.v{versions[0]}+json"
    for media in types:
        match = _VENDOR_RE.match(media)
        if match and int(match.group(1)) in versions:
            return media
        if media in ("application/json", "application/*", "*/*"):
            return f"application/vnd.gini.v{versions[0]}+json"
    supported = ", ".join(f"application/vnd.gini.v{v}+json" for v in versions)
    raise ApiError(406, f"Not acceptable: {', '.join(types)}. This API serves {supported}")


def require_accept(request: Request, offered: tuple[str, ...]) -> str:
    """For binary resources: the first offered type the client accepts, or 406."""
    types = accepted_types(request)
    if not types:
        return offered[0]
    for media in types:
        for candidate in offered:
            major = candidate.split("/")[0]
            if media in (candidate, "*/*", f"{major}/*"):
                return candidate
    raise ApiError(406, f"Not acceptable: {', '.join(types)}. This resource is {', '.join(offered)}")
