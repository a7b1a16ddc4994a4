"""Error bodies as Gini sends them.

The document API answers ``{"message", "requestId"}``, or with the profile switch
``error_body="items"`` API v5's ``{"items": [{"code", "message"}], "requestId"}``; the user
center answers RFC 6749 section 5.2 bodies ``{"error", "error_description"}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

OAUTH_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class OAuthError(Exception):
    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or 400 with Gini's validation message."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Validation of the request entity failed: body is not JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Validation of the request entity failed: expected an object")
    return body


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


# API v5 error codes by status, as Gini's SDKs name them (gini-mobile-ios GiniError+Helpers.swift,
# notFoundError.json, gini-mobile-android's Health example app). Other statuses have no known
# code; the sandbox sends the status itself there.
V5_CODES = {400: "2002", 403: "2013", 404: "2501", 422: "2002", 429: "2400", 503: "2800", 504: "3300"}


def error_body(shape: str, status: int, message: str, request_id: str) -> dict[str, Any]:
    """The document API's error body in the profile's shape: ``message`` ({message, requestId})
    or ``items`` (API v5: {items[{code, message}], requestId}, no top-level message)."""
    if shape == "items":
        return {
            "items": [{"code": V5_CODES.get(status, str(status)), "message": message}],
            "requestId": request_id,
        }
    return {"message": message, "requestId": request_id}


def api_error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    shape = request.app.state.sandbox.config.api.error_body
    return JSONResponse(
        error_body(shape, status, message, request_id(request)), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return api_error_response(request, exc.status, exc.message, exc.headers)

    async def on_oauth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuthError)
        body = {"error": exc.error, "error_description": exc.description}
        return JSONResponse(body, status_code=exc.status, headers={**OAUTH_NO_STORE, **exc.headers})

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        if request.url.path.startswith("/oauth/"):
            body = {"error": "invalid_request", "error_description": problems}
            return JSONResponse(body, status_code=400, headers=OAUTH_NO_STORE)
        return api_error_response(request, 400, f"Validation of the request failed: {problems}")

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        return api_error_response(request, exc.status_code, str(exc.detail), headers)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(OAuthError, on_oauth_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
