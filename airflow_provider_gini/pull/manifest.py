"""The per-run manifest: one JSON line per document with its outcome and key extractions."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_provider_gini.pull.storage import TMP_MARK, Store, json_bytes, temporary_parts

KEY_EXTRACTIONS = (
    "amountToPay",
    "iban",
    "bic",
    "paymentRecipient",
    "paymentReference",
    "paymentPurpose",
    "paymentDueDate",
    "docType",
)
OUTCOMES = ("pulled", "skipped", "errored", "pending", "gone", "failed")


def flatten(extractions: Any) -> dict[str, str | None]:
    """The key extractions' values, whatever shape the API sent (unexpected shapes give None)."""
    found = extractions.get("extractions") if isinstance(extractions, dict) else None
    found = found if isinstance(found, dict) else {}
    flat: dict[str, str | None] = {}
    for label in KEY_EXTRACTIONS:
        item = found.get(label)
        value = item.get("value") if isinstance(item, dict) else None
        usable = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        flat[label] = str(value) if usable else None
    return flat


@dataclass
class ManifestLine:
    document_id: str
    outcome: str
    progress: str | None = None
    name: str | None = None
    creation_date: int | None = None
    files: list[str] = field(default_factory=list)
    extractions: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    # A failed document's error is one a new try cannot fix (client/errors.py). Not written.
    terminal: bool = field(default=False, compare=False)

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "id": self.document_id,
            "outcome": self.outcome,
            "progress": self.progress,
            "name": self.name,
            "creationDate": self.creation_date,
            "files": self.files,
            **{label: self.extractions.get(label) for label in KEY_EXTRACTIONS},
        }
        if self.error:
            body["error"] = self.error
        return json_bytes(body).decode()


def manifest_name(
    run_id: str | None, window: list[str | None], try_number: int = 1, task: str | None = None
) -> str:
    """``manifest-<run_id>.<task>.jsonl``: ``task`` is the task id, with ``.<map index>`` for a
    mapped instance, so task instances of one run never share a manifest. A later try of the
    same instance (a retry, a clear, a backfill that reprocesses it) gets ``.try<N>`` too, so it
    never replaces the record of an earlier try."""
    label = run_id or f"{window[0] or 'start'}_{window[1] or 'end'}"
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:150]]
    if task:
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "_", task)[:120])
    if try_number > 1:
        parts.append(f"try{try_number}")
    return "manifest-" + ".".join(parts) + ".jsonl"


class ManifestWriter:
    """Streams lines to a temporary file and renames it into place when the pull ends."""

    def __init__(self, store: Store, relative: str) -> None:
        self.store = store
        self.relative = relative
        self.uri = store.uri(relative)
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()
        folder, _, name = relative.rpartition("/")
        store.makedirs(folder)
        # Unique to this writer, and with its lease token, so other pulls leave it alone while
        # this writer lives (pull/lease.py).
        self._temporary = f"{folder}/{TMP_MARK}{store.token}-{name}"
        self._remove_dead(folder, name)
        self._out: IO[bytes] = store.files.open_write(store.path(self._temporary))

    def _remove_dead(self, folder: str, name: str) -> None:
        """The temporary manifests earlier tries of this task instance left when they were
        killed: Airflow runs one try of a task instance at a time, so their writers are dead,
        also on another machine whose lease has not expired yet (Store.sweep)."""
        instance = re.sub(r"\.try\d+\.jsonl$|\.jsonl$", "", name)
        for left in self.store.names(folder) or []:
            if not left.startswith(TMP_MARK):
                continue
            _, written = temporary_parts(left)
            if re.fullmatch(re.escape(instance) + r"(\.try\d+)?\.jsonl", written):
                self.store.remove_quietly(f"{folder}/{left}")  # a sweeping pull may be first

    def add(self, line: ManifestLine) -> None:
        data = (line.to_json() + "\n").encode()
        with self._lock:
            self._out.write(data)
            self.counts[line.outcome] += 1

    def commit(self) -> None:
        self._out.close()
        self.store.files.replace(self.store.path(self._temporary), self.store.path(self.relative))

    def abort(self) -> None:
        self._out.close()
        if self.store.exists(self._temporary):
            self.store.fs.rm(self.store.path(self._temporary))
