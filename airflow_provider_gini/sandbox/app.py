"""Builds the sandbox's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from airflow_provider_gini.sandbox import admin, documents, payments, usercenter
from airflow_provider_gini.sandbox.config import SandboxConfig
from airflow_provider_gini.sandbox.errors import install_error_handlers
from airflow_provider_gini.sandbox.middleware import SandboxMiddleware
from airflow_provider_gini.sandbox.seed import seed
from airflow_provider_gini.sandbox.state import SandboxState

DESCRIPTION = """A local emulator of Gini's user center (user.gini.net) and Pay API
(pay-api.gini.net), with fault injection. Both are served from one origin;
the admin API lives under /__sandbox/. See docs/sandbox.md for the behaviour
it chose where Gini's documentation is silent."""


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    config = config or SandboxConfig()
    state = SandboxState(config)
    if config.seed:
        seed(state)
    app = FastAPI(title="Gini sandbox", version="1", description=DESCRIPTION)
    app.state.sandbox = state
    for module in (usercenter, documents, payments, admin):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(SandboxMiddleware)
    return app
