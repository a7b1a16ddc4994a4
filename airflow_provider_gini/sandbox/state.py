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

    def progress(self, now: float) -> Progress:
        return "PENDING" if now < self.ready_at else self.outcome

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
    """One user's documents, kept sorted by (creationDate, id).

    Creation dates are unique per user: a document that would share a
    millisecond with another is moved one millisecond later. That makes the
    ``next`` creation-date cursor exact.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[int, str]] = []
        self._created: set[int] = set()

    def unique_ms(self, created_ms: int) -> int:
        while created_ms in self._created:
            created_ms += 1
        return created_ms

    def add(self, doc: Document) -> None:
        self._created.add(doc.created_ms)
        bisect.insort(self._keys, doc.sort_key)

    def remove(self, doc: Document) -> None:
        i = bisect.bisect_left(self._keys, doc.sort_key)
        if i < len(self._keys) and self._keys[i] == doc.sort_key:
            del self._keys[i]
            self._created.discard(doc.created_ms)

    def __len__(self) -> int:
        return len(self._keys)

    def newest_first(self, offset: int, limit: int, before_ms: int | None) -> list[str]:
        end = len(self._keys) if before_ms is None else bisect.bisect_left(self._keys, (before_ms, ""))
        end -= offset
        start = max(0, end - limit)
        return [key[1] for key in reversed(self._keys[start : max(end, 0)])]


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
        index = self.indexes[doc.owner]
        doc.created_ms = index.unique_ms(doc.created_ms)
        self.documents[doc.id] = doc
        index.add(doc)
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
