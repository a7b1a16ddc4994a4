"""pay-api document routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from airflow_provider_gini.sandbox.api_auth import authenticate, json_media_type, require_accept, sandbox
from airflow_provider_gini.sandbox.config import ApiProfile
from airflow_provider_gini.sandbox.errors import ApiError
from airflow_provider_gini.sandbox.invoices import AMOUNT_RE, BIC_RE, iban_is_valid
from airflow_provider_gini.sandbox.render import image_bytes, layout, pdf_bytes
from airflow_provider_gini.sandbox.state import Document, SandboxState, User
from airflow_provider_gini.sandbox.uploads import Upload, build_document

router = APIRouter(tags=["documents"])
# Page image keys, by the profile's page_images switch: the Pay API docs' names, or the sizes of
# the SDK fixtures. The image route serves every key whichever the documents advertise.
PAGE_IMAGES = {"named": ("large", "medium"), "sizes": ("750x900", "1280x1810")}
PAGE_SIZES = {"750x900": (750, 900), "1280x1810": (1280, 1810), "medium": (750, 900), "large": (1280, 1810)}
# Declared for the OpenAPI spec: the handlers read the raw body themselves.
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/vnd.gini.v1+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "extractions": {"type": "object"},
                        "compoundExtractions": {"type": "object"},
                        "feedback": {"type": "object"},
                    },
                }
            }
        },
    }
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}
FEEDBACK_PATH = "/documents/{document_id}/extractions/feedback"
# Upload metadata headers (Gini: X-Document-Metadata-<Name>); Starlette gives header names lower-case.
METADATA_PREFIX = "x-document-metadata-"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "amount": lambda v: bool(AMOUNT_RE.match(v)),
    "iban": iban_is_valid,
    "bic": lambda v: bool(BIC_RE.match(v)),
    "date": lambda v: bool(_DATE_RE.match(v)),
}


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def document_json(doc: Document, base: str, now: float, api: ApiProfile) -> dict[str, Any]:
    """The document as the API profile ``api`` renders it (page image sizes, echo_metadata)."""
    url = f"{base}/documents/{doc.id}"
    body: dict[str, Any] = {
        "id": doc.id,
        "creationDate": doc.created_ms,
        "name": doc.name,
        "progress": doc.progress(now),
        "origin": "UPLOAD",
        "sourceClassification": doc.source_classification,
        "pageCount": doc.page_count,
        "pages": [
            {
                "images": {size: f"{url}/pages/{n}/{size}" for size in PAGE_IMAGES[api.page_images]},
                "pageNumber": n,
            }
            for n in range(1, doc.page_count + 1)
        ],
        "_links": {
            "extractions": f"{url}/extractions",
            "layout": f"{url}/layout",
            "document": url,
            "processed": f"{url}/processed",
        },
    }
    if doc.partials:
        body["partialDocuments"] = [{"document": f"{base}/documents/{p}"} for p in doc.partials]
    if doc.composites:
        body["compositeDocuments"] = [{"document": f"{base}/documents/{c}"} for c in doc.composites]
    if api.echo_metadata:
        # The echo_metadata switch, in the sandbox's own shape: no Gini source shows upload
        # metadata read back (docs/gini-compat.md), so clients must cope without it.
        body["uploadMetadata"] = {
            name.lower().removeprefix(METADATA_PREFIX): value for name, value in doc.metadata.items()
        }
    return body


def document_bytes(doc: Document) -> bytes:
    if doc.data is None:
        if doc.content_type == "image/jpeg":
            doc.data = image_bytes(doc.paper, 620, 877, "JPEG")
        else:
            doc.data = pdf_bytes(doc.paper, doc.name)
    return doc.data


def _owned(state: SandboxState, user: User, document_id: str) -> Document:
    doc = state.owned_document(user.id, document_id)
    if doc is None:
        raise ApiError(404, f"Document {document_id} not found")
    return doc


def _processed(state: SandboxState, doc: Document, what: str) -> None:
    """Gini documents only 404 ("Requested entity couldn't be found") for these resources; what a
    document still being processed answers is the profile's pending_status switch."""
    progress = doc.progress(state.clock.now())
    if progress not in ("COMPLETED", "ERROR"):
        status = state.config.api.pending_status
        raise ApiError(status, f"The {what} of document {doc.id} is not available yet: it is {progress}")
    if progress == "ERROR" and what != "extractions":
        raise ApiError(404, f"The {what} of document {doc.id} is not available: its processing failed")


def _json(request: Request, body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, media_type=json_media_type(request))


@router.post(
    "/documents",
    status_code=201,
    summary="Upload a document (raw body or multipart 'file')",
    openapi_extra=UPLOAD_BODY,
)
async def upload(
    request: Request,
    filename: str | None = Query(None, max_length=1024),
    doctype: str | None = Query(None, max_length=64),
) -> Response:
    user = authenticate(request)
    json_media_type(request)
    state = sandbox(request)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > state.config.max_upload_bytes + 64 * 1024:
        raise ApiError(413, f"Documents must be smaller than {state.config.max_upload_bytes} bytes")
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        form = await request.form(max_part_size=state.config.max_upload_bytes + 1)
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise ApiError(400, "Multipart uploads need a file in the form field 'file'")
        data = await part.read()
        filename = filename or part.filename
        content_type = part.content_type or "application/octet-stream"
    else:
        data = await request.body()
    metadata = {k: v for k, v in request.headers.items() if k.lower().startswith(METADATA_PREFIX)}
    doc = build_document(state, user, Upload(data, content_type, filename, doctype, metadata))
    return Response(status_code=201, headers={"Location": f"{base_url(request)}/documents/{doc.id}"})


@router.get("/documents", summary="List documents (paging as the profile says: docs/sandbox.md)")
async def list_documents(
    request: Request,
    limit: int = Query(20, ge=1),
    offset: int = Query(0, ge=0),
    next_: int = Query(0, alias="next", ge=0, description="pay-api: a creation date (epoch ms)"),
) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    api = state.config.api
    if limit > api.max_limit:
        raise ApiError(400, f"Validation of the request failed: limit must be between 1 and {api.max_limit}")
    limit = min(limit, api.page_cap or limit)
    index, ascending = state.indexes[user.id], api.order == "ascending"
    if api.listing == "legacy":
        position = next_ if api.offset_param == "next" else offset
        ids = index.by_offset(ascending, position, limit)
    else:
        ids = index.by_cursor(ascending, next_ or None, api.cursor == "inclusive", limit)
    base, now = base_url(request), state.clock.now()
    body: dict[str, Any] = {"documents": [document_json(state.documents[i], base, now, api) for i in ids]}
    if api.listing == "legacy" or api.total_count:
        body = {"totalCount": len(index), **body}
    return JSONResponse(body, media_type=media)


@router.get("/documents/{document_id}", summary="A document and its processing progress")
async def get_document(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    media = json_media_type(request)
    doc = _owned(state, user, document_id)
    body = document_json(doc, base_url(request), state.clock.now(), state.config.api)
    return JSONResponse(body, media_type=media)


@router.delete("/documents/{document_id}", status_code=204, summary="Delete a document")
async def delete_document(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    state.remove_document(_owned(state, user, document_id))
    return Response(status_code=204)


@router.get("/documents/{document_id}/extractions", summary="Extractions, once COMPLETED")
async def extractions(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    json_media_type(request)
    doc = _owned(state, user, document_id)
    _processed(state, doc, "extractions")
    if doc.progress(state.clock.now()) == "ERROR":
        return _json(request, {"extractions": {}, "candidates": {}, "compoundExtractions": {}})
    return _json(request, doc.paper.extractions_body())


@router.get("/documents/{document_id}/layout", summary="Text layout, once COMPLETED")
async def get_layout(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    json_media_type(request)
    doc = _owned(state, user, document_id)
    _processed(state, doc, "layout")
    return _json(request, layout(doc.paper, doc.page_count))


@router.get("/documents/{document_id}/pages", summary="Page image links, once COMPLETED")
async def get_pages(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    json_media_type(request)
    doc = _owned(state, user, document_id)
    _processed(state, doc, "pages")
    body = document_json(doc, base_url(request), state.clock.now(), state.config.api)
    return _json(request, body["pages"])


@router.get("/documents/{document_id}/pages/{page}/{size}", summary="A page image (PNG)")
async def get_page_image(request: Request, document_id: str, page: int, size: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    require_accept(request, ("image/png",))
    doc = _owned(state, user, document_id)
    _processed(state, doc, "page image")
    if not 1 <= page <= doc.page_count or size not in PAGE_SIZES:
        raise ApiError(404, f"No page {page} in size {size}; sizes are {', '.join(PAGE_SIZES)}")
    return Response(image_bytes(doc.paper, *PAGE_SIZES[size]), media_type="image/png")


@router.get("/documents/{document_id}/processed", summary="The processed file, once COMPLETED")
async def get_processed(request: Request, document_id: str) -> Response:
    user = authenticate(request)
    state = sandbox(request)
    doc = _owned(state, user, document_id)
    media = require_accept(request, (doc.content_type, "application/octet-stream"))
    _processed(state, doc, "processed file")
    return Response(document_bytes(doc), media_type=media)


@router.put(FEEDBACK_PATH, status_code=204, operation_id="feedback_put", openapi_extra=FEEDBACK_BODY)
@router.post(FEEDBACK_PATH, status_code=204, operation_id="feedback_post", openapi_extra=FEEDBACK_BODY)
async def feedback(request: Request, document_id: str) -> Response:
    """The Pay API docs: PUT, 204, 404, 406 for request headers not set correctly, 422 for a value
    that fails its label's validation. Gini's SDKs POST since 2021-08."""
    user = authenticate(request)
    state = sandbox(request)
    allowed = state.config.api.feedback_methods
    if request.method not in allowed:
        raise ApiError(405, f"Feedback takes {' or '.join(allowed)}", {"Allow": ", ".join(allowed)})
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (
        content_type == "application/json" or re.match(r"^application/vnd\.gini\.v\d+\+json$", content_type)
    ):
        raise ApiError(406, "The request headers were not set correctly: send application/vnd.gini.v1+json")
    doc = _owned(state, user, document_id)
    _processed(state, doc, "extractions")
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Validation of the request entity failed: body is not JSON") from exc
    state.documents[doc.id].feedback.append(_validated_feedback(doc, body))
    return Response(status_code=204)


def _validated_feedback(doc: Document, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Validation of the request entity failed: expected an object")
    labels = body.get("extractions", body.get("feedback"))
    if not isinstance(labels, dict):
        raise ApiError(400, "Validation of the request entity failed: 'extractions' must be an object")
    known = doc.paper.extractions
    items: list[tuple[str, Any]] = list(labels.items())
    line_items = (body.get("compoundExtractions") or {}).get("lineItems", [])
    if not isinstance(line_items, list) or not all(isinstance(row, dict) for row in line_items):
        raise ApiError(400, "Validation of the request entity failed: lineItems must be a list of objects")
    for row in line_items:
        items += [(f"lineItems.{k}", v) for k, v in row.items()]
    for label, item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise ApiError(400, f"Validation of the request entity failed: {label} needs a string 'value'")
        entity = item.get("entity") or (known[label][0] if label in known else None)
        check = _VALIDATORS.get(str(entity))
        if check is not None and not check(item["value"]):
            raise ApiError(422, f"Invalid value for {label}: {item['value']!r} is not a valid {entity}")
    return body
