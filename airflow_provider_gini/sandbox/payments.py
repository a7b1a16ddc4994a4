"""pay-api payment requests and their resolution."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from airflow_provider_gini.sandbox.api_auth import authenticate, json_media_type, sandbox
from airflow_provider_gini.sandbox.documents import base_url
from airflow_provider_gini.sandbox.errors import ApiError, json_object
from airflow_provider_gini.sandbox.invoices import AMOUNT_RE, BIC_RE, iban_is_valid
from airflow_provider_gini.sandbox.state import PaymentRequest, SandboxState, User

router = APIRouter(tags=["payments"])
PROVIDERS = {
    "b09ef70a-490f-11eb-952e-9bc6f4646c57": "Sandbox Bank",
    "0d8ea2c4-3d0e-4b5f-9a33-0d6a2f8e7c11": "Sandbox Sparkasse",
}
REQUIRED = ("paymentProvider", "recipient", "iban", "amount", "purpose")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_payment_fields(body: dict[str, Any], required: tuple[str, ...]) -> None:
    missing = [f for f in required if not isinstance(body.get(f), str) or not body[f]]
    if missing:
        raise ApiError(400, f"Validation of the request entity failed: missing {', '.join(missing)}")
    if not iban_is_valid(body["iban"]):
        raise ApiError(400, "Validation of the request entity failed: invalid iban")
    if not AMOUNT_RE.match(body["amount"]):
        raise ApiError(400, "Validation of the request entity failed: amount must look like '12.50:EUR'")
    if body.get("bic") and not BIC_RE.match(str(body["bic"])):
        raise ApiError(400, "Validation of the request entity failed: invalid bic")


def _render(request: Request, pr: PaymentRequest) -> dict[str, Any]:
    base = base_url(request)
    url = f"{base}/paymentRequests/{pr.id}"
    body: dict[str, Any] = {
        k: pr.body[k] for k in ("recipient", "iban", "bic", "amount", "purpose") if k in pr.body
    }
    body |= {
        "createdAt": _iso(pr.created_at),
        "paymentProvider": pr.body["paymentProvider"],
        "status": pr.status,
        "_links": {
            "paymentProvider": f"{base}/paymentProviders/{pr.body['paymentProvider']}",
            "payment": f"{url}/payment",
            "_self": url,
        },
    }
    if pr.body.get("sourceDocumentLocation"):
        body["_links"]["sourceDocumentLocation"] = pr.body["sourceDocumentLocation"]
    if pr.status == "paid":
        body["requesterUri"] = f"{base}/paymentRequests/{pr.id}/payment"
    return body


def _owned(state: SandboxState, user: User, request_id: str) -> PaymentRequest:
    pr = state.payment_requests.get(request_id)
    if pr is None or pr.owner != user.id:
        raise ApiError(404, f"Payment request {request_id} not found")
    return pr


@router.post("/paymentRequests", status_code=201, summary="Create a payment request")
async def create(
    request: Request,
) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    json_media_type(request)
    body = await json_object(request)
    _check_payment_fields(body, REQUIRED)
    if body["paymentProvider"] not in PROVIDERS:
        raise ApiError(400, "Validation of the request entity failed: unknown paymentProvider")
    pr = PaymentRequest(id=str(uuid.uuid4()), owner=user.id, created_at=state.clock.now(), body=body)
    state.payment_requests[pr.id] = pr
    return Response(status_code=201, headers={"Location": f"{base_url(request)}/paymentRequests/{pr.id}"})


@router.get("/paymentRequests", summary="List payment requests")
async def list_requests(
    request: Request,
) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    # A bare array, as every SDK decodes it (gini-mobile-android DocumentService.kt
    # List<PaymentRequestResponse>, payment-requests.json; gini-mobile-ios PaymentRequests).
    mine = [_render(request, pr) for pr in state.payment_requests.values() if pr.owner == user.id]
    return JSONResponse(mine, media_type=media)


@router.get("/paymentRequests/{request_id}", summary="Get a payment request")
async def get_request(request: Request, request_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    return JSONResponse(_render(request, _owned(state, user, request_id)), media_type=media)


@router.delete("/paymentRequests/{request_id}", status_code=204, summary="Delete a payment request")
async def delete_request(request: Request, request_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    del state.payment_requests[_owned(state, user, request_id).id]
    return Response(status_code=204)


@router.post(
    "/paymentRequests/{request_id}/payment", status_code=201, summary="Resolve (pay) a payment request"
)
async def resolve(request: Request, request_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    pr = _owned(state, user, request_id)
    body = await json_object(request)
    _check_payment_fields(body, ("recipient", "iban", "amount", "purpose"))
    if pr.status != "open":
        raise ApiError(409, f"Payment request {request_id} is already {pr.status}")
    pr.status = "paid"
    pr.payment = {key: body[key] for key in ("recipient", "iban", "bic", "amount", "purpose") if key in body}
    pr.payment["paidAt"] = _iso(state.clock.now())
    return JSONResponse(_render(request, pr), status_code=201, media_type=media)


@router.get("/paymentRequests/{request_id}/payment", summary="The payment of a resolved request")
async def get_payment(request: Request, request_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    pr = _owned(state, user, request_id)
    if pr.payment is None:
        raise ApiError(404, f"Payment request {request_id} has not been paid")
    url = f"{base_url(request)}/paymentRequests/{pr.id}"
    body = pr.payment | {"_links": {"paymentRequest": url, "_self": f"{url}/payment"}}
    return JSONResponse(body, media_type=media)


def _provider(base: str, pid: str) -> dict[str, str]:
    return {"id": pid, "name": PROVIDERS[pid], "iconLocation": f"{base}/paymentProviders/{pid}/icon"}


@router.get("/paymentProviders", summary="Payment providers")
async def providers(
    request: Request,
) -> Response:
    authenticate(request)
    media = json_media_type(request)
    base = base_url(request)
    return JSONResponse([_provider(base, pid) for pid in PROVIDERS], media_type=media)


@router.get("/paymentProviders/{provider_id}", summary="One payment provider")
async def provider(request: Request, provider_id: str) -> Response:
    authenticate(request)
    media = json_media_type(request)
    if provider_id not in PROVIDERS:
        raise ApiError(404, f"Payment provider {provider_id} not found")
    return JSONResponse(_provider(base_url(request), provider_id), media_type=media)
