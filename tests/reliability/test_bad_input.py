"""Bad input: a wrong configuration, and hostile data from the server. Each case ends with a clear
error that names the problem (or, for hostile data that is merely odd, a correct pull), and
nothing is ever written outside the destination."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini._compat import AirflowFailException
from airflow_provider_gini.client.errors import (
    GiniConfigError,
    GiniError,
    GiniIncompleteListing,
    GiniProtocolError,
    GiniPullIncomplete,
    GiniRetryError,
)
from airflow_provider_gini.sandbox import RunningSandbox
from tests.compat import sdk_exception
from tests.reliability import figures
from tests.reliability.conftest import FAST, Evidence, PullRun
from tests.reliability.helpers import (
    Answer,
    assert_destination,
    day,
    files_under,
    json_answer,
    ms,
    mutating_proxy,
)

pytestmark = pytest.mark.timeout(120)  # a hang fails the case instead of stalling the suite

START, END = day(6), day(8)
HOST_PASSWORD = "pw-in-the-host-7d2c"


@dataclass
class Layout:
    """``base/inner/destination`` with a neighbour folder: anything written outside the
    destination shows up as a new path under ``base``."""

    base: Path
    destination: Path = field(init=False)

    def __post_init__(self) -> None:
        self.destination = self.base / "inner" / "destination"
        (self.base / "neighbour").mkdir(parents=True)
        (self.base / "neighbour" / "keep.txt").write_text("untouched")
        self.before = set(self.base.rglob("*"))

    def assert_nothing_outside(self) -> None:
        new = {p for p in set(self.base.rglob("*")) - self.before}
        outside = [
            str(p.relative_to(self.base))
            for p in new
            if p != self.destination
            and self.destination not in p.parents
            and p not in self.destination.parents
        ]
        assert outside == [], f"written outside the destination: {outside}"
        assert (self.base / "neighbour" / "keep.txt").read_text() == "untouched"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def pull(conn_id: str, destination: Path, **kwargs: Any) -> dict[str, Any]:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    options: dict[str, Any] = {
        "created_after": START,
        "created_before": END,
        "max_workers": 2,
        "poll_interval": 0.1,
        **kwargs,
        "hook_params": {**FAST, "max_attempts": 2, **kwargs.get("hook_params", {})},
    }
    operator = GiniPullDocumentsOperator(
        task_id="pull", gini_conn_id=conn_id, destination=str(destination), **options
    )
    try:
        return operator.execute({"run_id": "bad-input"})  # type: ignore[arg-type]
    finally:
        operator.hook.close()


# --- bad configuration ------------------------------------------------------------------------


def conn_change(**change: Any) -> Callable[[dict[str, Any]], None]:
    def apply(conn: dict[str, Any]) -> None:
        for key, value in change.items():
            if key.startswith("extra_"):
                if value is None:
                    conn["extra"].pop(key[6:], None)
                else:
                    conn["extra"][key[6:]] = value
            elif value is None:
                conn.pop(key, None)
            else:
                conn[key] = value

    return apply


@dataclass
class ConfigCase:
    change: Callable[[dict[str, Any]], None] = field(default=lambda conn: None)
    message: str = ""
    error: type[Exception] = GiniConfigError
    operator: dict[str, Any] = field(default_factory=dict)
    destination: Callable[[Layout], Path] | None = None


def unwritable(layout: Layout) -> Path:
    blocker = layout.destination.parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where a folder should be")
    layout.before = set(layout.base.rglob("*"))
    return blocker / "destination"


CONFIG_CASES: dict[str, ConfigCase] = {
    "client_id missing": ConfigCase(
        conn_change(extra_client_id=None), r"client_id is missing; set .*'client_id'"
    ),
    "client_secret missing": ConfigCase(
        conn_change(extra_client_secret=None), r"client_secret is missing; set .*'client_secret'"
    ),
    "login missing": ConfigCase(conn_change(login=None), r"username is missing; set the connection's Login"),
    "password missing": ConfigCase(
        conn_change(password=None), r"password is missing; set the connection's Password"
    ),
    "host is not a URL": ConfigCase(conn_change(host="https://pay api.gini.net"), r"host .* is not a valid"),
    "host carries credentials": ConfigCase(
        conn_change(host=f"https://user:{HOST_PASSWORD}@pay-api.gini.net"),
        r"host \(not shown: it contains '@'",
    ),
    "host with another scheme": ConfigCase(
        conn_change(host="ftp://pay-api.gini.net"), r"host must use https, not 'ftp'"
    ),
    "plain http to a remote host": ConfigCase(
        conn_change(host="http://pay-api.gini.net"), r"host uses plain http to pay-api\.gini\.net"
    ),
    "plain http to a remote user center": ConfigCase(
        conn_change(extra_user_center_url="http://user.gini.net"),
        r"user_center_url uses plain http to user\.gini\.net",
    ),
    "api_version not an integer": ConfigCase(
        conn_change(extra_api_version="v1.5"), r"'api_version' must be an integer like 1, got 'v1\.5'"
    ),
    "api_version a word": ConfigCase(
        conn_change(extra_api_version="latest"), r"'api_version' must be an integer"
    ),
    "api_version zero": ConfigCase(
        conn_change(extra_api_version=0), r"api_version must be a positive integer, got 0"
    ),
    "read_timeout not a number": ConfigCase(
        conn_change(extra_read_timeout="fast"), r"extra 'read_timeout' must be a float, got 'fast'"
    ),
    "max_elapsed negative": ConfigCase(
        conn_change(extra_max_elapsed=-5), r"retry max_elapsed must not be negative"
    ),
    "max_attempts zero": ConfigCase(
        operator={"hook_params": {"max_attempts": 0}}, message=r"retry max_attempts must be at least 1"
    ),
    "a hook parameter that does not exist": ConfigCase(
        operator={"hook_params": {"retries": 3}},
        message=r"unexpected keyword arguments: retries",
        error=TypeError,
    ),
    "unwritable destination": ConfigCase(message=r"Cannot write to the destination", destination=unwritable),
    "created_after not a date": ConfigCase(
        operator={"created_after": "yesterday"},
        message=r"created_after must be an ISO 8601 date-time, got 'yesterday'",
    ),
    "window ends before it starts": ConfigCase(
        operator={"created_after": "2026-01-08", "created_before": "2026-01-06"},
        message=r"starts after it ends",
    ),
    "include_processed not a boolean": ConfigCase(
        operator={"include_processed": "maybe"},
        message=r"include_processed must be true or false",
    ),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_bad_configuration(
    name: str,
    gini_connection: RunningSandbox,
    layout: Layout,
    monkeypatch: pytest.MonkeyPatch,
    evidence: Evidence,
) -> None:
    case = CONFIG_CASES[name]
    figures.BAD_INPUTS.add(f"config: {name}")
    conn = gini_connection.connection()
    case.change(conn)
    monkeypatch.setenv("AIRFLOW_CONN_GINI_BAD", json.dumps(conn))
    destination = case.destination(layout) if case.destination else layout.destination
    with pytest.raises((case.error, AirflowFailException)) as caught:
        pull("gini_bad", destination, **case.operator)
    evidence.exceptions.append(caught.value)
    evidence.secrets["made-up secrets"] = [HOST_PASSWORD]
    assert re.search(case.message, str(caught.value)), str(caught.value)
    # A configuration error ends the task without its retries; its cause is the typed error.
    final = isinstance(caught.value, AirflowFailException)
    assert final == issubclass(case.error, GiniConfigError), type(caught.value)
    assert isinstance(caught.value.__cause__ if final else caught.value, case.error)
    assert gini_connection.counters()["requests"] == 0  # refused before anything was sent
    layout.assert_nothing_outside()


def test_unknown_connection(layout: Layout, evidence: Evidence) -> None:
    figures.BAD_INPUTS.add("config: connection id not defined")
    with pytest.raises(sdk_exception("AirflowNotFoundException"), match="gini_nowhere"):
        pull("gini_nowhere", layout.destination)
    layout.assert_nothing_outside()


# --- hostile server data: document names (from the sandbox) -----------------------------------

HOSTILE_NAMES = {
    "name with ../": "../../../escape.pdf",
    "name with an absolute path": "/etc/passwd",
    "name with NUL": "invoice\x00.pdf/../../x",
    "name of 1,000 characters": "n" * 996 + ".pdf",
    "name with a Windows path": "..\\..\\windows.pdf",
}


def test_hostile_document_names_stay_inside(
    gini_connection: RunningSandbox,
    pull_dag: Callable[..., Any],
    run_pull: Callable[..., PullRun],
    layout: Layout,
) -> None:
    ids = {}
    for n, (case, name) in enumerate(HOSTILE_NAMES.items()):
        figures.BAD_INPUTS.add(f"server: document {case}")
        [ids[case]] = gini_connection.insert_documents(creationDate=ms(START) + 1000 + n, name=name)
    run = run_pull(pull_dag(include_processed=True), layout.destination, START, END)
    assert run.state == "success", run.errors
    assert_destination(gini_connection, layout.destination, START, END, processed=True)
    for case, doc_id in ids.items():
        document = json.loads((layout.destination / doc_id / "document.json").read_bytes())
        assert document["name"] == HOSTILE_NAMES[case]  # kept as received, never used as a path
    layout.assert_nothing_outside()


# --- hostile server data through a proxy ------------------------------------------------------

Mutate = Callable[[str, str, Answer], Answer]


def first_only(path_prefix: str, change: Callable[[Answer], Answer], times: int = 1) -> Mutate:
    """Apply ``change`` to the first ``times`` answers whose path starts with ``path_prefix``."""
    left = [times]

    def mutate(method: str, path: str, answer: Answer) -> Answer:
        if path.startswith(path_prefix) and left[0] > 0:
            left[0] -= 1
            return change(answer)
        return answer

    return mutate


def always(matches: Callable[[str], bool], change: Callable[[Answer], Answer]) -> Mutate:
    def mutate(method: str, path: str, answer: Answer) -> Answer:
        return change(answer) if matches(path) else answer

    return mutate


def is_listing(path: str) -> bool:
    return path.split("?")[0] == "/documents"


def is_extractions(path: str) -> bool:
    return path.split("?")[0].endswith("/extractions")


def is_token(path: str) -> bool:
    return path.startswith("/oauth/token")


def json_body(change: Callable[[dict[str, Any]], None]) -> Callable[[Answer], Answer]:
    """Rewrite a JSON answer's object (written back with escapes, so lone surrogates survive)."""

    def apply(answer: Answer) -> Answer:
        body = json.loads(answer[2])
        change(body)
        return json_answer(answer, body)

    return apply


def raw(body: bytes) -> Callable[[Answer], Answer]:
    return lambda answer: (answer[0], answer[1], body)


def with_status(status: int, headers: dict[str, str], body: bytes = b"") -> Callable[[Answer], Answer]:
    return lambda answer: (status, {**answer[1], **headers}, body)


def set_key(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value

    return change


def first_document(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["documents"][0][key] = value

    return change


def window_document(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Change one document of the pulled window, the same one in every listing answer."""
    chosen: list[str] = []

    def change(body: dict[str, Any]) -> None:
        for doc in body["documents"]:
            if not chosen and ms(START) <= doc["creationDate"] < ms(END):
                chosen.append(doc["id"])
            if chosen and doc["id"] == chosen[0]:
                doc[key] = value

    return change


ODD_EXTRACTIONS = {
    "extractions": {
        "amountToPay": "12.50:EUR",  # a bare value where an object belongs
        "iban": {"value": {"nested": True}},
        "bic": None,
        "paymentRecipient": {"value": ["a", "list"]},
    },
    "candidates": 7,
    "compoundExtractions": [],
}


def unordered(body: dict[str, Any]) -> None:
    """Dates that go up, then down: no order a cursor could follow."""
    docs = body["documents"]
    if len(docs) >= 3:
        docs[1]["creationDate"] = docs[0]["creationDate"] + 10**6
        docs[2]["creationDate"] = docs[0]["creationDate"] - 10**6


def first_page_always() -> Callable[[dict[str, Any]], None]:
    """Every answer is the first page, whatever the cursor: a server that does not page."""
    first: list[Any] = []

    def mutate(body: dict[str, Any]) -> None:
        if not first:
            first.extend(body["documents"])
        body["documents"] = list(first)

    return mutate


@dataclass
class ServerCase:
    mutate: Mutate
    message: str | None = None  # None: the pull must succeed
    error: type[GiniError] = GiniError
    options: dict[str, Any] = field(default_factory=dict)


SERVER_CASES: dict[str, ServerCase] = {
    "name with a lone surrogate": ServerCase(
        always(is_listing, json_body(window_document("name", "\ud800 name \udfff")))
    ),
    "listing that is not UTF-8": ServerCase(
        always(is_listing, raw(b'{"documents": ["\xff\xfe\xfd"]}')), r"unreadable JSON", GiniRetryError
    ),
    "extractions that are not UTF-8": ServerCase(
        always(is_extractions, raw(b'{"extractions": {"iban": {"value": "DE\xe4\xf6"}}}')),
        r"unreadable JSON",
        GiniRetryError,
    ),
    "token response that is not UTF-8": ServerCase(
        always(is_token, raw(b'{"access_token": "\xff\xfe"}')), r"unreadable JSON", GiniRetryError
    ),
    "error page that is not UTF-8": ServerCase(
        always(is_listing, with_status(503, {}, b'{"message": "\xff\xfe"}')),
        r"503 .*no readable error message",
        GiniRetryError,
    ),
    "Retry-After with a non-ASCII digit": ServerCase(
        first_only("/documents?", with_status(429, {"Retry-After": "\u00b2"}, b"{}"))
    ),
    "Retry-After that is not a number or date": ServerCase(
        first_only("/documents?", with_status(503, {"Retry-After": "soon, promise"}, b"{}"))
    ),
    "negative expires_in": ServerCase(
        always(is_token, json_body(set_key("expires_in", -60))), r"invalid expires_in", GiniRetryError
    ),
    "expires_in of 400 digits": ServerCase(
        always(is_token, json_body(set_key("expires_in", 10**400))), r"invalid expires_in", GiniRetryError
    ),
    "missing expires_in": ServerCase(always(is_token, json_body(set_key("expires_in", None)))),
    # gini-mobile-ios decodes token_type only if present (docs/gini-compat.md, Tokens).
    "missing token_type": ServerCase(always(is_token, json_body(set_key("token_type", None)))),
    "token_type null": ServerCase(always(is_token, json_body(lambda b: b.update(token_type=None)))),
    "token_type mac": ServerCase(
        always(is_token, json_body(set_key("token_type", "mac"))),
        r"token_type 'mac'; only bearer is supported",
        GiniRetryError,
    ),
    "access_token a number": ServerCase(
        always(is_token, json_body(set_key("access_token", 12345))),
        r"no access_token string",
        GiniRetryError,
    ),
    "access_token with a line break": ServerCase(
        always(is_token, json_body(lambda b: b.update(access_token=b["access_token"] + "\r\nX-Evil: 1"))),
        r"access_token with characters a bearer token cannot have",
        GiniRetryError,
    ),
    "access_token not latin-1": ServerCase(
        always(is_token, json_body(lambda b: b.update(access_token=b["access_token"] + "€"))),
        r"access_token with characters a bearer token cannot have",
        GiniRetryError,
    ),
    "extractions of unexpected shapes": ServerCase(
        always(is_extractions, lambda a: json_answer(a, ODD_EXTRACTIONS))
    ),
    "extractions not an object": ServerCase(
        always(is_extractions, lambda a: json_answer(a, [])),
        r"extractions that are not a JSON object",
        GiniProtocolError,
    ),
    "listing not an object": ServerCase(
        always(is_listing, lambda a: json_answer(a, [])), r"without a 'documents' list", GiniProtocolError
    ),
    "listed document without creationDate": ServerCase(
        always(is_listing, json_body(first_document("creationDate", None))),
        r"without an integer creationDate",
        GiniProtocolError,
    ),
    "listed document id with ../": ServerCase(
        always(is_listing, json_body(window_document("id", "../../escape"))),
        r"Refusing a document id that is not a plain token: '\.\./\.\./escape'",
        GiniProtocolError,
    ),
    "listing out of creation-date order": ServerCase(
        always(is_listing, json_body(unordered)),
        r"not in creation-date order, so its 'next' cursor cannot be followed",
        GiniIncompleteListing,
        options={"page_size": 3},
    ),
    "listing that ignores its cursor": ServerCase(
        always(is_listing, json_body(first_page_always())),
        r"does not page by creation date|cannot be paged past creation date",
        GiniIncompleteListing,
        options={"page_size": 3},
    ),
}


@pytest.fixture
def proxied(
    gini_connection: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Mutate], str]]:
    """A connection ``gini_proxy`` to the sandbox through a proxy that rewrites its answers."""
    stack: list[Any] = []

    def start(mutate: Mutate) -> str:
        context = mutating_proxy(gini_connection.base_url, mutate)
        url = context.__enter__()
        stack.append(context)
        conn = gini_connection.connection()
        conn["host"] = url
        conn["extra"]["user_center_url"] = url
        monkeypatch.setenv("AIRFLOW_CONN_GINI_PROXY", json.dumps(conn))
        return url

    yield start
    for context in stack:
        context.__exit__(None, None, None)


@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_hostile_server_data(
    name: str,
    gini_connection: RunningSandbox,
    proxied: Callable[[Mutate], str],
    layout: Layout,
    evidence: Evidence,
) -> None:
    case = SERVER_CASES[name]
    figures.BAD_INPUTS.add(f"server: {name}")
    proxied(case.mutate)
    if case.message is None:
        result = pull("gini_proxy", layout.destination, page_size=5)
        assert result["pulled"] + result["errored"] == len(
            gini_connection.documents(created_after=ms(START), created_before=ms(END))
        )
        if name == "extractions of unexpected shapes":
            some = next(layout.destination.glob("*/extractions.json"))
            assert json.loads(some.read_bytes()) == ODD_EXTRACTIONS  # stored as received
            lines = [
                json.loads(line)
                for line in Path(result["manifest"].removeprefix("file://")).read_text().splitlines()
            ]
            assert {line["amountToPay"] for line in lines} == {None}
            assert {line["iban"] for line in lines} == {None}
        elif name == "name with a lone surrogate":
            names = [json.loads(p.read_bytes())["name"] for p in layout.destination.glob("*/document.json")]
            assert "\ud800 name \udfff" in names
        else:
            assert_destination(gini_connection, layout.destination, START, END)
    else:
        with pytest.raises((case.error, GiniPullIncomplete)) as caught:
            pull("gini_proxy", layout.destination, **case.options)
        evidence.exceptions.append(caught.value)
        assert re.search(case.message, str(caught.value)), str(caught.value)
        if isinstance(caught.value, GiniPullIncomplete):  # each document failed alone, by name
            assert caught.value.failed
            assert all(re.search(case.message, error) for error in caught.value.failed.values())
        else:
            assert isinstance(caught.value, case.error)
        written = [f for f in files_under(layout.destination) if not f.startswith("_manifests")]
        assert [f for f in written if ".gini-tmp-" in f] == []
    layout.assert_nothing_outside()
