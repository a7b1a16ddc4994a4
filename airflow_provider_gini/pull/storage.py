"""Where a pull writes, and how it writes so that a killed task leaves nothing half-done.

Each file is written under a temporary name beside its target, then renamed. A document's
``document.json`` is written last, so its presence means the document is complete; a rerun
skips such documents. Document ids become folder names only when they are plain tokens, so
nothing the API sends can point outside the destination.

Several pulls may write one destination at once (mapped pulls, catch-up runs, two DAGs). A
temporary name carries its writer's lease token, and a temporary file is removed only by its
writer or once that writer is provably dead (pull/lease.py), so no pull deletes what a live one
is writing, and what a killed one left goes at the next pull.

The destination is an ``ObjectStoragePath``; per-document work goes straight to its fsspec
filesystem with plain string paths, because building path objects costs more CPU than the
writes themselves when thousands of documents share one core. For a local destination the
hot path (list, make the folder, write, rename) uses the os module directly: fsspec's local
filesystem spends more CPU normalising paths than the system calls take.
"""

from __future__ import annotations

import contextlib
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

# The client's id rule (one rule for ids from a list and from a Location); re-exported here.
from airflow_provider_gini.client.api import safe_id as safe_id
from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.lease import LEASES, Lease, Liveness

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


def public_uri(root: ObjectStoragePath) -> str:
    """Where ``root`` is, as a URI without the Airflow connection id that ``str()`` puts in it
    (``s3://aws_default@bucket/gini``): Assets, lineage and manifests name where the data is,
    and the same data must have one name whichever connection wrote it."""
    protocol = root.protocol if isinstance(root.protocol, str) else root.protocol[0]
    return f"{protocol}://{root.path}"


def temporary_parts(name: str) -> tuple[str, str]:
    """(writer's token, the rest) of a temporary name, ``.gini-tmp-<token>-<rest>``."""
    token, _, rest = name[len(TMP_MARK) :].partition("-")
    return token, rest


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
        try:
            return open(path, "wb")
        except FileNotFoundError:  # a pull that found the document gone removed its empty folder
            os.makedirs(os.path.dirname(path), exist_ok=True)
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
        # Temporary names: unique to this Store by its lease token, then by a counter (a uuid4
        # per write costs a system call; next() on a count is atomic under the GIL).
        self.token = uuid.uuid4().hex
        self._temporary = f"{TMP_MARK}{self.token}-"
        self._writes = itertools.count()
        self.liveness = Liveness(self)
        self.lease: Lease | None = None

    def path(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def uri(self, relative: str = "") -> str:
        """A file's URI, or the destination's, without a connection id (public_uri)."""
        base = public_uri(self.root).rstrip("/")
        return f"{base}/{relative}" if relative else base

    def ensure_writable(self, key: str | None = None, holder: str = "") -> None:
        """Fail early, before any request, when the destination cannot be written; then take
        this writer's lease (before any temporary file), with ``key`` the watermark key whose
        turn it will wait for (None: none)."""
        try:
            self.fs.makedirs(f"{self.base}/{LEASES}", exist_ok=True)
            self.lease = Lease(self.token, self, self.liveness, key, holder)
            self.lease.take()
        except (OSError, PermissionError) as exc:
            raise GiniConfigError(
                f"Cannot write to the destination {self.root}: {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        """Give up the lease, after the last write."""
        if self.lease is not None:
            self.lease.release()

    def _lease_path(self, token: str) -> str:
        return self.path(f"{LEASES}/{token}.json")

    def read_lease(self, token: str) -> bytes | None:
        try:
            with self.fs.open(self._lease_path(token), "rb") as handle:
                return handle.read()  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def write_lease(self, token: str, data: bytes, first: bool) -> None:
        if first:
            with self.files.open_write(self._lease_path(token)) as out:
                out.write(data)
        else:
            self.write_bytes(f"{LEASES}/{token}.json", data)

    def remove_lease(self, token: str) -> None:
        self.remove_quietly(f"{LEASES}/{token}.json")

    def lease_tokens(self) -> list[str]:
        names = self.names(LEASES) or []
        return [n.removesuffix(".json") for n in names if n.endswith(".json") and not n.startswith(TMP_MARK)]

    def removable(self, name: str) -> bool:
        """Whether ``name`` is a temporary file this writer may remove: its own, or a dead
        writer's."""
        if not name.startswith(TMP_MARK):
            return False
        token, _ = temporary_parts(name)
        return token == self.token or self.liveness.dead(token)

    def sweep(self, folders: tuple[str, ...]) -> int:
        """Remove what dead writers left in ``folders`` (the destination's own: manifests,
        state) and in the leases' folder, dead leases too; their leftovers in document folders
        go when a pull next visits the document. Returns how many files went."""
        removed = 0
        for folder in (*folders, LEASES):
            for name in self.names(folder) or []:
                if self.removable(name):
                    self.remove_quietly(f"{folder}/{name}")
                    removed += 1
        for token in self.lease_tokens():
            if token != self.token and self.liveness.dead(token):
                self.remove_lease(token)
                removed += 1
        return removed

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
        """Empty ``folder`` unless it holds a complete document (a ``document.json``): all but
        the temporary files of other live writers, and the folder itself once it is empty."""
        names = self.names(folder)
        if names is None or DOCUMENT in names:
            return
        kept = False
        for name in names:
            if name.startswith(TMP_MARK) and not self.removable(name):
                kept = True
                continue
            self.remove_quietly(f"{folder}/{name}")
        if not kept and isinstance(self.files, _OsFiles):  # object stores have no empty folders
            with contextlib.suppress(OSError):  # another pull wrote into it meanwhile
                os.rmdir(self.path(folder))

    def remove_leftovers(self, folder: str, names: list[str]) -> None:
        """Temporary files that dead writers left behind."""
        for name in names:
            if self.removable(name):
                self.remove_quietly(f"{folder}/{name}")

    def remove_quietly(self, relative: str) -> None:
        """Remove a file that another pull may have removed first."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(relative))
