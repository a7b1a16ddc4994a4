"""The Gini document API: thin methods over ``GiniSession.call``."""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from airflow_provider_gini.client.errors import (
    GiniConfigError,
    GiniConflict,
    GiniHTTPError,
    GiniNotFound,
    GiniProcessingError,
    GiniProcessingTimeout,
    GiniProtocolError,
    shown,
)
from airflow_provider_gini.client.listing import DocumentListing
from airflow_provider_gini.client.settings import is_under
from airflow_provider_gini.client.transport import GiniSession, json_of

log = logging.getLogger("airflow_provider_gini.client")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# The progress values that end processing. Gini documents PENDING, COMPLETED and ERROR; any
# other value (Android's SDK maps e.g. "QUEUED" to UNKNOWN) is taken as not finished yet and
# waited for like PENDING: docs/gini-compat.md.
FINISHED = frozenset({"COMPLETED", "ERROR"})
KNOWN_PROGRESS = FINISHED | {"PENDING"}
FileInput = str | os.PathLike[str] | bytes | IO[bytes]
Moment = datetime | int | float
_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
# What a part of a composite document may be, by its sniffed media type: the subtype of its
# partial media type, application/vnd.gini.v<N>.partial+<subtype> (Gini's docs, Submit Files;
# gini-mobile-android MediaTypes.forPartialDocument builds it from the file's media type).
PARTIAL_SUBTYPES = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/tiff": "tiff",
}
# A metadata name, the <Name> of an X-Document-Metadata-<Name> header: an HTTP token (RFC 9110
# tchar). Values go as they are: printable ASCII, no spaces at either end (HTTP would strip them).
METADATA_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
METADATA_VALUE = re.compile(r"(?:[!-~](?:[ -~]*[!-~])?)?")


def epoch_ms(moment: Moment) -> int:
    """Epoch milliseconds from an aware datetime (naive means UTC) or a number of epoch ms."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    if isinstance(moment, bool) or not isinstance(moment, (int, float)):
        raise GiniConfigError(f"Expected a datetime or epoch milliseconds, got {type(moment).__name__}")
    return int(moment)


def unfinished(document_id: str, progress: Any, warned: set[str]) -> bool:
    """Whether a document with this ``progress`` is still being processed: PENDING, or a progress
    Gini does not document, which is waited for like PENDING with one warning per document
    (``warned`` holds the ids already warned of)."""
    if progress in FINISHED:
        return False
    if progress not in KNOWN_PROGRESS and document_id not in warned:
        warned.add(document_id)
        log.warning(
            "Gini document %s has progress %r, which Gini does not document; waiting for "
            "COMPLETED or ERROR as for PENDING",
            document_id,
            shown(str(progress), 40),
        )
    return True


# The ids this package takes from Gini (listed, or named by a Location): Gini's are UUIDs. The
# rule is the one the pull's file names rely on, so an id that passes it is safe as a folder name
# (no '.', '..', separators or line breaks). Used with fullmatch: '$' would take a trailing '\n'.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def safe_id(value: Any, what: str = "document id") -> str:
    """``value`` if it is an id by SAFE_ID, else GiniProtocolError naming it."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        named = repr(shown(value, 60)) if isinstance(value, str) else type(value).__name__
        raise GiniProtocolError(f"Refusing a {what} that is not a plain token: {named}")
    return value


def segment(document_id: str) -> str:
    if not isinstance(document_id, str) or not document_id.strip() or len(document_id) > 200:
        raise GiniConfigError(f"Invalid Gini document id: {document_id!r}")
    return quote(document_id, safe="")


class GiniAPI:
    """The document and payment API. Subclasses provide the ``gini`` session."""

    # The feedback verb this client has found the server takes (send_feedback).
    _feedback_method: str = "POST"

    @property
    def gini(self) -> GiniSession:
        raise NotImplementedError

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        return self.gini.call(method, path, what=what, read=json_of, **kwargs)

    def get_access_token(self) -> str:
        """A valid user access token (cached and refreshed by the session)."""
        return self.gini.tokens.token()

    def list_documents(
        self, limit: int = 20, offset: int | None = None, next_cursor: int | None = None
    ) -> dict[str, Any]:
        """One page of ``GET /documents``, as Gini sent it: ``{"documents": [...]}``, with a
        ``totalCount`` on servers that page by offset. Gini's sources disagree on the paging
        contract (docs/gini-compat.md); ``iter_documents`` follows each of them."""
        params: dict[str, int] = {"limit": limit}
        if offset is not None:
            params["offset"] = offset
        if next_cursor is not None:
            params["next"] = next_cursor
        return self._list_page(params)

    def _list_page(self, params: dict[str, int]) -> dict[str, Any]:
        page = self._json("GET", "/documents", "GET /documents", params=params)
        if not isinstance(page, dict) or not isinstance(page.get("documents"), list):
            raise GiniProtocolError("Gini answered a document list without a 'documents' list")
        # More than asked for is no page of this list: a server this broken is not trusted further.
        if len(page["documents"]) > params["limit"]:
            raise GiniProtocolError(
                f"Gini answered {len(page['documents'])} documents to a request for {params['limit']}"
            )
        return page

    def document_listing(
        self, created_after: Moment | None = None, created_before: Moment | None = None, page_size: int = 100
    ) -> DocumentListing:
        """The documents created in ``[created_after, created_before)``, each exactly once, in the
        order Gini lists them; its ``stats`` tell how it paged. Raises ``GiniIncompleteListing``
        when Gini's answers cannot prove the list complete, instead of returning part of it."""
        lower = epoch_ms(created_after) if created_after is not None else None
        upper = epoch_ms(created_before) if created_before is not None else None
        return DocumentListing(self._list_page, lower, upper, page_size)

    def iter_documents(
        self, created_after: Moment | None = None, created_before: Moment | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every document created in ``[created_after, created_before)``, each exactly once (see
        ``document_listing``)."""
        return iter(self.document_listing(created_after, created_before, page_size))

    def get_document(self, document_id: str) -> dict[str, Any]:
        doc = self._json(
            "GET", f"/documents/{segment(document_id)}", f"GET /documents/{shown(document_id, 80)}"
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("progress"), str):
            raise GiniProtocolError("Gini answered a document without a progress")
        return doc

    def get_extractions(self, document_id: str) -> dict[str, Any]:
        return self.get_extractions_as_sent(document_id)[0]

    def get_extractions_as_sent(self, document_id: str) -> tuple[dict[str, Any], bytes]:
        """The extractions, and the bytes Gini sent them as: a pull stores those unchanged."""
        try:
            body, content = self.gini.call(
                "GET",
                f"/documents/{segment(document_id)}/extractions",
                what=f"GET /documents/{shown(document_id, 80)}/extractions",
                read=lambda response: (json_of(response), response.content),
            )
        except (GiniNotFound, GiniConflict) as exc:
            # Gini documents only 404 here, and no source shows what a document still being
            # processed answers (404 or 409): the document itself says which it is.
            progress = self.get_document(document_id)["progress"]  # GiniNotFound: it is gone
            if progress == "ERROR":
                raise GiniProcessingError(
                    f"Gini could not process document {document_id} (progress ERROR): it has no extractions",
                    document_id=document_id,
                ) from exc
            state = (
                "COMPLETED, yet Gini has no extractions for it"
                if progress == "COMPLETED"
                else f"{shown(progress, 40)}: its extractions are available once Gini has processed it "
                "(wait with wait_for_processing or GiniDocumentProcessedSensor)"
            )
            raise GiniConflict(
                f"Document {document_id} is {state}",
                status=exc.status or 409,
                request_id=exc.request_id,
                codes=exc.codes,
            ) from exc
        if not isinstance(body, dict):
            raise GiniProtocolError("Gini answered extractions that are not a JSON object")
        return body, content

    def get_layout(self, document_id: str) -> dict[str, Any]:
        body = self._json(
            "GET",
            f"/documents/{segment(document_id)}/layout",
            f"GET /documents/{shown(document_id, 80)}/layout",
        )
        if not isinstance(body, dict):
            raise GiniProtocolError("Gini answered a layout that is not a JSON object")
        return body

    def get_pages(self, document_id: str) -> list[dict[str, Any]]:
        body = self._json(
            "GET",
            f"/documents/{segment(document_id)}/pages",
            f"GET /documents/{shown(document_id, 80)}/pages",
        )
        if not isinstance(body, list):
            raise GiniProtocolError("Gini answered pages that are not a JSON list")
        return body

    def download_processed(self, document_id: str, destination: str | os.PathLike[str] | IO[bytes]) -> int:
        """Stream the processed file to a path (written atomically) or a binary file object.

        Returns the number of bytes written. A broken download is retried from the start.
        """
        path = f"/documents/{segment(document_id)}/processed"
        headers = {"Accept": "application/octet-stream, */*;q=0.5"}
        if isinstance(destination, (str, os.PathLike)):
            target = Path(destination)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    written = self._stream(path, headers, out, document_id)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return written
        return self._stream(path, headers, destination, document_id)

    def _stream(self, path: str, headers: dict[str, str], out: IO[bytes], document_id: str) -> int:
        start = out.tell() if out.seekable() else None

        def read(response: requests.Response) -> int:
            if start is not None:
                out.seek(start)
                out.truncate()
            written = 0
            for chunk in response.iter_content(chunk_size=256 * 1024):
                out.write(chunk)
                written += len(chunk)
            return written

        # Only a seekable destination can be rewound, so only then is a broken stream retried.
        return self.gini.call(
            "GET",
            path,
            what=f"GET /documents/{shown(document_id, 80)}/processed",
            read=read,
            stream=True,
            headers=headers,
            idempotent=start is not None,
        )

    def upload_document(
        self,
        file: FileInput,
        filename: str | None = None,
        doctype: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Upload a document (a path, bytes or a binary file object) and return its id.
        ``metadata`` goes as ``X-Document-Metadata-<name>`` headers (``check_metadata``).

        Not idempotent: it is retried only when the request provably never reached Gini, so a
        retry can never create a second document.
        """
        data, name = _read_upload(file, filename)
        media = content_type or _guess_type(data, name)
        params = {k: v for k, v in (("filename", name), ("doctype", doctype)) if v}
        headers = {"Content-Type": media, **metadata_headers(metadata)}
        return self._create("/documents", "POST /documents", data=data, params=params, headers=headers)

    def upload_partial_document(
        self,
        file: FileInput,
        filename: str | None = None,
        doctype: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Upload one part of a composite document (a PDF or an image: ``PARTIAL_SUBTYPES``) as a
        partial document, ``application/vnd.gini.v<N>.partial+<subtype>``, and return its id."""
        data, name = _read_upload(file, filename)
        subtype = partial_subtype(data)
        if subtype is None:
            raise GiniConfigError(
                f"Cannot upload {shown(name or 'the file', 200)!r} as a partial document: it is not a "
                f"{', '.join(sorted(set(PARTIAL_SUBTYPES.values())))} file"
            )
        media = f"application/vnd.gini.v{self.gini.settings.api_version}.partial+{subtype}"
        return self.upload_document(
            data, filename=name, doctype=doctype, content_type=media, metadata=metadata
        )

    def create_composite_document(
        self,
        partials: Sequence[str],
        rotations: Sequence[int] | None = None,
        filename: str | None = None,
        doctype: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """A composite document from partial documents (ids or URIs), in page order, each turned
        by its rotation (a multiple of 90 degrees, sent normalised to 0, 90, 180 or 270 as
        Gini's iOS library documents it). Not idempotent, like an upload."""
        if not partials:
            raise GiniConfigError("A composite document needs at least one partial document")
        rotations = checked_rotations(rotations or None, len(partials))  # [] as before: no turns
        body = {
            "partialDocuments": [
                {
                    "document": p if "://" in p else self.gini.url(f"/documents/{segment(p)}"),
                    "rotationDelta": r % 360,
                }
                for p, r in zip(partials, rotations, strict=True)
            ]
        }
        params = {k: v for k, v in (("filename", filename), ("doctype", doctype)) if v}
        media = f"application/vnd.gini.v{self.gini.settings.api_version}.composite+json"
        headers = {"Content-Type": media, **metadata_headers(metadata)}
        return self._create(
            "/documents", "POST /documents (composite)", json=body, params=params, headers=headers
        )

    def _create(self, path: str, what: str, **kwargs: Any) -> str:
        def location(response: requests.Response) -> str:
            return self._created_id(response.headers.get("Location", ""), path, what)

        return self.gini.call(
            "POST", path, what=what, read=location, idempotent=False, expect=(201,), **kwargs
        )

    def _created_id(self, location: str, path: str, what: str) -> str:
        """The id of what a 201 to ``POST {path}`` created: its Location must be
        ``<API URL>{path}/<id>`` (or relative to the request's URL), the id by SAFE_ID. Anything
        else (another origin, a payment request's URL for a document, '..') is refused."""
        if not location:
            raise GiniProtocolError(f"Gini answered 201 to {what} without a Location")
        collection = urlsplit(self.gini.url(path)).path + "/"
        absolute = urljoin(self.gini.url(path), location.strip())
        if not is_under(absolute, self.gini.settings.api_url):
            raise GiniProtocolError(
                f"Gini answered 201 to {what} with a Location outside {self.gini.settings.api_url}: "
                f"{shown(urlsplit(absolute).netloc, 120)!r}"
            )
        target = urlsplit(absolute)
        if not target.path.startswith(collection):
            raise GiniProtocolError(
                f"Gini answered 201 to {what} with a Location outside {collection}: "
                f"{shown(target.path, 120)!r}"
            )
        return safe_id(target.path[len(collection) :].removesuffix("/"), f"Location id from {what}")

    def poll_document(
        self,
        document_id: str,
        timeout: float,
        poll_interval: float,
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """The document once it has finished (COMPLETED or ERROR), or as it is when ``timeout``
        runs out or ``stop`` is set. A progress Gini does not document is waited for like
        PENDING, with a warning."""
        deadline = time.monotonic() + timeout
        stop = stop or threading.Event()
        warned: set[str] = set()
        while True:
            doc = self.get_document(document_id)
            if not unfinished(document_id, doc["progress"], warned):
                return doc
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.wait(min(poll_interval, remaining)):
                return doc

    def wait_for_processing(
        self, document_id: str, timeout: float = 300.0, poll_interval: float = 1.0
    ) -> dict[str, Any]:
        """Poll until the document is COMPLETED and return it; raise on ERROR and on timeout.

        A progress other than PENDING, COMPLETED and ERROR is waited for like PENDING."""
        doc = self.poll_document(document_id, timeout, poll_interval)
        if doc["progress"] == "COMPLETED":
            return doc
        if doc["progress"] == "ERROR":
            raise GiniProcessingError(
                f"Gini could not process document {document_id} (progress ERROR)", document_id=document_id
            )
        raise GiniProcessingTimeout(
            f"Document {document_id} was still {shown(doc['progress'], 40)} after {timeout:g} s",
            document_ids=[document_id],
        )

    def send_feedback(
        self,
        document_id: str,
        extractions: Mapping[str, Any],
        compound_extractions: Mapping[str, Any] | None = None,
    ) -> None:
        """Send corrected extractions, e.g. ``{"amountToPay": {"value": "12.50:EUR"}}``.

        Gini's SDKs send POST since 2021-08; the Pay API docs show PUT. POST goes first, and a
        405 turns this hook to PUT for its remaining calls (docs/gini-compat.md). A POST creates
        a feedback record each time, so it is retried only when it never reached Gini; a PUT,
        which replaces, like a read."""
        body: dict[str, Any] = {"extractions": dict(extractions)}
        if compound_extractions:
            body["compoundExtractions"] = dict(compound_extractions)
        path = f"/documents/{segment(document_id)}/extractions/feedback"
        while True:
            method = self._feedback_method
            try:
                self.gini.call(
                    method,
                    path,
                    what=f"{method} /documents/{shown(document_id, 80)}/extractions/feedback",
                    read=lambda r: None,
                    idempotent=method == "PUT",
                    json=body,
                    expect=(204,),
                    headers={"Content-Type": self.gini.settings.media_type},
                )
                return
            except GiniHTTPError as exc:
                if exc.status != 405 or method == "PUT":
                    raise
                self._feedback_method = "PUT"

    def delete_document(self, document_id: str) -> None:
        self.gini.call(
            "DELETE",
            f"/documents/{segment(document_id)}",
            what=f"DELETE /documents/{shown(document_id, 80)}",
            read=lambda r: None,
            expect=(204,),
        )

    def create_payment_request(
        self,
        *,
        payment_provider: str,
        recipient: str,
        iban: str,
        amount: str,
        purpose: str,
        bic: str | None = None,
        source_document: str | None = None,
    ) -> str:
        """Create a payment request and return its id. ``amount`` looks like ``"12.50:EUR"``."""
        body = {
            "paymentProvider": payment_provider,
            "recipient": recipient,
            "iban": iban,
            "amount": amount,
            "purpose": purpose,
        }
        if bic:
            body["bic"] = bic
        if source_document:
            body["sourceDocumentLocation"] = (
                source_document
                if "://" in source_document
                else self.gini.url(f"/documents/{segment(source_document)}")
            )
        return self._create(
            "/paymentRequests",
            "POST /paymentRequests",
            json=body,
            headers={"Content-Type": self.gini.settings.media_type},
        )

    def get_payment_request(self, payment_request_id: str) -> dict[str, Any]:
        body = self._json(
            "GET",
            f"/paymentRequests/{segment(payment_request_id)}",
            f"GET /paymentRequests/{shown(payment_request_id, 80)}",
        )
        if not isinstance(body, dict):
            raise GiniProtocolError("Gini answered a payment request that is not a JSON object")
        return body

    def list_payment_requests(self) -> list[dict[str, Any]]:
        """``GET /paymentRequests``: the user's payment requests, a bare JSON array as the SDKs
        decode it (docs/gini-compat.md). Items carry their id only in ``_links._self``."""
        body = self._json("GET", "/paymentRequests", "GET /paymentRequests")
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise GiniProtocolError(
                "Gini answered a payment request list that is not a JSON array of objects"
            )
        return body

    def resolve_payment_request(
        self,
        payment_request_id: str,
        *,
        recipient: str,
        iban: str,
        amount: str,
        purpose: str,
        bic: str | None = None,
    ) -> dict[str, Any]:
        """``POST /paymentRequests/{id}/payment``: a payer's bank app marks the request paid (the
        Bank API's "resolve"); returns the resolved request. Not idempotent: never re-sent once
        it may have reached Gini (a second one answers 409)."""
        body = {"recipient": recipient, "iban": iban, "amount": amount, "purpose": purpose}
        if bic:
            body["bic"] = bic
        resolved = self.gini.call(
            "POST",
            f"/paymentRequests/{segment(payment_request_id)}/payment",
            what=f"POST /paymentRequests/{shown(payment_request_id, 80)}/payment",
            read=json_of,
            idempotent=False,
            expect=(200, 201),
            json=body,
            headers={"Content-Type": self.gini.settings.media_type},
        )
        if not isinstance(resolved, dict):
            raise GiniProtocolError("Gini answered a resolved payment request that is not a JSON object")
        return resolved

    def delete_payment_request(self, payment_request_id: str) -> None:
        self.gini.call(
            "DELETE",
            f"/paymentRequests/{segment(payment_request_id)}",
            what=f"DELETE /paymentRequests/{shown(payment_request_id, 80)}",
            read=lambda r: None,
            expect=(204,),
        )


def _read_upload(file: FileInput, filename: str | None) -> tuple[bytes, str | None]:
    if isinstance(file, (bytes, bytearray)):
        data, name = bytes(file), filename
    elif isinstance(file, (str, os.PathLike)):
        path = Path(file)
        if not path.is_file():
            raise GiniConfigError(f"Cannot upload {str(path)!r}: no such file")
        data, name = path.read_bytes(), filename or path.name
    elif hasattr(file, "read"):
        data = file.read()
        if not isinstance(data, bytes):
            raise GiniConfigError("Open the file in binary mode ('rb') to upload it")
        name = filename or (
            Path(str(file.name)).name if isinstance(getattr(file, "name", None), str) else None
        )
    else:
        raise GiniConfigError(f"Cannot upload a {type(file).__name__}: give a path, bytes or a binary file")
    if not data:
        raise GiniConfigError("Cannot upload an empty document")
    if len(data) >= MAX_UPLOAD_BYTES:
        raise GiniConfigError(f"The document has {len(data)} bytes; Gini accepts documents under 10 MiB")
    return data, name


def checked_rotations(rotations: Any, count: int) -> list[int]:
    """One rotation per file (partial document), each an integer multiple of 90 degrees (0
    for all when None), else GiniConfigError saying what to give."""
    if rotations is None:
        return [0] * count
    if isinstance(rotations, (str, bytes)) or not isinstance(rotations, Sequence):
        raise GiniConfigError(f"rotations must be a list of integers, got a {type(rotations).__name__}")
    if len(rotations) != count:
        raise GiniConfigError(
            f"rotations has {len(rotations)} item(s) for {count} file(s): give one per file"
        )
    not_int = [r for r in rotations if isinstance(r, bool) or not isinstance(r, int)]
    if not_int:
        raise GiniConfigError(
            f"rotations must be integers (multiples of 90 degrees, e.g. 0, 90, -90, 180), got "
            f"{shown(repr(not_int), 200)}: a template renders a string unless the DAG has "
            "render_template_as_native_obj=True"
        )
    bad = [r for r in rotations if r % 90]
    if bad:
        raise GiniConfigError(
            f"rotations must be multiples of 90 degrees (e.g. 0, 90, -90, 180), got {bad!r}"
        )
    return list(rotations)


def _sniffed(data: bytes) -> str | None:
    """The media type a file's bytes begin like (their magic number), or None."""
    return next((media for magic, media in _MAGIC if data.startswith(magic)), None)


def partial_subtype(data: bytes) -> str | None:
    """The partial media subtype (``pdf``, ``png``, ...) of a file's bytes, by their magic
    number; None for anything that cannot be a partial document."""
    media = _sniffed(data)
    return None if media is None else PARTIAL_SUBTYPES.get(media)


def last_segment(uri: Any) -> str | None:
    """The id at the end of a resource's URI (``.../documents/<id>``), or None if ``uri`` is
    none. Not checked: compare it, or pass it through safe_id."""
    if not isinstance(uri, str) or not uri.strip():
        return None
    return urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1] or None


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """``metadata`` as Gini takes it in ``X-Document-Metadata-<name>`` headers, else
    GiniConfigError naming every bad entry: names are HTTP tokens, unique ignoring case (HTTP
    headers are), values strings of printable ASCII without spaces at either end, or integers
    and Decimals, sent as ``str(value)`` (a template rendered as a native object gives
    ``"10020030"`` as an int). Floats (``1e-05``, ``0.30000000000000004``), bools, None and
    containers are refused: their text is not what the caller meant to send. Nothing is
    encoded or cut here: a value must reach Gini as given."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise GiniConfigError(
            f"Document metadata must be a mapping of names to values, got {type(metadata).__name__}"
        )
    problems: list[str] = []
    seen: dict[str, str] = {}
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not METADATA_NAME.fullmatch(name):
            problems.append(
                f"name {shown(str(name), 80)!r} is not an HTTP token (ASCII letters, digits, -_.!#$%&'*+^`|~)"
            )
        elif name.lower() in seen:
            problems.append(f"names {seen[name.lower()]!r} and {name!r} differ only in case")
        else:
            seen[name.lower()] = name
        if (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, Decimal) and value.is_finite()
        ):
            value = str(value)
        if not isinstance(value, str):
            problems.append(
                f"the value of {shown(str(name), 80)!r} is a {type(value).__name__}: give a string "
                "(or an integer)"
            )
        elif not METADATA_VALUE.fullmatch(value):
            problems.append(
                f"the value of {shown(str(name), 80)!r} is not printable ASCII without spaces at either end "
                "(percent-encode it, e.g. with urllib.parse.quote)"
            )
        else:
            checked[str(name)] = value
    if problems:
        raise GiniConfigError(f"Invalid document metadata: {'; '.join(problems)}")
    return checked


def metadata_headers(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    return {f"X-Document-Metadata-{name}": value for name, value in check_metadata(metadata).items()}


def _guess_type(data: bytes, name: str | None) -> str:
    guessed = _sniffed(data) or (mimetypes.guess_type(name)[0] if name else None)
    return guessed or "application/octet-stream"
