"""What an upload body is: its media type, checks, and the Document it becomes."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from airflow_provider_gini.sandbox.errors import ApiError
from airflow_provider_gini.sandbox.invoices import Line, Paper, paper_from_bytes
from airflow_provider_gini.sandbox.render import decode_paper
from airflow_provider_gini.sandbox.state import Document, DocumentKind, SandboxState, User

MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}
SUBTYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "tiff": "image/tiff",
}
EXTENSIONS = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/tiff": "tiff",
    "text/plain": "txt",
    "application/json": "json",
}
_PARTIAL_RE = re.compile(r"^application/vnd\.gini\.v(\d+)\.partial\+(.+)$")
_COMPOSITE_RE = re.compile(r"^application/vnd\.gini\.v(\d+)\.composite\+json$")
_DOC_URI_RE = re.compile(r"/documents/([^/?#]+)/?$")


@dataclass
class Upload:
    data: bytes
    content_type: str
    filename: str | None
    doctype: str | None
    metadata: dict[str, str]


def sniff(data: bytes) -> str | None:
    for media, magics in MAGIC.items():
        if data.startswith(magics):
            return media
    return None


def _check_magic(media: str, data: bytes) -> None:
    if not data.startswith(MAGIC[media]):
        raise ApiError(400, f"Invalid document: the body is not a valid {media} file")


def _check_text(state: SandboxState, data: bytes) -> None:
    if len(data) > state.config.max_text_bytes:
        raise ApiError(413, f"Text documents may have at most {state.config.max_text_bytes} bytes")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "Invalid document: text must be UTF-8") from exc


def build_document(state: SandboxState, user: User, upload: Upload) -> Document:
    config = state.config
    if not upload.data:
        raise ApiError(400, "Invalid document: the body is empty")
    if len(upload.data) > config.max_upload_bytes:
        raise ApiError(413, f"Documents must be smaller than {config.max_upload_bytes} bytes")
    media = upload.content_type.split(";")[0].strip().lower()
    kind: DocumentKind = "regular"
    partials: list[Document] = []
    paper: Paper | None = None
    if (match := _PARTIAL_RE.match(media)) is not None:
        _check_version(state, int(match.group(1)))
        kind, sub = "partial", match.group(2)
        if sub == "qr+json":
            paper = _qr_paper(upload.data)
            media = "application/json"
        elif sub in SUBTYPES:
            media = SUBTYPES[sub]
            _check_magic(media, upload.data)
        else:
            raise ApiError(415, f"Unsupported partial document type: {upload.content_type}")
    elif (match := _COMPOSITE_RE.match(media)) is not None:
        _check_version(state, int(match.group(1)))
        kind = "composite"
        partials = _composite_partials(state, user, upload.data)
        paper = partials[0].paper
        media = "application/pdf"
    elif media in MAGIC:
        _check_magic(media, upload.data)
    elif media == "text/plain":
        _check_text(state, upload.data)
    elif media in ("application/octet-stream", ""):
        sniffed = sniff(upload.data)
        if sniffed is None:
            raise ApiError(415, "Unsupported content type: the file is not a PDF, image or text")
        media = sniffed
    else:
        raise ApiError(415, f"Unsupported content type: {upload.content_type}")
    if paper is None:
        paper = (decode_paper(upload.data) if media == "application/pdf" else None) or paper_from_bytes(
            upload.data, upload.doctype
        )
    now = state.clock.now()
    name = upload.filename or f"document.{EXTENSIONS.get(media, 'bin')}"
    doc = Document(
        id=str(uuid.uuid4()),
        owner=user.id,
        name=name,
        created_ms=int(now * 1000),
        content_type=media,
        kind=kind,
        ready_at=now + state.settings.processing_delay,
        outcome="ERROR" if config.error_marker and config.error_marker in name else "COMPLETED",
        paper=paper,
        page_count=max(1, len(partials)),
        data=upload.data if kind != "composite" else None,
        doctype=upload.doctype,
        source_classification=_classification(kind, media),
        partials=[p.id for p in partials],
        metadata=upload.metadata,
    )
    for partial in partials:
        partial.composites.append(doc.id)
    return state.add_document(doc)


def _classification(kind: DocumentKind, media: str) -> str:
    if kind == "composite":
        return "COMPOSITE"
    if media.startswith("image/"):
        return "SCANNED"
    return "TEXT" if media in ("text/plain", "application/json") else "NATIVE"


def _check_version(state: SandboxState, version: int) -> None:
    if version not in state.config.api_versions:
        raise ApiError(415, f"Unsupported API version v{version} in the content type")


def _qr_paper(data: bytes) -> Paper:
    try:
        body = json.loads(data)
        payment = body["paymentdata"]
        recipient, iban = payment["paymentRecipient"], payment["iban"]
        if (
            not isinstance(body.get("qrcode"), str)
            or not isinstance(recipient, str)
            or not isinstance(iban, str)
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            400, "Invalid QR document: needs qrcode and paymentdata.iban/paymentRecipient"
        ) from exc
    extractions = {
        key: (entity, str(payment[key]))
        for key, entity in (
            ("paymentRecipient", "companyname"),
            ("iban", "iban"),
            ("bic", "bic"),
            ("amountToPay", "amount"),
            ("paymentReference", "reference"),
        )
        if payment.get(key)
    }
    return Paper("RemittanceSlip", [Line(body["qrcode"])], extractions)


def _composite_partials(state: SandboxState, user: User, data: bytes) -> list[Document]:
    try:
        items = json.loads(data)["partialDocuments"]
        if not isinstance(items, list) or not items:
            raise TypeError
        uris = [item["document"] for item in items]
        rotations = [item.get("rotationDelta", 0) for item in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            400, 'Invalid composite: expected {"partialDocuments": [{"document": <uri>}]}'
        ) from exc
    partials = []
    for uri, rotation in zip(uris, rotations, strict=True):
        if not isinstance(rotation, int) or rotation % 90:
            raise ApiError(400, "Invalid composite: rotationDelta must be a multiple of 90")
        match = _DOC_URI_RE.search(uri) if isinstance(uri, str) else None
        doc = state.owned_document(user.id, match.group(1)) if match else None
        if doc is None or doc.kind != "partial":
            raise ApiError(400, f"Invalid composite: {uri!r} is not one of your partial documents")
        partials.append(doc)
    return partials
