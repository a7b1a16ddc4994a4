"""Where a pull writes, and how it writes so that a killed task leaves nothing half-done.

Each file is written under a temporary name beside its target, then renamed. A document's
``document.json`` is written last, so its presence means the document is complete; a rerun
skips such documents. Document ids become folder names only when they are plain tokens, so
nothing the API sends can point outside the destination.

The destination is an ``ObjectStoragePath``; per-document work goes straight to its fsspec
filesystem with plain string paths, because building path objects costs more CPU than the
writes themselves when thousands of documents share one core. For a local destination the
hot path (list, make the folder, write, rename) uses the os module directly: fsspec's local
filesystem spends more CPU normalising paths than the system calls take.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from airflow.sdk import ObjectStoragePath
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

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


def json_bytes(body: Any, **options: Any) -> bytes:
    """UTF-8 JSON of ``body``, non-ASCII text as is. A string with a lone surrogate (JSON's
    ``"\\ud800"`` escape decodes to one, and UTF-8 cannot encode it) keeps its escapes instead."""
    try:
        return json.dumps(body, ensure_ascii=False, **options).encode()
    except UnicodeEncodeError:
        return json.dumps(body, **options).encode()


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


def safe_id(document_id: Any) -> str:
    if not isinstance(document_id, str) or not SAFE_ID.match(document_id) or document_id in (".", ".."):
        shown = document_id[:60] if isinstance(document_id, str) else type(document_id).__name__
        raise GiniProtocolError(f"Refusing a document id that is not a plain token: {shown!r}")
    return document_id


def processed_name(doc: dict[str, Any], content_type: str | None = None) -> str:
    """``processed.<ext>`` from the document's name or the content type, never from raw API text."""
    raw = doc.get("name")
    name = raw if isinstance(raw, str) else ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if not SAFE_EXT.match(ext):
        ext = MEDIA_EXT.get((content_type or "").split(";")[0].strip(), "bin")
    return f"processed.{ext}"


class _FsspecFiles:
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def listdir(self, path: str) -> list[str]:
        return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(path, detail=False)]

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)

    def open_write(self, path: str) -> IO[bytes]:
        return self.fs.open(path, "wb")  # type: ignore[no-any-return]

    def replace(self, source: str, target: str) -> None:
        self.fs.mv(source, target)


class _OsFiles:
    """The local hot path: fsspec's LocalFileSystem normalises every path, which costs more CPU
    than the system call it wraps."""

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        try:
            os.mkdir(path)  # the usual case, a new folder in an existing one: one system call
        except FileExistsError:
            if not os.path.isdir(path):
                raise
        except FileNotFoundError:
            os.makedirs(path, exist_ok=True)

    def open_write(self, path: str) -> IO[bytes]:
        return open(path, "wb")

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)


class Store:
    """Files under one destination, addressed by paths relative to it (``"<id>/document.json"``)."""

    def __init__(self, root: ObjectStoragePath) -> None:
        self.root = root
        self.fs = root.fs
        self.base = str(root.path).rstrip("/")
        self.files = _OsFiles() if isinstance(self.fs, LocalFileSystem) else _FsspecFiles(self.fs)
        # Temporary names: unique to this Store by its random token, then by a counter (a uuid4
        # per write costs a system call; next() on a count is atomic under the GIL).
        self._temporary = f"{TMP_MARK}{uuid.uuid4().hex}-"
        self._writes = itertools.count()

    def path(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def uri(self, relative: str) -> str:
        return str(self.root / relative)

    def ensure_writable(self) -> None:
        """Fail early, before any request, when the destination cannot be written."""
        probe = f"{TMP_MARK}probe-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(self.base, exist_ok=True)
            self.write_atomic(probe, lambda out: out.write(b""))
            self.fs.rm(self.path(probe))
        except (OSError, PermissionError) as exc:
            raise GiniConfigError(
                f"Cannot write to the destination {self.root}: {type(exc).__name__}: {exc}"
            ) from exc

    def names(self, folder: str) -> list[str] | None:
        """The file names in ``folder``, or None when it does not exist."""
        try:
            return self.files.listdir(self.path(folder))
        except FileNotFoundError:
            return None

    def makedirs(self, folder: str) -> None:
        self.files.makedirs(self.path(folder))

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.path(relative)))

    def write_atomic(self, relative: str, write: Callable[[IO[bytes]], Any]) -> None:
        target = self.path(relative)
        folder, _, name = target.rpartition("/")
        temporary = f"{folder}/{self._temporary}{next(self._writes)}-{name}"
        try:
            with self.files.open_write(temporary) as out:
                write(out)
            self.files.replace(temporary, target)
        except BaseException:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)
            raise

    def write_json(self, relative: str, body: Any) -> None:
        self.write_bytes(relative, json_bytes(body, separators=(",", ":")))

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.write_atomic(relative, lambda out: out.write(data))

    def read_json(self, relative: str) -> Any:
        with self.fs.open(self.path(relative), "rb") as handle:
            return json.loads(handle.read())

    def remove_incomplete(self, folder: str) -> None:
        """Remove ``folder`` unless it holds a complete document (a ``document.json``)."""
        names = self.names(folder)
        if names is not None and DOCUMENT not in names:
            self.fs.rm(self.path(folder), recursive=True)

    def remove_leftovers(self, folder: str, names: list[str]) -> None:
        """Temporary files a killed task left behind."""
        for name in names:
            if name.startswith(TMP_MARK):
                self.fs.rm(self.path(f"{folder}/{name}"))
