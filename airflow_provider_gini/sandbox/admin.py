"""The admin API under /__sandbox/: faults, clock, tokens, documents, payment requests, and what
was seen.

Every route but GET /health needs the admin token, and changes carry JSON or no body: the
guard in access.py checks both before a handler runs. Admin requests are neither faulted nor
counted.
"""

from __future__ import annotations

import random
import uuid
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from airflow_provider_gini.sandbox.api_auth import sandbox
from airflow_provider_gini.sandbox.documents import base_url, document_bytes, document_json
from airflow_provider_gini.sandbox.errors import ApiError
from airflow_provider_gini.sandbox.faults import FaultRule
from airflow_provider_gini.sandbox.invoices import make_paper
from airflow_provider_gini.sandbox.state import Document, SandboxState

router = APIRouter(prefix="/__sandbox", tags=["sandbox admin"])
# A progress an unfinished document may show: upper-case words, but not COMPLETED or ERROR.
UNFINISHED = r"^[A-Z][A-Z_]{0,39}$"


def _unfinished(value: str | None) -> str | None:
    if value in ("COMPLETED", "ERROR"):
        raise ValueError("an unfinished document cannot show COMPLETED or ERROR")
    return value


class NewDocuments(BaseModel):
    owner: str = Field(description="The owner's email")
    count: int = Field(default=1, ge=1, le=100_000)
    name: str | None = Field(default=None, description="Name of the document(s); default generated")
    creationDate: int | None = Field(default=None, description="Epoch ms of the first; default now")
    spacingMs: int = Field(
        default=1000, ge=0, description="Between consecutive documents' creation dates (0: all share one)"
    )
    pendingProgress: str = Field(
        default="PENDING",
        pattern=UNFINISHED,
        description="The progress shown until ready, e.g. QUEUED (a value Gini does not document)",
    )
    _check_progress = field_validator("pendingProgress")(_unfinished)
    outcome: Literal["COMPLETED", "ERROR"] = "COMPLETED"
    readyIn: float = Field(default=0.0, ge=0, description="Seconds the documents stay PENDING")
    doctype: Literal["Invoice", "RemittanceSlip"] | None = None
    prerender: bool = Field(default=False, description="Make the PDF bytes now, not at the first download")


class DocumentChange(BaseModel):
    outcome: Literal["COMPLETED", "ERROR"] | None = None
    readyIn: float | None = Field(default=None, ge=0)
    name: str | None = None
    pendingProgress: str | None = Field(default=None, pattern=UNFINISHED)
    _check_progress = field_validator("pendingProgress")(_unfinished)


class SettingsChange(BaseModel):
    user_token_ttl: int | None = Field(default=None, ge=1)
    client_token_ttl: int | None = Field(default=None, ge=1)
    processing_delay: float | None = Field(default=None, ge=0)


class UserChange(BaseModel):
    password: str = Field(min_length=1)


class PaymentRequestChange(BaseModel):
    # Only "invalid": Gini documents the status (open, paid, invalid) but no source says what
    # makes a request invalid, so the sandbox never does it by itself; "paid" has Gini's own
    # route (POST /paymentRequests/{id}/payment).
    status: Literal["invalid"] = Field(description="The status to set: invalid")


class ClockAdvance(BaseModel):
    seconds: float = Field(ge=0)


def _user_id(state: SandboxState, email: str) -> str:
    user = state.users_by_email.get(email.lower())
    if user is None:
        raise ApiError(404, f"No sandbox user {email}")
    return user.id


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    state = sandbox(request)
    return {"status": "ok", "documents": len(state.documents), "users": len(state.users)}


@router.get("/counters", summary="Requests per route and status, grants per type, faults fired")
async def counters(request: Request) -> dict[str, Any]:
    return sandbox(request).counters()


@router.post("/counters/reset", status_code=204, summary="Clear the counters and the request log")
async def reset_counters(request: Request) -> Response:
    sandbox(request).reset_observations()
    return Response(status_code=204)


@router.get("/requests", summary="The request log, oldest first")
async def requests_log(request: Request, limit: int = Query(1000, ge=1)) -> list[dict[str, Any]]:
    log = sandbox(request).request_log
    return list(log)[-limit:]


@router.get("/faults")
async def list_faults(request: Request) -> list[FaultRule]:
    return sandbox(request).faults.rules()


@router.post("/faults", status_code=201)
async def add_fault(request: Request, rule: FaultRule) -> FaultRule:
    return sandbox(request).faults.add(rule)


@router.delete("/faults", status_code=204)
async def clear_faults(request: Request) -> Response:
    sandbox(request).faults.clear()
    return Response(status_code=204)


@router.delete("/faults/{rule_id}", status_code=204)
async def remove_fault(request: Request, rule_id: str) -> Response:
    if not sandbox(request).faults.remove(rule_id):
        raise ApiError(404, f"No fault rule {rule_id}")
    return Response(status_code=204)


@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    return sandbox(request).settings.model_dump()


@router.patch("/settings")
async def change_settings(request: Request, change: SettingsChange) -> dict[str, Any]:
    state = sandbox(request)
    state.settings = state.settings.model_copy(update=change.model_dump(exclude_none=True))
    return state.settings.model_dump()


@router.post("/clock/advance", summary="Move the sandbox clock forward (tokens expire, processing ends)")
async def advance_clock(request: Request, body: ClockAdvance) -> dict[str, float]:
    state = sandbox(request)
    state.clock.offset += body.seconds
    return {"offset": state.clock.offset, "now": state.clock.now()}


@router.post("/tokens/expire", summary="Expire every access token now")
async def expire_tokens(request: Request) -> dict[str, int]:
    return {"expired": sandbox(request).expire_access_tokens()}


@router.post("/tokens/revoke-refresh", summary="Revoke every active refresh token")
async def revoke_refresh(request: Request) -> dict[str, int]:
    return {"revoked": sandbox(request).revoke_refresh_tokens()}


@router.patch("/users/{email}", summary="Change a user's password (e.g. to make the password grant fail)")
async def change_user(request: Request, email: str, change: UserChange) -> dict[str, str]:
    state = sandbox(request)
    user = state.users[_user_id(state, email)]
    user.password = change.password
    return {"id": user.id, "email": user.email}


@router.get("/secrets", summary="Every secret the sandbox knows or issued, for leak searches")
async def secrets(request: Request) -> dict[str, list[str]]:
    state = sandbox(request)
    return {
        "issued_tokens": list(state.issued_secrets),
        "client_secrets": [c.client_secret for c in state.clients.values()],
        "passwords": [u.password for u in state.users.values()],
    }


@router.get("/documents", summary="The server's truth: a user's documents, newest first")
async def all_documents(
    request: Request,
    owner: str,
    created_after: int | None = Query(None, description="epoch ms, inclusive"),
    created_before: int | None = Query(None, description="epoch ms, exclusive"),
) -> list[dict[str, Any]]:
    state = sandbox(request)
    user_id = _user_id(state, owner)
    base, now = base_url(request), state.clock.now()
    index = state.indexes[user_id]
    docs = [state.documents[i] for i in index.newest_first()]
    api = state.config.api
    return [
        document_json(d, base, now, api)
        for d in docs
        if (created_after is None or d.created_ms >= created_after)
        and (created_before is None or d.created_ms < created_before)
    ]


@router.get("/documents/{document_id}", summary="A document with its feedback and upload metadata")
async def one_document(request: Request, document_id: str) -> dict[str, Any]:
    state = sandbox(request)
    doc = state.documents.get(document_id)
    if doc is None:
        raise ApiError(404, f"Document {document_id} not found")
    body = document_json(doc, base_url(request), state.clock.now(), state.config.api)
    # The metadata headers as received, whatever echo_metadata says: the server's truth.
    return body | {
        "feedback": doc.feedback,
        "metadata": doc.metadata,
        "extractions": doc.paper.extractions_body(),
    }


@router.post("/documents", status_code=201, summary="Insert documents directly (e.g. while a client pages)")
async def insert_documents(request: Request, body: NewDocuments) -> Response:
    state = sandbox(request)
    owner = _user_id(state, body.owner)
    now = state.clock.now()
    first_ms = body.creationDate if body.creationDate is not None else int(now * 1000)
    rng = random.Random(f"{owner}/{first_ms}/{body.count}")
    ids = []
    for i in range(body.count):
        created_ms = first_ms + i * body.spacingMs
        paper = make_paper(rng, date.fromtimestamp(created_ms / 1000), body.doctype)
        doc = state.add_document(
            Document(
                id=str(uuid.uuid4()),
                owner=owner,
                name=body.name or f"inserted-{created_ms}-{i}.pdf",
                created_ms=created_ms,
                content_type="application/pdf",
                kind="regular",
                ready_at=now + body.readyIn,
                outcome=body.outcome,
                paper=paper,
                page_count=1,
                doctype=paper.doctype,
                pending_progress=body.pendingProgress,
            )
        )
        if body.prerender:
            document_bytes(doc)
        ids.append(doc.id)
    return JSONResponse({"ids": ids}, status_code=201)


@router.patch("/documents/{document_id}")
async def change_document(request: Request, document_id: str, change: DocumentChange) -> dict[str, Any]:
    state = sandbox(request)
    doc = state.documents.get(document_id)
    if doc is None:
        raise ApiError(404, f"Document {document_id} not found")
    if change.outcome is not None:
        doc.outcome = change.outcome
    if change.readyIn is not None:
        doc.ready_at = state.clock.now() + change.readyIn
    if change.name is not None:
        doc.name = change.name
    if change.pendingProgress is not None:
        doc.pending_progress = change.pendingProgress
    return document_json(doc, base_url(request), state.clock.now(), state.config.api)


@router.delete("/documents/{document_id}", status_code=204)
async def drop_document(request: Request, document_id: str) -> Response:
    state = sandbox(request)
    doc = state.documents.get(document_id)
    if doc is None:
        raise ApiError(404, f"Document {document_id} not found")
    state.remove_document(doc)
    return Response(status_code=204)


@router.get("/paymentRequests", summary="Every user's payment requests, with owner and status")
async def all_payment_requests(request: Request) -> list[dict[str, Any]]:
    state = sandbox(request)
    return [
        {"id": pr.id, "owner": state.users[pr.owner].email, "status": pr.status, "body": pr.body}
        for pr in state.payment_requests.values()
    ]


@router.patch(
    "/paymentRequests/{request_id}",
    summary="Mark an open payment request invalid (a switch: no Gini source says how one becomes invalid)",
)
async def change_payment_request(
    request: Request, request_id: str, change: PaymentRequestChange
) -> dict[str, Any]:
    state = sandbox(request)
    pr = state.payment_requests.get(request_id)
    if pr is None:
        raise ApiError(404, f"Payment request {request_id} not found")
    if pr.status != "open":
        raise ApiError(409, f"Payment request {request_id} is already {pr.status}")
    pr.status = change.status
    return {"id": pr.id, "status": pr.status}
