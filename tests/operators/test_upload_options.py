"""GiniUploadDocumentOperator's upload options, in real DAG runs against the sandbox: user
metadata (sent beside the idempotency tag, checked before any upload, unable to forge the tag)
and composite documents (partials in order with their rotations, then one composite; retries
adopt what they can prove and upload only the rest)."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_gini.client.errors import GiniTransportError
from airflow_provider_gini.operators.idempotency import (
    TAG_CONTENT_SHA256,
    TAG_MAP_INDEX,
    TAG_PART,
    TAG_TASK_ID,
    UPLOAD_TAG,
    composite_tag,
)
from airflow_provider_gini.sandbox import RunningSandbox, profile
from tests.compat import sdk_exception
from tests.operators.conftest import EXAMPLES, task_states, xcom

pytestmark = pytest.mark.timeout(120)

SAMPLES = EXAMPLES / "sample_documents"
INVOICE, SLIP, OTHER = (
    SAMPLES / "rechnung-sample-1.pdf",
    SAMPLES / "zahlschein-sample-2.pdf",
    SAMPLES / "rechnung-sample-3.pdf",
)
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
ECHO = profile("pay-api", echo_metadata=True)
MODES = pytest.mark.parametrize("gini_sandbox_profile", [ECHO, "pay-api"], ids=["echo", "gini-like"])
# Airflow 3.3+ keeps a record per task instance across tries: there a retry proves its earlier
# partials without Gini's help (operators/idempotency.py).
TASK_STATE_STORE = hasattr(
    importlib.import_module("airflow.sdk.execution_time.context"), "TaskStateStoreAccessor"
)
PREFIX = "x-document-metadata-"

UPLOAD_DAG = """
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniUploadDocumentOperator(task_id="upload", retries=RETRIES, retry_delay=timedelta(0), ARGS)
"""


def upload_dag(dag_file: Callable[..., Any], retries: int = 0, **args: Any) -> Any:
    """A DAG of one upload task with these arguments (plain values, written as their repr)."""
    listed = ", ".join(f"{k}={v!r}" for k, v in {"hook_params": FAST, **args}.items())
    return dag_file(UPLOAD_DAG.replace("RETRIES", str(retries)).replace("ARGS", listed))


def posts(sandbox: RunningSandbox) -> int:
    return int(sandbox.counters()["routes"].get("POST /documents", 0))


def new_documents(sandbox: RunningSandbox, before: set[str]) -> list[dict[str, Any]]:
    """Documents created since ``before`` (in no order to rely on: uploads may share a millisecond)."""
    return [d for d in sandbox.documents() if d["id"] not in before]


def split(created: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(partials, composites) among documents."""
    composites = [d for d in created if d["sourceClassification"] == "COMPOSITE"]
    return [d for d in created if d not in composites], composites


def metadata_of(sandbox: RunningSandbox, document_id: str) -> dict[str, str]:
    """The X-Document-Metadata-* headers the sandbox received with an upload, by lower-case name."""
    return {
        name.removeprefix(PREFIX): value
        for name, value in sandbox.document(document_id)["metadata"].items()
        if name.startswith(PREFIX)
    }


def partial_ids(sandbox: RunningSandbox, composite_id: str) -> list[str]:
    stored = sandbox.document(composite_id)
    return [p["document"].rsplit("/", 1)[1] for p in stored["partialDocuments"]]


def try_number(run: Any) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="upload")
            .one()
        )
        return int(ti.try_number)


def fails_before_any_upload(
    sandbox: RunningSandbox,
    dag_file: Callable[..., Any] | None,
    said: str | list[str],
    **args: Any,
) -> None:
    """The upload operator with ``args`` raises AirflowFailException (no retries, which could not
    help) saying ``said`` (each of them; read from the exception: task logs wrap long lines
    differently per Airflow version), without a single upload. With ``dag_file`` first in a DAG
    run too (templates rendered, Airflow's retries set), which fails at its first try."""
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    if dag_file is not None:
        run = upload_dag(dag_file, retries=2, **args).test()
        assert run.state == "failed"
        assert try_number(run) == 1
        assert posts(sandbox) == 0
    operator = GiniUploadDocumentOperator(task_id="upload", **args)
    with pytest.raises(sdk_exception("AirflowFailException")) as caught:
        operator.execute({})  # type: ignore[arg-type]
    for part in [said] if isinstance(said, str) else said:
        assert part in str(caught.value)
    assert posts(sandbox) == 0


def png_page(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (60, 80), "white").save(path, "PNG")
    return path


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_reaches_gini_beside_the_tag(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    """Templated metadata arrives as X-Document-Metadata-* headers, unchanged, next to the five
    tag headers."""
    dag = upload_dag(
        dag_file,
        file=str(INVOICE),
        metadata={"BranchId": "10020030", "Upload": "{{ task.task_id }} of {{ dag.dag_id }}, 100% ok"},
    )
    run = dag.test()
    assert run.state == "success", task_states(run)
    received = metadata_of(gini_connection, xcom(run, "upload"))
    assert received.pop("branchid") == "10020030"
    assert received.pop("upload") == f"upload of {dag.dag_id}, 100% ok"  # not percent-encoded
    assert set(received) == {name.lower() for name in UPLOAD_TAG}
    assert received[TAG_CONTENT_SHA256.lower()] == hashlib.sha256(INVOICE.read_bytes()).hexdigest()


# Run in a DAG too (the others are seconds each on Airflow 3.0): the two cases.
IN_DAG = {("a tag name, other case", True), ("a non-ASCII value", False)}
BAD_METADATA = {
    "a tag name, other case": ({"airflow-run-id": "forged"}, "reserved"),
    "the content hash": ({"CONTENT-SHA256": "0" * 64}, "reserved"),
    "another Airflow- name": ({"Airflow-Part": "composite"}, "reserved"),
    "a non-ASCII value": ({"Upload": "März"}, "not printable ASCII"),
    "a header injection": (
        {"Upload": "x\r\nX-Document-Metadata-Airflow-Run-Id: forged"},
        "not printable ASCII",
    ),
    "a name that is no token": ({"Branch Id": "1"}, "not an HTTP token"),
    "names equal but for case": ({"Upload": "a", "upload": "b"}, "differ only in case"),
    "a float value": ({"BranchId": 1.5}, "is a float: give a string (or an integer)"),
    "a bool value": ({"Paid": True}, "is a bool: give a string"),
    "a None value": ({"BranchId": None}, "is a NoneType: give a string"),
    "a list value": ({"BranchId": ["1"]}, "is a list: give a string"),
    "a tag name with underscores": ({"Airflow_Dag_Id": "forged"}, "reserved"),
    "the content hash, underscored": ({"content_sha256": "0" * 64}, "reserved"),
}


@pytest.mark.parametrize("composite", [False, True], ids=["file", "files"])
@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_fails_before_any_upload(
    case: str, composite: bool, gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    metadata, said = BAD_METADATA[case]
    source = {"files": [str(INVOICE), str(SLIP)]} if composite else {"file": str(INVOICE)}
    in_dag = dag_file if (case, composite) in IN_DAG else None
    fails_before_any_upload(gini_connection, in_dag, said, metadata=metadata, **source)


def test_reserved_names_are_named_in_the_error() -> None:
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    operator = GiniUploadDocumentOperator(
        task_id="u", file=str(INVOICE), metadata={"Content-sha256": "x", "airflow-dag-id": "y", "Ok": "z"}
    )
    with pytest.raises(sdk_exception("AirflowFailException")) as caught:
        operator.execute({})  # type: ignore[arg-type]
    message = str(caught.value)
    assert "'Content-sha256', 'airflow-dag-id'" in message
    assert "ignoring case and '_' for '-'" in message
    assert "'Ok'" not in message
    assert all(name in message for name in (*UPLOAD_TAG, TAG_PART))


def test_integer_metadata_is_sent_as_text(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    """Integers and Decimals go as str(value), as the client always sent them: with
    render_template_as_native_obj a template of digits renders as an int."""
    dag = dag_file(
        UPLOAD_DAG.replace("RETRIES", "0")
        .replace(
            "ARGS",
            f"file={str(INVOICE)!r}, hook_params={FAST!r}, "
            "metadata={'BranchId': '{{ params.branch }}', 'Pages': 2, 'Total': Decimal('12.50')}",
        )
        .replace(
            "schedule=None,",
            'schedule=None, params={"branch": "10020030"}, render_template_as_native_obj=True,',
        )
        .replace("from airflow.sdk import DAG", "from decimal import Decimal\nfrom airflow.sdk import DAG")
    )
    run = dag.test()
    assert run.state == "success", task_states(run)
    received = metadata_of(gini_connection, xcom(run, "upload"))
    assert (received["branchid"], received["pages"], received["total"]) == ("10020030", "2", "12.50")


# --- composite documents ----------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    body: bytes


@contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, list[Recorded]]]:
    """A loopback proxy in front of the sandbox that keeps every request as sent: the sandbox
    does not keep a composite's rotations, so the wire is where they can be seen. The Host
    header goes through, so the sandbox's Locations name the proxy."""
    target = urlsplit(upstream)
    seen: list[Recorded] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append(Recorded(self.command, self.path, self.headers.get("Content-Type", ""), body))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                response = conn.getresponse()
                status, headers, data = response.status, response.getheaders(), response.read()
            finally:
                conn.close()
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in {"connection", "transfer-encoding", "content-length", "date", "server"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="recording-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_composite_of_three_files_in_order_with_rotations(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A PDF, a PNG and a PDF become three partials (media types by content), then one composite
    of them in this order, turned as asked (-90 sent as 270), processed before the task ends;
    the task returns the composite's id. Metadata and a tag of its own go with each upload."""
    files = [INVOICE, png_page(tmp_path / "scan.png"), SLIP]
    gini_connection.settings(processing_delay=0.5)
    before = {d["id"] for d in gini_connection.documents()}
    with recording_proxy(gini_connection.base_url) as (url, wire):
        conn = gini_connection.connection()
        conn["host"] = url
        conn["extra"]["user_center_url"] = url
        monkeypatch.setenv("AIRFLOW_CONN_GINI_RECORDED", json.dumps(conn))
        dag = upload_dag(
            dag_file,
            gini_conn_id="gini_recorded",
            files=[str(f) for f in files],
            rotations=[0, 90, -90],
            metadata={"BranchId": "10020030"},
            wait_for_processing=True,
            deferrable=False,
            poll_interval=0.1,
        )
        run = dag.test()
    assert run.state == "success", task_states(run)
    created, [composite] = split(new_documents(gini_connection, before))
    assert xcom(run, "upload") == composite["id"]
    assert composite["name"] == "rechnung-sample-1-composite.pdf"
    assert gini_connection.document(composite["id"])["progress"] == "COMPLETED"
    partials = [gini_connection.document(i) for i in partial_ids(gini_connection, composite["id"])]
    assert sorted(p["id"] for p in partials) == sorted(d["id"] for d in created)
    assert [p["name"] for p in partials] == [f.name for f in files]
    uploads = [r for r in wire if r.method == "POST" and r.path.startswith("/documents")]
    assert [u.content_type for u in uploads] == [
        "application/vnd.gini.v1.partial+pdf",
        "application/vnd.gini.v1.partial+png",
        "application/vnd.gini.v1.partial+pdf",
        "application/vnd.gini.v1.composite+json",
    ]
    assert [u.body for u in uploads[:3]] == [f.read_bytes() for f in files]
    sent = json.loads(uploads[3].body)["partialDocuments"]
    assert [s["rotationDelta"] for s in sent] == [0, 90, 270]
    assert [s["document"].rsplit("/", 1)[1] for s in sent] == [p["id"] for p in partials]
    # Each part: the user's metadata, and a tag telling which part of which task instance it is.
    for index, (partial, path) in enumerate(zip(partials, files, strict=True), start=1):
        received = metadata_of(gini_connection, partial["id"])
        assert received["branchid"] == "10020030"
        assert received[TAG_PART.lower()] == f"partial-{index}"
        assert received[TAG_CONTENT_SHA256.lower()] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert received[TAG_TASK_ID.lower()] == "upload"
    received = metadata_of(gini_connection, composite["id"])
    assert received["branchid"] == "10020030"
    assert received[TAG_PART.lower()] == "composite"
    expected = composite_tag({}, [f.read_bytes() for f in files], [0, 90, -90])  # type: ignore[arg-type]
    assert received[TAG_CONTENT_SHA256.lower()] == expected[TAG_CONTENT_SHA256]
    assert received[TAG_MAP_INDEX.lower()] == "-1"


def test_one_file_still_makes_a_composite(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    """``files`` of one file: a partial and a composite of it, so the result is always a composite."""
    before = {d["id"] for d in gini_connection.documents()}
    run = upload_dag(dag_file, files=[str(INVOICE)], filename="one-page.pdf").test()
    assert run.state == "success", task_states(run)
    [partial], [composite] = split(new_documents(gini_connection, before))
    assert xcom(run, "upload") == composite["id"]
    assert composite["name"] == "one-page.pdf"
    assert partial_ids(gini_connection, composite["id"]) == [partial["id"]]


def test_bad_files_fail_before_any_upload(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """A missing file and a file no partial can be (text) among good ones: nothing is uploaded,
    the task fails without retries, and the error names both."""
    text = tmp_path / "notes.txt"
    text.write_text("not a page")
    missing = tmp_path / "missing.pdf"
    files = [str(INVOICE), str(missing), str(text), str(SLIP)]
    said = [
        "Nothing uploaded: 2 of 4 file(s)",
        f"{missing}: no such file",
        f"{text}: not a file a partial document can be",
    ]
    fails_before_any_upload(gini_connection, dag_file, said, files=files)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ({"files": "{{ ['a.pdf'] }}"}, "files must be a list"),  # rendered to a string
        ({"files": []}, "files is empty"),
        ({"files": [str(INVOICE), str(SLIP)], "rotations": [0]}, "1 item(s) for 2 file(s)"),
        ({"files": [str(INVOICE), str(SLIP)], "rotations": [0, 45]}, "multiples of 90"),
        ({"files": [str(INVOICE), str(SLIP)], "rotations": [0, "90"]}, "rotations must be integers"),
    ],
    ids=["string", "empty", "rotations count", "rotation 45", "rotation a string"],
)
def test_bad_composite_arguments_fail_before_any_upload(
    args: dict[str, Any], said: str, gini_connection: RunningSandbox, dag_file: Callable[..., Any]
) -> None:
    in_dag = dag_file if isinstance(args["files"], str) else None  # the templated case
    fails_before_any_upload(gini_connection, in_dag, said, **args)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ({}, "got neither"),
        ({"file": "a.pdf", "files": ["b.pdf"]}, "got both"),
        ({"file": "a.pdf", "rotations": [90]}, "rotations apply to files"),
        ({"files": ["a.pdf"], "content_type": "application/pdf"}, "content_type applies to file"),
    ],
)
def test_conflicting_arguments_fail_when_the_dag_is_parsed(args: dict[str, Any], said: str) -> None:
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    with pytest.raises(TypeError, match=said):  # a plain Python error where the DAG is parsed
        GiniUploadDocumentOperator(task_id="u", **args)


def test_rotations_are_hashed_as_gini_gets_them() -> None:
    """-90 and 270 are one turn (sent as 270 both): the same composite, the same tag."""
    pages = [INVOICE.read_bytes(), SLIP.read_bytes()]
    sha = TAG_CONTENT_SHA256
    assert composite_tag({}, pages, [0, -90])[sha] == composite_tag({}, pages, [360, 270])[sha]  # type: ignore[arg-type]
    assert composite_tag({}, pages, [0, 90])[sha] != composite_tag({}, pages, [0, 270])[sha]  # type: ignore[arg-type]


def test_more_than_ten_pages_are_warned_of(
    gini_connection: RunningSandbox, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    page = png_page(tmp_path / "page.png")
    operator = GiniUploadDocumentOperator(task_id="u", files=[str(page)] * 11, hook_params=FAST)
    operator.execute({})  # type: ignore[arg-type]
    said = capfd.readouterr()
    assert "has 11 files, so at least 11 pages: Gini processes only the first 10" in said.out + said.err


class Store:
    """Airflow 3.3's task state store as a task sees it (get/set per key), across the calls of
    one test: the tries of one task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.mark.parametrize("partial_gone", [False, True], ids=["adopted", "partial gone"])
def test_a_lost_composite_answer_is_found_by_its_partials(
    partial_gone: bool, gini_connection: RunningSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    """With the task state store (3.3+; called directly with one, on every version): the
    composite POST reached Gini but its answer was lost. The next try proves its partials,
    finds the composite among the first one's compositeDocuments and adopts it; when that
    partial is gone, nothing can be proven, and it fails naming them instead of making another."""
    from types import SimpleNamespace

    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

    gini_connection.add_fault("reset", method="POST", path="/documents", every=3, times=1, after_handler=True)
    store = Store()

    def context(number: int) -> Any:
        ti = SimpleNamespace(dag_id="d", run_id="r", task_id="upload", map_index=-1, try_number=number)
        return {"ti": ti, "task_state_store": store, "dag_run": SimpleNamespace(run_after=None)}

    def operator() -> Any:
        return GiniUploadDocumentOperator(task_id="upload", files=[str(INVOICE), str(SLIP)], hook_params=FAST)

    before = {d["id"] for d in gini_connection.documents()}
    with pytest.raises(GiniTransportError):  # the broken connection: retryable, no result
        operator().execute(context(1))
    [lost] = split(new_documents(gini_connection, before))[1]
    if partial_gone:
        gini_connection.delete_document(partial_ids(gini_connection, lost["id"])[0])
        with pytest.raises(
            sdk_exception("AirflowFailException"), match="whether Gini made the composite cannot be proven"
        ):
            operator().execute(context(2))
    else:
        assert operator().execute(context(2)) == lost["id"]
    assert len(split(new_documents(gini_connection, before))[1]) == 1
    assert posts(gini_connection) == 3


@dataclass
class RetryCase:
    rule: dict[str, Any]
    # Documents the first try left in Gini: partials, and whether the composite was stored.
    first_try_partials: int
    first_try_composite: bool
    refused: int  # POSTs refused without effect


RETRY_CASES = {
    # The case: the 2nd partial upload fails (503, nothing stored); the retry adopts the
    # 1st partial it can prove, uploads the 2nd and 3rd, and makes one composite.
    "503 on the 2nd partial": RetryCase(
        {"kind": "status", "status": 503, "method": "POST", "path": "/documents", "every": 2, "times": 1},
        first_try_partials=1,
        first_try_composite=False,
        refused=1,
    ),
    # Gini stored the composite but its answer was lost: the retry adopts the composite itself
    # when it can prove it (the echoed tag, or 3.3+ its partials' compositeDocuments), else
    # (3.0-3.2 without the echo) it makes another and warns.
    "composite stored, answer lost": RetryCase(
        {
            "kind": "reset",
            "method": "POST",
            "path": "/documents",
            "every": 4,
            "times": 1,
            "after_handler": True,
        },
        first_try_partials=3,
        first_try_composite=True,
        refused=0,
    ),
}


@MODES
@pytest.mark.parametrize("name", list(RETRY_CASES))
def test_retry_uploads_only_what_it_cannot_prove(
    name: str,
    gini_sandbox_profile: Any,
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    case = RETRY_CASES[name]
    echo = gini_sandbox_profile is ECHO
    # What the retry can prove: partials whose answer arrived by the task state store (3.3+) or
    # the echo; the composite whose answer was lost only by the echo.
    partials_proven = echo or TASK_STATE_STORE
    # The composite: by the echo, or (3.3+) by its mark in the task state store and the first
    # partial's compositeDocuments, which Gini serves.
    composite_proven = echo or TASK_STATE_STORE
    files = [INVOICE, png_page(tmp_path / "scan.png"), SLIP]
    rule = dict(case.rule)
    gini_connection.add_fault(rule.pop("kind"), **rule)
    before = {d["id"] for d in gini_connection.documents()}
    run = upload_dag(dag_file, retries=1, files=[str(f) for f in files]).test()
    assert run.state == "success", task_states(run)
    assert try_number(run) == 2
    created = new_documents(gini_connection, before)
    if case.first_try_composite and composite_proven:
        again = 0
    else:
        again = (
            (0 if partials_proven else case.first_try_partials)
            + (len(files) - case.first_try_partials)
            + 1  # the composite
        )
    made = case.first_try_partials + case.first_try_composite + again
    assert len(created) == made, [d["name"] for d in created]
    assert posts(gini_connection) == made + case.refused
    _, composites = split(created)
    # The composite the task returns: its partials are the three files, in order.
    result = xcom(run, "upload")
    assert result in {c["id"] for c in composites}
    parts = [gini_connection.document(p) for p in partial_ids(gini_connection, result)]
    assert [p["name"] for p in parts] == [f.name for f in files]
    if case.first_try_composite:
        assert len(composites) == (1 if composite_proven else 2)
    else:
        assert len(composites) == 1  # exactly one composite, in every mode
    warnings = [line for line in capfd.readouterr().out.splitlines() if "none can be proven" in line]
    unproven_partials = 0 if partials_proven else case.first_try_partials
    unproven_composite = case.first_try_composite and not composite_proven
    assert len(warnings) == unproven_partials + unproven_composite


def test_example_dag(gini_connection: RunningSandbox, example_dag: Callable[[str], Any]) -> None:
    gini_connection.settings(processing_delay=1.0)
    before = {d["id"] for d in gini_connection.documents()}
    run = example_dag("gini_composite_upload").test()
    assert run.state == "success", task_states(run)
    created, [listed] = split(new_documents(gini_connection, before))
    composite = gini_connection.document(xcom(run, "upload"))
    assert composite["id"] == listed["id"]
    assert composite["progress"] == "COMPLETED"
    assert composite["name"] == "invoice-with-slip.pdf"
    partials = [gini_connection.document(i) for i in partial_ids(gini_connection, composite["id"])]
    assert sorted(p["id"] for p in partials) == sorted(d["id"] for d in created)
    assert [p["name"] for p in partials] == [INVOICE.name, SLIP.name]
    # "{{ params.branch }}" rendered as a native int, sent as its digits.
    assert composite["metadata"][f"{PREFIX}branchid"] == "10020030"
    assert xcom(run, "extractions")["iban"].startswith("DE")
