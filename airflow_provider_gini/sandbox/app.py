"""Builds the sandbox's FastAPI application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from airflow_provider_gini.sandbox import admin, documents, payments, usercenter
from airflow_provider_gini.sandbox.access import Access, AccessGuard
from airflow_provider_gini.sandbox.config import SandboxConfig
from airflow_provider_gini.sandbox.errors import install_error_handlers
from airflow_provider_gini.sandbox.middleware import SandboxMiddleware
from airflow_provider_gini.sandbox.seed import seed
from airflow_provider_gini.sandbox.state import SandboxState

DESCRIPTION = """A local emulator of Gini's user center (user.gini.net) and Pay API
(pay-api.gini.net), with fault injection. Both are served from one origin;
the admin API lives under /__sandbox/ and needs the admin token
(Authorization: Bearer <token>). See docs/sandbox.md for the behaviour
it chose where Gini's documentation is silent."""


def create_app(config: SandboxConfig | None = None, access: Access | None = None) -> FastAPI:
    """``access``: the admin token and extra Host names (default: a fresh token, loopback only);
    the app holds it as ``app.state.access``."""
    config = config or SandboxConfig()
    access = access or Access()
    state = SandboxState(config)
    if config.seed:
        seed(state)
    app = FastAPI(title="Gini sandbox", version="1", description=DESCRIPTION)
    app.state.sandbox = state
    app.state.access = access
    for module in (usercenter, documents, payments, admin):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(SandboxMiddleware)
    app.add_middleware(AccessGuard, access=access)  # added last: outermost, before faults and logs
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec plus the bearer scheme that the handlers check inline."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        spec.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A user token from /oauth/token"}
        }
        for path, operations in spec["paths"].items():
            if path.startswith(("/documents", "/paymentRequests", "/paymentProviders")):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = spec
    return app.openapi_schema
