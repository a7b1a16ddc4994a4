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

A local destination is written through no symbolic link: the destination, a document's folder
or a file being replaced that is a link is refused (a link would let a pull write, or read,
outside the destination), and files are created with ``O_NOFOLLOW | O_EXCL`` inside a folder
opened with ``O_NOFOLLOW``, so a link planted after a check is not followed either. What a pull
creates there is private by default (files 0600, folders 0700): invoices hold IBANs and amounts.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import stat
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

TMP_MARK = ".gini-tmp-"
DOCUMENT = "document.json"
EXTRACTIONS = "extractions.json"
FILE_MODE = 0o600
FOLDER_MODE = 0o700
# The processed file's extension comes from this allow-list, keyed by the media type of the file
# Gini served, never from the name the uploader gave (``x.html``, ``x.exe``). The media types are
# those of uploads (Gini's upload docs name PDF and JPEG, the SDKs PNG, GIF, TIFF and text too;
# docs/sandbox.md); no source shows HEIC or HEIF. Anything else is ``bin``.
MEDIA_EXT = {
    "application/pdf": "pdf",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/tiff": "tiff",
    "text/plain": "txt",
}
# The client asks for the processed file as application/octet-stream (the one type every Gini
# version serves it as), so the served type is read from the bytes' signature instead.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
HEAD_BYTES = 8
PROCESSED = "processed"
# The names a processed file is stored under: what a rerun recognises as stored.
PROCESSED_NAMES = frozenset(f"{PROCESSED}.{ext}" for ext in (*MEDIA_EXT.values(), "bin"))


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
        given = os.path.abspath(os.path.expanduser(value))
        if os.path.islink(given):  # resolve() below would follow it silently
            raise symlink_refused(given)
        value = Path(given).resolve().as_uri()
    return ObjectStoragePath(value, conn_id=conn_id)


def symlink_refused(path: str) -> GiniConfigError:
    return GiniConfigError(
        f"Refusing to write through the symbolic link {path}: a pull writes only inside its "
        "destination. Remove the link, or choose a destination that is not (and holds no) link."
    )


def checked_mode(value: Any, name: str, needed: int) -> int:
    """A permission mode (``0o640``) that keeps the owner's ``needed`` bits and sets no others
    than read, write and execute."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise GiniConfigError(
            f"{name} must be a permission mode from 0o000 to 0o777, e.g. 0o640; got {value!r}"
        )
    if value & needed != needed:
        raise GiniConfigError(
            f"{name}={value:#o} leaves out bits the pull needs ({needed:#o}, the owner's); use e.g. "
            f"{needed | (value & 0o077):#o}"
        )
    return value


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


def media_type(head: bytes, doc: dict[str, Any]) -> str | None:
    """The media type of a processed file beginning with ``head``: by its signature, or text when
    Gini classified the document as text (text has no signature)."""
    for signature, media in SIGNATURES:
        if head.startswith(signature):
            return media
    return "text/plain" if doc.get("sourceClassification") == "TEXT" else None


def processed_name(head: bytes, doc: dict[str, Any]) -> str:
    """``processed.<ext>``, the extension from MEDIA_EXT by the file's media type, ``bin`` for
    any other; never from the document's name."""
    return f"{PROCESSED}.{MEDIA_EXT.get(media_type(head, doc) or '', 'bin')}"


class _FsspecFiles:
    """A remote store (s3, gcs, ...): object stores have no symbolic links, and no permission
    modes (access is the bucket's policy), so neither check applies."""

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

    def read(self, path: str, size: int = -1) -> bytes:
        with self.fs.open(path, "rb") as handle:
            return handle.read(size)  # type: ignore[no-any-return]


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _OsFiles:
    """The local hot path: fsspec's LocalFileSystem normalises every path, which costs more CPU
    than the system call it wraps. Files are opened and renamed relative to their folder opened
    with O_NOFOLLOW, so no symbolic link is followed even when one is planted after a check; the
    modes are set with fchmod, because the umask could only take bits away."""

    def __init__(self, file_mode: int, folder_mode: int) -> None:
        self.file_mode = file_mode
        self.folder_mode = folder_mode

    def _folder(self, path: str) -> int:
        """A descriptor of the folder ``path``, which must not be a link."""
        try:
            return os.open(path, _FOLDER_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
                raise symlink_refused(path) from None
            raise

    def listdir(self, path: str) -> list[str]:
        fd = self._folder(path)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def makedirs(self, path: str) -> None:
        try:
            os.mkdir(path, self.folder_mode)  # the usual case, a new folder in an existing one
        except FileExistsError:
            if os.path.islink(path):
                raise symlink_refused(path) from None
            if not os.path.isdir(path):
                raise
            return  # an existing folder keeps its mode
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)  # outside the pull's folders
            self.makedirs(path)
            return
        fd = self._folder(path)
        try:
            os.fchmod(fd, self.folder_mode)
        finally:
            os.close(fd)

    def open_write(self, path: str) -> IO[bytes]:
        """A new file (it must not exist: temporary names are unique), mode ``file_mode``."""
        folder, _, name = path.rpartition("/")
        try:
            fd = self._folder(folder)
        except FileNotFoundError:  # a pull that found the document gone removed its empty folder
            self.makedirs(folder)
            fd = self._folder(folder)
        try:
            try:
                out = os.open(name, _CREATE_FLAGS, self.file_mode, dir_fd=fd)
            except FileExistsError:  # O_EXCL: also when a link was planted there
                if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise symlink_refused(path) from None
                raise
        finally:
            os.close(fd)
        try:
            os.fchmod(out, self.file_mode)
            return os.fdopen(out, "wb")
        except BaseException:
            os.close(out)
            raise

    def replace(self, source: str, target: str) -> None:
        """Rename within one folder; a target that is a link is refused (rename would replace
        the link itself, not follow it, but a link there was planted by someone)."""
        folder, _, name = target.rpartition("/")
        fd = self._folder(folder)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise symlink_refused(target)
            os.replace(source.rpartition("/")[2], name, src_dir_fd=fd, dst_dir_fd=fd)
        finally:
            os.close(fd)

    def read(self, path: str, size: int = -1) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise symlink_refused(path) from None
            raise
        with os.fdopen(fd, "rb") as handle:
            return handle.read(size)


class Store:
    """Files under one destination, addressed by paths relative to it (``"<id>/document.json"``)."""

    def __init__(
        self, root: ObjectStoragePath, file_mode: int = FILE_MODE, folder_mode: int = FOLDER_MODE
    ) -> None:
        self.root = root
        self.fs = root.fs
        self.base = str(root.path).rstrip("/")
        self.files: _OsFiles | _FsspecFiles = (
            _OsFiles(
                checked_mode(file_mode, "file_mode", 0o600), checked_mode(folder_mode, "folder_mode", 0o700)
            )
            if isinstance(self.fs, LocalFileSystem)
            else _FsspecFiles(self.fs)
        )
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
            self.files.makedirs(self.base)  # refuses a destination that is a link
            self.makedirs(LEASES)
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
            return self.files.read(self._lease_path(token))
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

    def write_atomic(
        self, relative: str, write: Callable[[IO[bytes]], Any], name_for: Callable[[bytes], str] | None = None
    ) -> str:
        """Write ``relative`` under a temporary name, then rename it into place. With
        ``name_for``, the file's name is ``name_for(its first HEAD_BYTES bytes)`` instead of
        ``relative``'s (in the same folder). Returns the name written."""
        target = self.path(relative)
        folder, _, name = target.rpartition("/")
        temporary = f"{folder}/{self._temporary}{next(self._writes)}-{name}"
        try:
            with self.files.open_write(temporary) as out:
                write(out)
            if name_for is not None:
                name = name_for(self.files.read(temporary, HEAD_BYTES))
            self.files.replace(temporary, f"{folder}/{name}")
        except BaseException:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)
            raise
        return name

    def write_json(self, relative: str, body: Any) -> None:
        self.write_bytes(relative, json_bytes(body, separators=(",", ":")))

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.write_atomic(relative, lambda out: out.write(data))

    def read_json(self, relative: str) -> Any:
        return json.loads(self.files.read(self.path(relative)))

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
