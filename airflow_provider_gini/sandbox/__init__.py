"""The Gini sandbox: a local emulator of Gini's user center and Pay API with fault injection.

It imports nothing from the client, the hook or the operators, so that it can
never agree with them by sharing their mistakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_gini.sandbox.config import (
    CONTRACTS,
    DEMO_CLIENT,
    DEMO_USER,
    OTHER_USER,
    PLAIN_CLIENT,
    PROFILES,
    ApiProfile,
    ClientSpec,
    SandboxConfig,
    UserSpec,
    profile,
)
from airflow_provider_gini.sandbox.faults import FaultRule

if TYPE_CHECKING:
    from airflow_provider_gini.sandbox.access import SandboxAccessError
    from airflow_provider_gini.sandbox.server import RunningSandbox, run_sandbox

__all__ = [
    "CONTRACTS",
    "DEMO_CLIENT",
    "DEMO_USER",
    "OTHER_USER",
    "PLAIN_CLIENT",
    "PROFILES",
    "ApiProfile",
    "ClientSpec",
    "FaultRule",
    "RunningSandbox",
    "SandboxAccessError",
    "SandboxConfig",
    "UserSpec",
    "profile",
    "run_sandbox",
]


def __getattr__(name: str) -> Any:
    # The server (FastAPI, uvicorn) is imported on first use, so that loading the pytest
    # plugin, which every pytest run does once the provider is installed, stays cheap.
    if name in ("RunningSandbox", "run_sandbox"):
        from airflow_provider_gini.sandbox import server

        return getattr(server, name)
    if name == "SandboxAccessError":
        from airflow_provider_gini.sandbox import access

        return access.SandboxAccessError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
