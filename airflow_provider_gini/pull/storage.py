"""Where a pull writes, and how it writes so that a killed task leaves nothing half-done.

Each file is written under a temporary name beside its target, then renamed. A document's
``document.json`` is written last, so its presence means the document is complete; a rerun
skips such documents. Document ids become folder names only when they are plain tokens, so
nothing the API sends can point outside the destination.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_gini.client.errors import GiniConfigError, GiniProtocolError

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAFE_EXT = re.compile(r"^[a-z0-9]{1,8}$")
TMP_MARK = ".gini-tmp-"
DOCUMENT = "document.json"
EXTRACTIONS = "extractions.json"
MEDIA_EXT = {
    "application/pdf": "pdf",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/tiff": "tiff",
    "text/plain": "txt",
}


def destination_path(destination: str | ObjectStoragePath, conn_id: str | None = None) -> ObjectStoragePath:
    """An ObjectStoragePath for a URL (``s3://...``, ``file://...``) or a local path."""
    if isinstance(destination, ObjectStoragePath):
        return destination
    if not isinstance(destination, str) or not destination.strip():
        raise GiniConfigError("destination must be a path or URL, e.g. /data/gini or s3://bucket/gini")
    value = destination.strip()
    if "://" not in value:
        value = Path(value).expanduser().resolve().as_uri()
    return ObjectStoragePath(value, conn_id=conn_id)


def ensure_writable(root: ObjectStoragePath) -> None:
    """Fail early, before any request, when the destination cannot be written."""
    probe = root / f"{TMP_MARK}probe-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as out:  # type: ignore[no-untyped-call]
            out.write(b"")
        probe.unlink()
    except (OSError, PermissionError) as exc:
        raise GiniConfigError(f"Cannot write to the destination {root}: {type(exc).__name__}: {exc}") from exc


def document_dir(root: ObjectStoragePath, document_id: Any) -> ObjectStoragePath:
    if not isinstance(document_id, str) or not SAFE_ID.match(document_id) or document_id in (".", ".."):
        shown = document_id[:60] if isinstance(document_id, str) else type(document_id).__name__
        raise GiniProtocolError(f"Refusing a document id that is not a plain token: {shown!r}")
    return root / document_id


def processed_name(doc: dict[str, Any], content_type: str | None = None) -> str:
    """``processed.<ext>`` from the document's name or the content type, never from raw API text."""
    raw = doc.get("name")
    name = raw if isinstance(raw, str) else ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if not SAFE_EXT.match(ext):
        ext = MEDIA_EXT.get((content_type or "").split(";")[0].strip(), "bin")
    return f"processed.{ext}"


def write_atomic(target: ObjectStoragePath, write: Callable[[IO[bytes]], Any]) -> None:
    temporary = target.parent / f"{TMP_MARK}{uuid.uuid4().hex}-{target.name}"
    try:
        with temporary.open("wb") as out:  # type: ignore[no-untyped-call]
            write(out)
        temporary.rename(target)
    except BaseException:
        if temporary.exists():
            temporary.unlink()
        raise


def write_json(target: ObjectStoragePath, body: Any) -> None:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    write_atomic(target, lambda out: out.write(data))


def read_json(target: ObjectStoragePath) -> Any:
    return json.loads(target.read_bytes())


def remove_leftovers(folder: ObjectStoragePath) -> None:
    """Temporary files a killed task left behind."""
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(TMP_MARK):
            entry.unlink()
