"""A replay of Gini's recorded shapes: a small server that answers only with the shapes in
``shapes/`` (each names the Gini fixture or documentation page it is modelled on), filled in
for as many documents as a test needs. It shares nothing with the sandbox but the thread that
serves it, so the client is proven against what Gini's own code and docs show, not against an
emulator written beside it.

What it does where the shapes are silent is the least a server could do: ascending order (as in
every recorded list), an inclusive ``next`` cursor, no ``X-Request-Id`` header (so the body's
``requestId`` is the only one), and some documents sharing a creation millisecond.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from airflow_provider_gini.sandbox.server import serving

SHAPES = Path(__file__).with_name("shapes")
CLIENT = ("replay-client", "replay-client-secret")
USER = ("user@replay.gini.test", "replay-password")
FIRST_MS = 1_767_225_600_000  # 2026-01-01
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def shape(name: str) -> Any:
    return json.loads((SHAPES / f"{name}.json").read_text())["shape"]


def source(name: str) -> dict[str, str]:
    return dict(json.loads((SHAPES / f"{name}.json").read_text())["source"])


def fill(template: Any, values: dict[str, Any]) -> Any:
    """The template with its ``{name}`` placeholders filled; a string that is one placeholder
    becomes the value itself (a number, a list)."""
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    return template


@dataclass
class Replay:
    contract: str = "pay-api"  # "pay-api": next cursor, {documents}; "legacy": offset, totalCount
    count: int = 640
    token: str = "token"  # or "token-without-type"
    error: str = "error-v5-not-found"  # or "error-message"
    feedback_methods: tuple[str, ...] = ("PUT",)  # the Pay API docs' verb
    queued: set[int] = field(default_factory=set)  # documents whose progress is QUEUED
    base_url: str = ""
    tokens: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    feedback: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Oldest first, as every recorded list; every 40th shares the previous one's millisecond.
        dates, at = [], FIRST_MS
        for i in range(self.count):
            at += 0 if i % 40 == 39 else 60_000
            dates.append(at)
        self.ids = [str(uuid.UUID(int=i + 1)) for i in range(self.count)]
        self.dates = dict(zip(self.ids, dates, strict=True))
        self.index = {doc_id: i for i, doc_id in enumerate(self.ids)}

    def document(self, doc_id: str) -> dict[str, Any]:
        i = self.index[doc_id]
        values = {"id": doc_id, "creationDate": self.dates[doc_id], "name": f"rechnung-{i}.pdf"}
        doc = fill(shape("document"), {**values, "base": self.base_url})
        return {**doc, **shape("document-queued")} if i in self.queued else doc

    def extractions(self, doc_id: str) -> bytes:
        i = self.index[doc_id]
        values = {
            "amount": f"{10 + i % 90}.{i % 100:02d}",
            "iban": "DE89370400440532013000",
            "reference": f"RE-{i}",
        }
        return json.dumps(fill(shape("extractions"), values)).encode()

    def listing(self, params: dict[str, str]) -> dict[str, Any]:
        limit = int(params.get("limit", "20"))
        if self.contract == "legacy":
            offset = int(params.get("offset", "0"))
            page = self.ids[offset : offset + limit]
            return fill(
                shape("list-legacy"),
                {"totalCount": self.count, "documents": [self.document(i) for i in page]},
            )
        cursor = int(params.get("next", "0"))
        page = [i for i in self.ids if self.dates[i] >= cursor][:limit]
        return fill(shape("list-pay-api"), {"documents": [self.document(i) for i in page]})

    def error_answer(self, status: int, doc_id: str) -> Response:
        body = fill(shape(self.error), {"id": doc_id, "requestId": str(uuid.uuid4())})
        return JSONResponse(body, status_code=status)


def create_app(replay: Replay) -> FastAPI:
    app = FastAPI()
    media = "application/vnd.gini.v1+json"

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        replay.log.append(f"{request.method} {request.url.path}{query}")
        if not request.url.path.startswith("/oauth/"):
            auth = request.headers.get("authorization", "")
            if auth.removeprefix("Bearer ") not in replay.tokens:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
        response: Response = await call_next(request)
        return response

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        basic = base64.b64encode(":".join(CLIENT).encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        if (form.get("username"), form.get("password")) != USER:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        issued = str(uuid.uuid4())
        replay.tokens.add(issued)
        return JSONResponse(fill(shape(replay.token), {"token": issued}))

    @app.get("/documents")
    async def documents(request: Request) -> Response:
        return JSONResponse(replay.listing(dict(request.query_params)), media_type=media)

    @app.get("/documents/{doc_id}")
    async def document(doc_id: str) -> Response:
        if doc_id not in replay.index:
            return replay.error_answer(404, doc_id)
        return JSONResponse(replay.document(doc_id), media_type=media)

    @app.get("/documents/{doc_id}/extractions")
    async def extractions(doc_id: str) -> Response:
        if doc_id not in replay.index or replay.index[doc_id] in replay.queued:
            return replay.error_answer(404, doc_id)
        return Response(replay.extractions(doc_id), media_type=media)

    @app.api_route("/documents/{doc_id}/extractions/feedback", methods=["PUT", "POST"])
    async def feedback(request: Request, doc_id: str) -> Response:
        if request.method not in replay.feedback_methods:
            return Response(status_code=405, headers={"Allow": ", ".join(replay.feedback_methods)})
        replay.feedback.setdefault(doc_id, []).append(await request.json())
        return Response(status_code=204)

    return app


@contextmanager
def running(replay: Replay) -> Iterator[Replay]:
    with serving(create_app(replay)) as base_url:
        replay.base_url = base_url
        yield replay


def connection(replay: Replay) -> dict[str, Any]:
    return {
        "conn_type": "gini",
        "host": replay.base_url,
        "login": USER[0],
        "password": USER[1],
        "extra": {"client_id": CLIENT[0], "client_secret": CLIENT[1], "user_center_url": replay.base_url},
    }
