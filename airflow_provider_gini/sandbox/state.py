"""The sandbox's in-memory world: clients, users, tokens, documents, payment requests,
and what it has seen (request log and counters).

Everything here is touched only from the server's event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_gini.sandbox.config import ClientSpec, RuntimeSettings, SandboxConfig
from airflow_provider_gini.sandbox.faults import FaultBook
from airflow_provider_gini.sandbox.invoices import Paper

Progress = Literal["PENDING", "COMPLETED", "ERROR"]
DocumentKind = Literal["regular", "partial", "composite"]


class Clock:
    """Wall clock plus an offset the admin API can advance, so tests need not sleep."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@dataclass
class User:
    id: str
    email: str
    password: str


@dataclass
class AccessToken:
    value: str
    kind: Literal["user", "client"]
    client_id: str
    user_id: str | None
    expires_at: float


@dataclass
class RefreshToken:
    value: str
    client_id: str
    user_id: str
    state: Literal["active", "used", "revoked"] = "active"


@dataclass
class Document:
    id: str
    owner: str
    name: str
    created_ms: int
    content_type: str
    kind: DocumentKind
    ready_at: float
    outcome: Progress
    paper: Paper
    page_count: int
    data: bytes | None = None  # None: rendered from the paper as a PDF when first asked for
    doctype: str | None = None
    source_classification: str = "NATIVE"
    partials: list[str] = field(default_factory=list)
    composites: list[str] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    # What an unfinished document's progress reads: PENDING, or (admin switch) a value Gini does
    # not document, such as the "QUEUED" of gini-sdk-android's unknown-processing-state fixture.
    pending_progress: str = "PENDING"

    def progress(self, now: float) -> str:
        return self.pending_progress if now < self.ready_at else self.outcome

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.created_ms, self.id)


@dataclass
class PaymentRequest:
    id: str
    owner: str
    created_at: float
    body: dict[str, Any]
    status: Literal["open", "paid", "invalid"] = "open"
    payment: dict[str, Any] | None = None


class DocumentIndex:
    """One user's documents, sorted by (creationDate, id). Creation dates may repeat: nothing in
    Gini's sources says they are unique, so two uploads in one millisecond share one, and the
    id orders them."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, str]] = []

    def add(self, doc: Document) -> None:
        bisect.insort(self._keys, doc.sort_key)

    def remove(self, doc: Document) -> None:
        i = bisect.bisect_left(self._keys, doc.sort_key)
        if i < len(self._keys) and self._keys[i] == doc.sort_key:
            del self._keys[i]

    def __len__(self) -> int:
        return len(self._keys)

    def by_offset(self, ascending: bool, offset: int, limit: int) -> list[str]:
        """Positions ``offset`` to ``offset + limit`` of the list in the given order."""
        if ascending:
            return [key[1] for key in self._keys[offset : offset + limit]]
        end = len(self._keys) - offset
        return [key[1] for key in reversed(self._keys[max(0, end - limit) : max(end, 0)])]

    def by_cursor(self, ascending: bool, cursor: int | None, inclusive: bool, limit: int) -> list[str]:
        """The first ``limit`` documents from the creation date ``cursor`` on, in the given order
        (created at or after it ascending, at or before it descending; ``inclusive`` decides
        whether its own millisecond counts). No cursor: from the list's start."""
        if ascending:
            start = (
                0
                if cursor is None
                else bisect.bisect_left(self._keys, (cursor + (0 if inclusive else 1), ""))
            )
            return [key[1] for key in self._keys[start : start + limit]]
        end = (
            len(self._keys)
            if cursor is None
            else bisect.bisect_left(self._keys, (cursor + (1 if inclusive else 0), ""))
        )
        return [key[1] for key in reversed(self._keys[max(0, end - limit) : end])]

    def newest_first(self) -> list[str]:
        return [key[1] for key in reversed(self._keys)]


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.settings: RuntimeSettings = config.settings.model_copy()
        self.clock = Clock()
        self.clients: dict[str, ClientSpec] = {c.client_id: c for c in config.clients}
        self.users: dict[str, User] = {}
        self.users_by_email: dict[str, User] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.issued_secrets: list[str] = []
        self.documents: dict[str, Document] = {}
        self.indexes: dict[str, DocumentIndex] = {}
        self.payment_requests: dict[str, PaymentRequest] = {}
        self.faults = FaultBook(config.faults)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=config.request_log_size or None)
        self.route_counts: Counter[str] = Counter()
        self.status_counts: Counter[int] = Counter()
        self.grant_requests: Counter[str] = Counter()
        self.grants_issued: Counter[str] = Counter()
        self.grant_errors: Counter[str] = Counter()
        # Set by the server runner: finds the transport of a client (host, port) for reset faults.
        self.find_transport: Callable[[Any], asyncio.Transport | None] | None = None
        for spec in config.users:
            self.add_user(spec.email, spec.password)

    # users and tokens

    def add_user(self, email: str, password: str) -> User:
        user = User(id=str(uuid.uuid4()), email=email, password=password)
        self.users[user.id] = user
        self.users_by_email[email.lower()] = user
        self.indexes[user.id] = DocumentIndex()
        return user

    def issue_access_token(
        self, kind: Literal["user", "client"], client_id: str, user_id: str | None
    ) -> AccessToken:
        ttl = self.settings.user_token_ttl if kind == "user" else self.settings.client_token_ttl
        token = AccessToken(str(uuid.uuid4()), kind, client_id, user_id, self.clock.now() + ttl)
        self.access_tokens[token.value] = token
        self.issued_secrets.append(token.value)
        return token

    def issue_refresh_token(self, client_id: str, user_id: str) -> RefreshToken:
        token = RefreshToken(str(uuid.uuid4()), client_id, user_id)
        self.refresh_tokens[token.value] = token
        self.issued_secrets.append(token.value)
        return token

    def live_access_token(self, value: str) -> AccessToken | None:
        token = self.access_tokens.get(value)
        if token is None or token.expires_at <= self.clock.now():
            return None
        return token

    def expire_access_tokens(self) -> int:
        now = self.clock.now()
        live = [t for t in self.access_tokens.values() if t.expires_at > now]
        for token in live:
            token.expires_at = now
        return len(live)

    def revoke_refresh_tokens(self) -> int:
        active = [t for t in self.refresh_tokens.values() if t.state == "active"]
        for token in active:
            token.state = "revoked"
        return len(active)

    # documents

    def add_document(self, doc: Document) -> Document:
        self.documents[doc.id] = doc
        self.indexes[doc.owner].add(doc)
        return doc

    def remove_document(self, doc: Document) -> None:
        self.documents.pop(doc.id, None)
        self.indexes[doc.owner].remove(doc)

    def owned_document(self, user_id: str, document_id: str) -> Document | None:
        doc = self.documents.get(document_id)
        return doc if doc is not None and doc.owner == user_id else None

    # what was seen

    def reset_observations(self) -> None:
        self.request_log.clear()
        for counter in (
            self.route_counts,
            self.status_counts,
            self.grant_requests,
            self.grants_issued,
            self.grant_errors,
        ):
            counter.clear()

    def counters(self) -> dict[str, Any]:
        return {
            "requests": sum(self.route_counts.values()),
            "routes": dict(self.route_counts),
            "statuses": {str(k): v for k, v in self.status_counts.items()},
            "grants": dict(self.grant_requests),
            "grants_issued": dict(self.grants_issued),
            "grant_errors": dict(self.grant_errors),
            "faults": {
                r.id: {"kind": r.kind, "matched": r.matched, "fired": r.fired} for r in self.faults.rules()
            },
        }
