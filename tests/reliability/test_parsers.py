"""Property-based tests of everything that reads what Gini sends: token responses, Retry-After,
document pages and extractions, and the writers that store them. Each either returns a valid
value or raises the package's typed error (a GiniError), never anything else, whatever it gets."""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_gini.client.api import GiniAPI
from airflow_provider_gini.client.errors import GiniError, GiniProtocolError
from airflow_provider_gini.client.listing import MAX_GROWTH, created
from airflow_provider_gini.client.retry import parse_retry_after
from airflow_provider_gini.client.settings import ClientSettings
from airflow_provider_gini.client.tokens import Token, parse_token
from airflow_provider_gini.client.transport import GiniSession, _error_message
from airflow_provider_gini.pull.manifest import KEY_EXTRACTIONS, ManifestLine, flatten
from airflow_provider_gini.pull.storage import Store, destination_path

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings as a server could send them: any code point, lone surrogates included (JSON's "\ud800"
# escapes decode to them).
ANY_TEXT = st.text(
    st.characters(codec=None, categories=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


def loaded(value: Any) -> Any:
    """``value`` as json.loads would give it back from the wire (NaN and Infinity included)."""
    return json.loads(json.dumps(value))


# --- token responses --------------------------------------------------------------------------

TOKEN_BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "access_token": st.uuids().map(str) | ANY_TEXT | JSON,
            "token_type": st.sampled_from(["bearer", "Bearer", "BEARER", "mac", "", "bearer "]) | JSON,
            "expires_in": st.integers()
            | st.floats()
            | st.sampled_from(["3599", "1e309", "nan", "-5", 10**400])
            | JSON,
            "refresh_token": st.uuids().map(str) | ANY_TEXT | JSON,
            "scope": JSON,
        },
    )
    | JSON
)


@SETTINGS
@given(TOKEN_BODIES)
@example({"access_token": "a-token", "token_type": "bearer", "expires_in": 10**400})
@example({"access_token": "tok\nen-with-a-line-break", "token_type": "bearer", "expires_in": 60})
@example({"access_token": "tökén-€", "token_type": "bearer", "expires_in": 60})
def test_parse_token_returns_a_usable_token_or_a_typed_error(body: Any) -> None:
    refused: GiniProtocolError | None = None
    try:
        token = parse_token(body)
    except GiniProtocolError as exc:
        refused = exc
    if refused is not None:
        secrets = [body.get(k) for k in ("access_token", "refresh_token")] if isinstance(body, dict) else []
        quoted = [s for s in secrets if isinstance(s, str) and len(s) >= 8 and s in str(refused)]
        assert quoted == [], "a token response error quoted the token"
        return
    assert isinstance(token, Token)
    assert isinstance(token.access_token, str)
    assert token.access_token
    assert math.isfinite(token.expires_in)
    assert token.expires_in > 0
    assert token.refresh_token is None or (isinstance(token.refresh_token, str) and token.refresh_token)
    # Whatever is accepted can be sent: a header requests and http.client will put on the wire.
    prepared = requests.Request(
        "GET", "http://127.0.0.1/", headers={"Authorization": f"Bearer {token.access_token}"}
    ).prepare()
    prepared.headers["Authorization"].encode("latin-1")


# --- Retry-After ------------------------------------------------------------------------------

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# Header values arrive decoded as latin-1, so any of its characters may show up.
LATIN1 = st.text(st.characters(min_codepoint=0, max_codepoint=255))
HTTP_DATES = st.floats(min_value=-(10**9), max_value=10**10).map(lambda s: formatdate(NOW + s, usegmt=True))
RETRY_AFTER = (
    LATIN1
    | st.from_regex(r"\A\s*[0-9]{1,400}\s*\Z")
    | HTTP_DATES
    | st.sampled_from(
        ["²", "¹³", "١٢", "-1", "1.5", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT"]
    )
)


@SETTINGS
@given(st.none() | RETRY_AFTER)
@example("²")
def test_parse_retry_after_returns_seconds_or_none(value: str | None) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or (isinstance(seconds, float) and seconds >= 0 and not math.isnan(seconds))


@SETTINGS
@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_in_seconds_is_read_exactly(n: int) -> None:
    assert parse_retry_after(f" {n} ", now=NOW) == float(n)


@SETTINGS
@given(st.integers(min_value=0, max_value=10**8))
def test_retry_after_as_a_date_is_read_to_the_second(n: int) -> None:
    assert parse_retry_after(formatdate(NOW + n, usegmt=True), now=NOW) == pytest.approx(n, abs=1)


# --- document pages ---------------------------------------------------------------------------


class Pages(GiniAPI):
    """GiniAPI over canned pages instead of HTTP: the listing's own reading of what Gini sends."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = list(pages)
        self.calls: list[dict[str, Any]] = []

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs["params"])
        return self.pages.pop(0) if self.pages else {"documents": []}


DATES = st.integers(min_value=-5, max_value=5) | st.integers(min_value=-(2**62), max_value=2**62)
DOC = st.fixed_dictionaries({"id": st.uuids().map(str), "creationDate": DATES | JSON})
PAGE = st.fixed_dictionaries(
    {"documents": st.lists(DOC | JSON, max_size=5)}, optional={"next": DATES | JSON, "totalCount": JSON}
)
BOUNDS = st.none() | st.integers(min_value=-6, max_value=6)


@SETTINGS
@given(st.lists(PAGE | JSON, max_size=6), BOUNDS, BOUNDS)
def test_iter_documents_yields_each_once_inside_the_window_or_a_typed_error(
    pages: list[Any], lower: int | None, upper: int | None
) -> None:
    """Whatever the pages hold: documents inside the window, none twice, or a GiniError."""
    assume(lower is None or upper is None or lower <= upper)
    api = Pages([loaded(p) for p in pages])
    seen: list[dict[str, Any]] = []
    try:
        for doc in api.iter_documents(lower, upper, page_size=5):
            seen.append(doc)
    except GiniProtocolError:
        pass
    dates = [created(doc) for doc in seen]
    assert all((lower is None or d >= lower) and (upper is None or d < upper) for d in dates)
    assert len({doc["id"] for doc in seen}) == len(seen)
    assert len(api.calls) <= len(pages) + 1 + 2 * MAX_GROWTH


@SETTINGS
@given(JSON)
def test_list_documents_accepts_only_a_page(page: Any) -> None:
    api = Pages([loaded(page)])
    try:
        result = api.list_documents(limit=5)
    except GiniProtocolError:
        return
    assert isinstance(result, dict)
    assert isinstance(result["documents"], list)


# --- extractions and what is written ----------------------------------------------------------

EXTRACTIONS = (
    st.fixed_dictionaries(
        {},
        optional={
            "extractions": st.dictionaries(
                st.sampled_from([*KEY_EXTRACTIONS, "other"]) | ANY_TEXT,
                st.fixed_dictionaries({}, optional={"value": JSON, "entity": JSON, "candidates": JSON})
                | JSON,
                max_size=6,
            )
            | JSON,
            "candidates": JSON,
            "compoundExtractions": JSON,
        },
    )
    | JSON
)


@SETTINGS
@given(EXTRACTIONS)
def test_flatten_gives_every_key_extraction_as_text_or_none(extractions: Any) -> None:
    flat = flatten(loaded(extractions))
    assert list(flat) == list(KEY_EXTRACTIONS)
    assert all(value is None or isinstance(value, str) for value in flat.values())


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as folder:
        yield Store(destination_path(folder))


@SETTINGS
@given(body=JSON)
@example(body={"name": "\udfff", "ok": "ü"})
def test_whatever_gini_sends_is_stored_as_received(store: Store, body: Any) -> None:
    """document.json and extractions.json hold the API's JSON as received: any JSON value,
    strings with lone surrogates included, reads back equal (or fails typed, never half-written)."""
    received = loaded(body)
    name = f"doc-{time.monotonic_ns()}.json"
    store.write_json(name, received)
    again = store.read_json(name)
    assert json.dumps(again, sort_keys=True) == json.dumps(received, sort_keys=True)
    assert not [p for p in Path(store.base).iterdir() if ".gini-tmp-" in p.name]


@SETTINGS
@given(ANY_TEXT | JSON, EXTRACTIONS, st.sampled_from(["pulled", "errored", "pending", "gone", "skipped"]))
@example("\ud800 a lone surrogate", {}, "pulled")
def test_a_manifest_line_is_one_line_of_json(name: Any, extractions: Any, outcome: str) -> None:
    line = ManifestLine(
        "doc-1",
        outcome,
        "COMPLETED",
        name if isinstance(name, str) else None,
        1767225600000,
        ["doc-1/document.json"],
        flatten(loaded(extractions)),
    )
    data = (line.to_json() + "\n").encode()
    assert data.count(b"\n") == 1
    parsed = json.loads(data)
    assert parsed["id"] == "doc-1"
    assert parsed["name"] == line.name


def test_typed_errors_are_gini_errors() -> None:
    assert issubclass(GiniProtocolError, GiniError)


# --- error bodies -----------------------------------------------------------------------------

HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def answer(status: int, body: bytes, request_id: str | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
    return response


@SETTINGS
@given(JSON, st.sampled_from([400, 401, 403, 404, 429, 500, 503]))
@example({"items": [{"code": 2501, "message": "a\u2028b\u202ec\ud800", "object": ["x"]}]}, 404)
@example({"items": [{"code": "bad code\n", "message": "m"}], "requestId": "r" * 500}, 400)
def test_error_messages_from_any_body_are_plain_and_short(body: Any, status: int) -> None:
    """Whatever an error body holds: a message of plain characters, a request id and codes of
    bounded size, and nothing an item names on a 401 or 403."""
    message, request_id, codes = _error_message(answer(status, json.dumps(body).encode()))
    for text in (message, request_id or ""):
        assert not {unicodedata.category(c) for c in text} & HIDDEN, repr(text)
    assert len(message) <= 500
    assert request_id is None or len(request_id) <= 100
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,20}", code) for code in codes)


def test_error_message_reads_both_shapes() -> None:
    v5 = b'{"items":[{"code":"2013","message":"Unauthorized","object":["doc1"]},{"code":"2014"}],"requestId":"r-1"}'
    assert _error_message(answer(400, v5)) == (
        "Unauthorized (code 2013) [doc1]; code 2014",
        "r-1",
        ("2013", "2014"),
    )
    assert _error_message(answer(403, v5))[0] == "Unauthorized (code 2013); code 2014"  # objects left out
    legacy = b'{"message": "Validation of the request entity failed", "requestId": "r-2"}'
    assert _error_message(answer(400, legacy, "from-header")) == (
        "Validation of the request entity failed",
        "from-header",
        (),
    )
    assert _error_message(answer(500, b"[" * 70_000))[0] == "no readable error message"


def test_error_messages_never_carry_a_secret_the_session_knows() -> None:
    settings = ClientSettings(
        client_id="c", client_secret="client-secret-1", username="u@example.com", password="pass-word-2"
    )
    session = GiniSession(settings)
    echoed = "Bad request for u@example.com with pass-word-2 and client-secret-1"
    assert session._redact(echoed) == "Bad request for u@example.com with <redacted> and <redacted>"
