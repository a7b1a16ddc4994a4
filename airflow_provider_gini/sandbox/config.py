"""What a sandbox is started with: its clients, users, token lifetimes, seed and faults.

The sandbox imports nothing from the client, the hook or the operators, so the
values below (the demo credentials included) are its own copy.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from airflow_provider_gini.sandbox.faults import FaultRule

Grant = Literal["password", "refresh_token", "client_credentials"]
GRANTS: tuple[Grant, ...] = ("password", "refresh_token", "client_credentials")


class ClientSpec(BaseModel):
    client_id: str
    client_secret: str
    refresh_tokens: bool = Field(
        default=True, description="Issue refresh tokens with user tokens (Gini: per client)."
    )
    grants: list[Grant] = Field(default_factory=lambda: list(GRANTS))


class UserSpec(BaseModel):
    email: str
    password: str


DEMO_CLIENT = ClientSpec(client_id="gini-sandbox-client", client_secret="sandbox-client-secret")
PLAIN_CLIENT = ClientSpec(
    client_id="gini-sandbox-plain", client_secret="sandbox-plain-secret", refresh_tokens=False
)
DEMO_USER = UserSpec(email="demo@sandbox.gini.test", password="sandbox-demo-password")
OTHER_USER = UserSpec(email="other@sandbox.gini.test", password="sandbox-other-password")


class RuntimeSettings(BaseModel):
    """Settings the admin API may change while the sandbox runs."""

    user_token_ttl: int = Field(default=3599, ge=1, description="expires_in of user access tokens, seconds")
    client_token_ttl: int = Field(
        default=43199, ge=1, description="expires_in of client access tokens, seconds"
    )
    processing_delay: float = Field(
        default=0.0, ge=0, description="Seconds an uploaded document stays PENDING before COMPLETED or ERROR"
    )


class SandboxConfig(BaseModel):
    clients: list[ClientSpec] = Field(default_factory=lambda: [DEMO_CLIENT, PLAIN_CLIENT])
    users: list[UserSpec] = Field(default_factory=lambda: [DEMO_USER, OTHER_USER])
    settings: RuntimeSettings = Field(default_factory=RuntimeSettings)
    api_versions: list[int] = Field(default_factory=lambda: [1])
    seed: bool = True
    seed_start: date = date(2026, 1, 5)
    seed_days: int = Field(default=5, ge=0, le=366)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_text_bytes: int = 512 * 1024
    error_marker: str = Field(
        default="gini-error", description="An uploaded document whose filename contains this ends in ERROR"
    )
    faults: list[FaultRule] = Field(default_factory=list)
    request_log_size: int = Field(default=20000, ge=0)
