"""Uploads are not idempotent at Gini. Through GiniUploadDocumentOperator with task retries and a
cleared task, in real DAG runs, counted by the sandbox: a later try adopts a document only when
Gini returns the upload's tag with all five values equal (the sandbox's echo_metadata switch);
without it (Gini as far as its sources show) it uploads again and warns, naming the candidates."""

from __future__ import annotations

import hashlib
import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_gini.operators.idempotency import (
    TAG_CONTENT_SHA256,
    TAG_DAG_ID,
    TAG_MAP_INDEX,
    TAG_RUN_ID,
    TAG_TASK_ID,
    TAG_VALUE_LIMIT,
    UPLOAD_TAG,
    tag_value,
)
from airflow_provider_gini.sandbox import RunningSandbox, profile
from tests.operators.conftest import EXAMPLES, xcom
from tests.reliability import figures
from tests.reliability.conftest import FAST, Evidence

pytestmark = pytest.mark.timeout(120)  # a hang fails the case instead of stalling the suite

SAMPLE = EXAMPLES / "sample_documents" / "rechnung-sample-1.pdf"
OTHER_SAMPLE = EXAMPLES / "sample_documents" / "rechnung-sample-3.pdf"
# The operator of commit e3335dc adopted the first document of the same name created since the
# run started; what it did in these scenarios, measured by running these tests against it.
BEFORE_EQUAL_BASENAMES = "1 id, 2 uploads, 0 warnings, either mode"
BEFORE_CLEARED = "the old id, 1 upload for 2 contents"
# The sandbox as Gini's sources show it (no upload metadata read back), and with the switch that
# echoes it: the hypothetical in which the operator can prove a document is its own.
GINI_LIKE = "pay-api"
# Airflow 3.3+ keeps a task instance's state across its tries: an upload whose answer arrived is
# recorded there, and adopted by a later try with no help from Gini.
TASK_STATE_STORE = hasattr(
    importlib.import_module("airflow.sdk.execution_time.context"), "TaskStateStoreAccessor"
)
ECHO = profile("pay-api", echo_metadata=True)
MODES = pytest.mark.parametrize("gini_sandbox_profile", [ECHO, GINI_LIKE], ids=["echo", "gini-like"])
WARNING = "none can be proven to be this task's earlier upload"

UPLOAD_DAG = f"""
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniUploadDocumentOperator(
        task_id="upload", file="{SAMPLE}", retries=2, retry_delay=timedelta(seconds=RETRY_DELAY),
        hook_params=HOOK_PARAMS,
    )
"""


@dataclass
class UploadCase:
    rule: dict[str, Any]
    posts: int | tuple[int, ...]  # POST /documents requests that reached the sandbox
    tries: int  # the try that succeeded
    hook_params: dict[str, Any] = field(default_factory=dict)
    retry_delay: float = 0.0
    # Gini stored the first try's upload: without the echo the retry cannot prove it its own, so
    # it uploads once more (one document and one POST more) and warns naming the first.
    stored_before_retry: bool = False


CASES = {
    # The case: Gini stored the upload, then the connection was reset before the answer.
    # The task cannot know; it fails without re-sending, and its retry adopts the stored document
    # if Gini returns its tag (echo), else uploads again and warns (Gini-like).
    "reset after Gini stored the upload": UploadCase(
        {"kind": "reset", "path": "/documents", "method": "POST", "first": 1, "after_handler": True},
        posts=1,
        tries=2,
        stored_before_retry=True,
    ),
    # Gini was slow: the client gave up (read timeout) before any answer, so it cannot know
    # whether Gini stored the upload (with the sandbox's server it does not, the client having
    # hung up). Either way the retry, which comes after Gini is done, as Airflow's retry_delay (5
    # min by default) makes sure, here 2 s against a 1 s stall, leaves exactly one document.
    "read timeout on the upload": UploadCase(
        {"kind": "latency", "path": "/documents", "method": "POST", "first": 1, "delay": 1.0},
        posts=(1, 2),
        tries=2,
        hook_params={"read_timeout": 0.3},
        retry_delay=2.0,
    ),
    # Reset before Gini handled it: nothing stored, so the retry uploads once more.
    "reset before Gini handled the upload": UploadCase(
        {"kind": "reset", "path": "/documents", "method": "POST", "first": 1}, posts=2, tries=2
    ),
    # A 503 answer to an upload is not retried in-task (it is not provably unprocessed); the
    # task retry finds no document and uploads.
    "503 to the upload": UploadCase(
        {"kind": "status", "status": 503, "path": "/documents", "method": "POST", "first": 1},
        posts=2,
        tries=2,
    ),
    # 429: Gini refused it unprocessed, so the client itself may send it again.
    "429 to the upload": UploadCase(
        {"kind": "retry_after", "path": "/documents", "method": "POST", "first": 1, "retry_after": 0},
        posts=2,
        tries=1,
    ),
}


def try_number(run: Any, task_id: str) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        )
        return int(ti.try_number)


def task_log(capfd: pytest.CaptureFixture[str], evidence: Evidence) -> str:
    """What the tasks logged so far (dag.test() runs them in-process, logging to stdout); kept for
    the leak search at teardown, which would otherwise not see what this read."""
    out, err = capfd.readouterr()
    evidence.texts[f"task log {len(evidence.texts)}"] = out + err
    return out


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if WARNING in line]


def processed_bytes(sandbox: RunningSandbox, document_id: str) -> bytes:
    """The bytes Gini (the sandbox) holds for a document, read over its own HTTP API."""
    response = httpx.get(
        f"{sandbox.base_url}/documents/{document_id}/processed",
        headers={"Authorization": f"Bearer {sandbox.user_token()}", "Accept": "application/octet-stream"},
        timeout=30,
    )
    response.raise_for_status()
    return response.content


def sent_tag(sandbox: RunningSandbox, document_id: str) -> dict[str, str]:
    """The tag headers the sandbox received with a document's upload (its admin API)."""
    metadata = sandbox.document(document_id)["metadata"]
    return {name: metadata.get(f"x-document-metadata-{name.lower()}", "") for name in UPLOAD_TAG}


def figure(capfd: pytest.CaptureFixture[str], line: str) -> None:
    with capfd.disabled():
        print(f"\nFIGURE {line}", flush=True)


@MODES
@pytest.mark.parametrize("name", list(CASES))
def test_retried_upload_adopts_only_a_proven_upload(
    name: str,
    gini_sandbox_profile: Any,
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    evidence: Evidence,
) -> None:
    case = CASES[name]
    echo = gini_sandbox_profile is ECHO
    duplicate = case.stored_before_retry and not echo
    rule = dict(case.rule)
    kind = rule.pop("kind")
    gini_connection.add_fault(kind, **rule)
    dag = dag_file(
        UPLOAD_DAG.replace("RETRY_DELAY", repr(case.retry_delay)).replace(
            "HOOK_PARAMS", repr({**FAST, **case.hook_params})
        )
    )
    before = {d["id"] for d in gini_connection.documents()}
    run = dag.test()
    after = gini_connection.documents()  # newest first
    created = [d for d in after if d["id"] not in before]
    figures.COUNTS["upload_runs"] += 1
    figures.COUNTS["uploads_created"] += len(created)
    figures.COUNTS["duplicates"] += max(0, len(created) - 1)
    assert run.state == "success"
    assert len(created) == (2 if duplicate else 1), [d["name"] for d in created]
    assert {d["name"] for d in created} == {SAMPLE.name}
    assert xcom(run, "upload") == created[0]["id"]
    posts = gini_connection.counters()["routes"]["POST /documents"]
    expected = case.posts if isinstance(case.posts, tuple) else (case.posts,)
    assert posts in tuple(p + duplicate for p in expected)
    assert try_number(run, "upload") == case.tries
    warnings = warnings_in(task_log(capfd, evidence))
    if duplicate:
        # The warning names the document the first try stored: the duplicate a user may delete.
        [warning] = warnings
        assert created[1]["id"] in warning
    else:
        assert warnings == []
    # (c) the tag reached Gini: the five values, as the sandbox received them.
    tag = sent_tag(gini_connection, created[0]["id"])
    assert tag == {
        TAG_DAG_ID: dag.dag_id,
        TAG_RUN_ID: tag_value(run.run_id),
        TAG_TASK_ID: "upload",
        TAG_MAP_INDEX: "-1",
        TAG_CONTENT_SHA256: hashlib.sha256(SAMPLE.read_bytes()).hexdigest(),
    }


MAPPED_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniUploadDocumentOperator.partial(
        task_id="upload", retries=1, retry_delay=0, wait_for_processing=True, deferrable=False,
        poll_interval=0.1, hook_params=HOOK_PARAMS,
    ).expand(file=FILES)
"""


def mapped_try_numbers(run: Any, task_id: str) -> list[int]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id)
        return [int(ti.try_number) for ti in sorted(tis, key=lambda ti: ti.map_index)]


@MODES
def test_mapped_uploads_of_equal_basenames_keep_their_own_documents(
    gini_sandbox_profile: Any,
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    evidence: Evidence,
    tmp_path: Path,
) -> None:
    """(a) Two different files, both scan.pdf, uploaded by one mapped task; each first try fails
    after its upload (a 503 to its first wait for processing, not retried in-task), so each
    retry looks for its own earlier upload among two documents of the same name."""
    echo = gini_sandbox_profile is ECHO
    files = [tmp_path / "a" / "scan.pdf", tmp_path / "b" / "scan.pdf"]
    for path, sample in zip(files, (SAMPLE, OTHER_SAMPLE), strict=True):
        path.parent.mkdir()
        shutil.copyfile(sample, path)
    assert files[0].read_bytes() != files[1].read_bytes()
    gini_connection.add_fault("status", status=503, method="GET", path="/documents/*", first=2)
    dag = dag_file(
        MAPPED_DAG.replace("HOOK_PARAMS", repr({**FAST, "max_attempts": 1})).replace(
            "FILES", repr([str(f) for f in files])
        )
    )
    before = {d["id"] for d in gini_connection.documents()}
    run = dag.test()
    created = [d for d in gini_connection.documents() if d["id"] not in before]
    ids = [xcom(run, "upload", map_index=i) for i in (0, 1)]
    posts = gini_connection.counters()["routes"]["POST /documents"]
    warnings = warnings_in(task_log(capfd, evidence))
    mode = "echo on" if echo else "Gini-like, no echo" + (", task state store" if TASK_STATE_STORE else "")
    figure(
        capfd,
        f"equal basenames ({mode}): {len(set(ids))} distinct ids for 2 files, {posts} uploads "
        f"for 2 files with a retry each, {len(warnings)} warnings (before: {BEFORE_EQUAL_BASENAMES})",
    )
    assert run.state == "success"
    assert mapped_try_numbers(run, "upload") == [2, 2]  # the retry path ran for both
    assert len(set(ids)) == 2
    for document_id, path in zip(ids, files, strict=True):
        assert processed_bytes(gini_connection, document_id) == path.read_bytes()
    assert {d["name"] for d in created} == {"scan.pdf"}
    # (c) each document carries its own map index and content hash.
    for index, (document_id, path) in enumerate(zip(ids, files, strict=True)):
        tag = sent_tag(gini_connection, document_id)
        assert tag[TAG_MAP_INDEX] == str(index)
        assert tag[TAG_CONTENT_SHA256] == hashlib.sha256(path.read_bytes()).hexdigest()
    if echo or TASK_STATE_STORE:
        # Each retry adopted its own upload: proven by the echoed tag, or by the id and sha256
        # its first try recorded in Airflow's task state store (3.3+). No duplicate.
        assert posts == 2
        assert len(created) == 2
        assert warnings == []
    else:
        # Each retry uploads again and warns, naming the earlier uploads it could not prove its own.
        assert posts == 4
        assert len(created) == 4
        first_tries = [d["id"] for d in created if d["id"] not in ids]
        assert len(first_tries) == 2
        assert len(warnings) == 2
        for document_id in first_tries:
            assert any(document_id in w for w in warnings), (document_id, warnings)


CLEARED_DAG = """
import shutil
from datetime import datetime, timezone
from airflow.sdk import DAG, task
from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    upload = GiniUploadDocumentOperator(task_id="upload", file=FILE, hook_params=HOOK_PARAMS)
    new_content = NEW_CONTENT

    @task
    def change_and_clear(first_id, **context):
        # What a user does: change the file (or not), then clear the upload task of this running
        # DAG run, as the UI's Clear does.
        from airflow.models.taskinstance import TaskInstance, clear_task_instances
        from airflow.utils.session import create_session

        if new_content is not None:
            shutil.copyfile(new_content, FILE)
        ti = context["ti"]
        with create_session() as session:
            tis = (
                session.query(TaskInstance)
                .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id="upload")
                .all()
            )
            clear_task_instances(tis, session)
        return first_id

    change_and_clear(upload.output)
"""


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    [
        ECHO,
        pytest.param(
            GINI_LIKE,
            marks=pytest.mark.skipif(not TASK_STATE_STORE, reason="needs Airflow's task state store (3.3+)"),
        ),
    ],
    ids=["echo", "gini-like"],
)
@pytest.mark.parametrize("changed", [True, False], ids=["changed file", "same file"])
def test_cleared_upload_task(
    changed: bool,
    gini_sandbox_profile: Any,
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    evidence: Evidence,
    tmp_path: Path,
) -> None:
    """(b) The upload task is cleared inside its running DAG run: with a changed file its second
    try uploads the new file and returns the new id; with the same file it adopts its upload."""
    path = tmp_path / "scan.pdf"
    shutil.copyfile(SAMPLE, path)
    dag = dag_file(
        CLEARED_DAG.replace("HOOK_PARAMS", repr(FAST))
        .replace("NEW_CONTENT", repr(str(OTHER_SAMPLE) if changed else None))
        .replace("FILE", repr(str(path)))
    )
    before = {d["id"] for d in gini_connection.documents()}
    run = dag.test()
    created = [d["id"] for d in gini_connection.documents() if d["id"] not in before]
    first_id, final_id = xcom(run, "change_and_clear"), xcom(run, "upload")
    posts = gini_connection.counters()["routes"]["POST /documents"]
    if changed:
        figure(
            capfd,
            f"cleared upload task, changed file ({'echo on' if gini_sandbox_profile is ECHO else 'Gini-like'}"
            f"{', task state store' if TASK_STATE_STORE else ''}): "
            f"{'the new id' if final_id != first_id else 'the old id'}"
            f", {posts} uploads for 2 contents (before: {BEFORE_CLEARED})",
        )
    assert run.state == "success"
    assert try_number(run, "upload") == 2  # the cleared task ran again, in the same DAG run
    assert processed_bytes(gini_connection, final_id) == path.read_bytes()
    log = task_log(capfd, evidence)
    assert warnings_in(log) == []  # the task state store or the echoed tags proved or disproved
    if changed:
        said = ("uploaded other content", "the file changed since this task uploaded")
        assert any(first_id in line and any(s in line for s in said) for line in log.splitlines())
        assert final_id != first_id
        assert created == [final_id, first_id]  # newest first
        assert posts == 2
        assert processed_bytes(gini_connection, first_id) == SAMPLE.read_bytes()
    else:
        assert final_id == first_id
        assert created == [first_id]
        assert posts == 1


def test_tag_values_are_ascii_bounded_and_reach_gini(gini_connection: RunningSandbox) -> None:
    """(c) Values outside printable ASCII are percent-encoded, long ones cut with a hash of the
    whole, and what the hook sends is what the sandbox receives."""
    from airflow_provider_gini.hooks.gini import GiniHook

    long_a, long_b = "lauf-" + "x" * 400 + "-a", "lauf-" + "x" * 400 + "-b"
    values = {
        "März 100% ☃": "M%C3%A4rz%20100%25%20%E2%98%83",
        "manual__2026-01-05T07:00:00+00:00": "manual__2026-01-05T07:00:00+00:00",
        "tab\there\r\nX-Injected: 1": "tab%09here%0D%0AX-Injected:%201",
    }
    for raw, encoded in values.items():
        assert tag_value(raw) == encoded
    cut_a, cut_b = tag_value(long_a), tag_value(long_b)
    assert len(cut_a) == len(cut_b) == TAG_VALUE_LIMIT
    assert cut_a != cut_b  # they differ only past the cut: the hash keeps them apart
    escapes = tag_value("ü" * 300)
    assert len(escapes) <= TAG_VALUE_LIMIT
    assert escapes.split("~")[0].endswith("%C3%BC")  # never half a character
    hook = GiniHook(**FAST)
    metadata = {TAG_RUN_ID: tag_value("März ☃"), TAG_DAG_ID: cut_a, TAG_TASK_ID: tag_value("tab\there")}
    document_id = hook.upload_document(SAMPLE.read_bytes(), filename="tagged.pdf", metadata=metadata)
    received = gini_connection.document(document_id)["metadata"]
    assert {k: v for k, v in received.items() if k.startswith("x-document-metadata-")} == {
        f"x-document-metadata-{name.lower()}": value for name, value in metadata.items()
    }
    assert all(value.isascii() for value in received.values())
