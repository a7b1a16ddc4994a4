"""The Gini sandbox: a local emulator of Gini's user center and Pay API with fault injection.

It imports nothing from the client, the hook or the operators, so that it can
never agree with them by sharing their mistakes.
"""

from __future__ import annotations

from airflow_provider_gini.sandbox.config import (
    DEMO_CLIENT,
    DEMO_USER,
    OTHER_USER,
    PLAIN_CLIENT,
    ClientSpec,
    SandboxConfig,
    UserSpec,
)
from airflow_provider_gini.sandbox.faults import FaultRule
from airflow_provider_gini.sandbox.server import RunningSandbox, run_sandbox

__all__ = [
    "DEMO_CLIENT",
    "DEMO_USER",
    "OTHER_USER",
    "PLAIN_CLIENT",
    "ClientSpec",
    "FaultRule",
    "RunningSandbox",
    "SandboxConfig",
    "UserSpec",
    "run_sandbox",
]
