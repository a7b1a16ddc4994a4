"""What a sandbox is started with: its clients, users, token lifetimes, seed and faults.

The sandbox imports nothing from the client, the hook or the operators, so the
values below (the demo credentials included) are its own copy.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gini.sandbox.faults import FaultRule

Grant = Literal["password", "refresh_token", "client_credentials"]
FeedbackMethod = Literal["POST", "PUT"]
FEEDBACK_METHODS: tuple[FeedbackMethod, ...] = ("POST", "PUT")
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


class ApiProfile(BaseModel):
    """How the sandbox answers where Gini's own sources disagree or are silent. Each field names
    its sources; docs/gini-compat.md has the table. ``profile(name, **switches)`` builds one.
    A switch that does not apply to the listing chosen (``cursor`` on ``legacy``, say) is
    ignored."""

    # A misspelt switch must not quietly leave the default in place.
    model_config = ConfigDict(extra="forbid")

    listing: Literal["pay-api", "legacy"] = Field(
        default="pay-api",
        description="pay-api: ?limit=&next=<creation date>, answering {documents} only (the Pay API "
        "docs); legacy: ?limit=&offset=, answering {totalCount, documents} (the SDKs, gini-sdk-ios)",
    )
    order: Literal["ascending", "descending"] = Field(
        default="ascending",
        description="Undocumented; both recorded lists (gini-sdk-ios documents.json, search.json) are "
        "ascending",
    )
    cursor: Literal["inclusive", "exclusive"] = Field(
        default="inclusive",
        description="pay-api: whether next=<ms> lists documents created at <ms> too. Undocumented; the "
        "docs call it 'the next creation date of the next paginated documents'",
    )
    total_count: bool = Field(
        default=False,
        description="pay-api: add totalCount (gini-mobile-ios DocumentList decodes an optional one)",
    )
    offset_param: Literal["offset", "next"] = Field(
        default="offset", description="legacy: the parameter that carries the offset (gini-api-ruby: next)"
    )
    max_limit: int = Field(
        default=250, ge=1, description="A larger limit is a 400 (gini-api-ruby: 'between 1 and 250')"
    )
    page_cap: int | None = Field(
        default=None,
        ge=1,
        description="Switch, no source: silently answer at most this many documents a page",
    )
    page_images: Literal["named", "sizes"] = Field(
        default="named",
        description="named: large/medium (Pay API docs, Android core DocumentPageResponse); sizes: "
        "750x900/1280x1810 (SDK fixtures). The image routes serve every key either way",
    )
    error_body: Literal["message", "items"] = Field(
        default="message",
        description="message: {message, requestId} (gini-api-ruby); items: API v5 {items[{code, "
        "message, object}], requestId} (gini-mobile-android ErrorResponse.kt, iOS fixtures)",
    )
    pending_status: Literal[404, 409] = Field(
        default=404,
        description="Extractions, layout, pages and processed file of an unfinished document (an "
        "ERROR document's layout, pages and file: always 404). The docs list only 404; 409 is a "
        "switch with no source",
    )
    feedback_methods: list[FeedbackMethod] = Field(
        default_factory=lambda: list(FEEDBACK_METHODS),
        min_length=1,
        description="POST (every SDK since 2021-08) and PUT (the Pay API docs); the other answers 405",
    )
    echo_metadata: bool = Field(
        default=False,
        description="Switch, no source: the document JSON (list and GET) echoes the upload's "
        "X-Document-Metadata-* headers as uploadMetadata {name: value}, names lower-case without the "
        "prefix: the sandbox's own shape. Gini's SDK docs call upload metadata 'intended to be used "
        "for reporting'; no source shows Gini returning it, so this is off by default",
    )


PROFILES: dict[str, dict[str, object]] = {
    "pay-api": {"listing": "pay-api", "page_images": "named"},
    "legacy": {"listing": "legacy", "page_images": "sizes"},
}


def profile(name: str = "pay-api", **switches: object) -> ApiProfile:
    """A named profile (``pay-api``, the default, or ``legacy``) with switches changed."""
    if name not in PROFILES:
        raise ValueError(f"unknown sandbox profile {name!r}; profiles: {', '.join(PROFILES)}")
    return ApiProfile.model_validate({**PROFILES[name], **switches})


# One profile for each paging contract Gini's sources show, in both orders and with both
# readings of the cursor: what a DAG's tests (this project's own too) should run against.
CONTRACTS: dict[str, ApiProfile] = {
    "pay-api": profile("pay-api"),
    "pay-api-desc-exclusive": profile("pay-api", order="descending", cursor="exclusive"),
    "legacy": profile("legacy"),
    "legacy-desc": profile("legacy", order="descending"),
}


class SandboxConfig(BaseModel):
    clients: list[ClientSpec] = Field(default_factory=lambda: [DEMO_CLIENT, PLAIN_CLIENT])
    users: list[UserSpec] = Field(default_factory=lambda: [DEMO_USER, OTHER_USER])
    settings: RuntimeSettings = Field(default_factory=RuntimeSettings)
    api_versions: list[int] = Field(default_factory=lambda: [1])
    api: ApiProfile = Field(default_factory=ApiProfile)
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
