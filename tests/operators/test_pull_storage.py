"""How a pull stores documents on a local destination (#15): the processed file's name, symbolic
links, permission modes and damaged stored files, through real pulls against the sandbox."""

from __future__ import annotations

import io
import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from airflow_provider_gini._compat import AirflowFailException
from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.pull.storage import Store, destination_path
from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import xcom

UTC = timezone.utc
DAY6 = datetime(2026, 1, 6, tzinfo=UTC)
DAY7 = datetime(2026, 1, 7, tzinfo=UTC)

# An explicit window from the run's conf, so one test can pull the same window twice.
WINDOW_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", destination="{{ dag_run.conf['destination'] }}",
                              created_after="{{ dag_run.conf['after'] }}",
                              created_before="{{ dag_run.conf['before'] }}",
                              include_processed=True, max_workers=2, pending_timeout=10, poll_interval=0.2,
                              MODES)
"""


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat()


@pytest.fixture
def window_dag(dag_file: Callable[..., Any]) -> Callable[..., Any]:
    def make(modes: str = "") -> Any:
        return dag_file(WINDOW_DAG.replace("MODES", modes))

    return make


def pull(dag: Any, destination: Path, after: int, before: int) -> Any:
    conf = {"destination": str(destination), "after": at(after), "before": at(before)}
    return dag.test(run_conf=conf)


def execute(destination: Path | str, after: int, before: int, **kwargs: Any) -> dict[str, Any]:
    """The pull of a window, executed directly (no DAG run), for the errors it raises."""
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    operator = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(destination),
        created_after=at(after),
        created_before=at(before),
        include_processed=True,
        pending_timeout=10,
        poll_interval=0.1,
        **kwargs,
    )
    return operator.execute({"run_id": f"manual_{uuid.uuid4().hex[:8]}"})  # type: ignore[no-any-return,arg-type]


def upload_jpeg(sandbox: RunningSandbox, filename: str) -> str:
    """A JPEG uploaded through the API under ``filename``; its id."""
    image = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(image, "JPEG")
    answer = httpx.post(
        f"{sandbox.base_url}/documents",
        params={"filename": filename},
        content=image.getvalue(),
        headers={
            "Authorization": f"Bearer {sandbox.user_token()}",
            "Accept": "application/vnd.gini.v1+json",
            "Content-Type": "image/jpeg",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


def modes_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


# --- 1. the processed file's extension ---------------------------------------------------------


def test_processed_file_is_named_by_its_media_type_not_the_upload_name(
    gini_connection: RunningSandbox, window_dag: Callable[..., Any], tmp_path: Path
) -> None:
    gini_connection.settings(processing_delay=0)
    html, exe = (
        gini_connection.insert_documents(creationDate=ms(DAY6) + 1000 + i, name=name)[0]
        for i, name in enumerate(("invoice.html", "invoice.exe"))
    )
    scan = upload_jpeg(gini_connection, "scan.html")
    created = gini_connection.document(scan)["creationDate"]
    dag = window_dag()
    destination = tmp_path / "dest"
    for after, before in ((ms(DAY6), ms(DAY7)), (created, created + 1)):
        assert pull(dag, destination, after, before).state == "success"
    assert next((destination / html).glob("processed.*")).name == "processed.pdf"
    assert next((destination / exe).glob("processed.*")).name == "processed.pdf"
    assert next((destination / scan).glob("processed.*")).name == "processed.jpg"
    assert (destination / scan / "processed.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert not [p for p in destination.rglob("processed.*") if p.suffix in (".html", ".exe")]

    # A processed file an earlier version stored under the upload's extension is not taken for
    # stored: the document is pulled again and the file replaced by one with an allowed name.
    (destination / exe / "processed.pdf").rename(destination / exe / "processed.exe")
    dag_run = pull(dag, destination, ms(DAY6), ms(DAY7))
    assert dag_run.state == "success"
    result = xcom(dag_run, "pull")
    assert result["pulled"] == 1
    assert result["skipped"] >= 1
    assert sorted(p.name for p in (destination / exe).iterdir()) == [
        "document.json",
        "extractions.json",
        "processed.pdf",
    ]


# --- 2. symbolic links -------------------------------------------------------------------------


def test_a_destination_that_is_a_symlink_is_refused(gini_connection: RunningSandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "dest"
    link.symlink_to(elsewhere)
    gini_connection.reset_counters()
    for destination in (str(link), link.as_uri()):
        with pytest.raises(AirflowFailException) as caught:
            execute(destination, ms(DAY6), ms(DAY7))
        assert isinstance(caught.value.__cause__, GiniConfigError)
        assert str(link) in str(caught.value)
        assert "Remove the link" in str(caught.value)
    assert list(elsewhere.iterdir()) == []
    assert gini_connection.counters()["requests"] == 0


def test_a_symlinked_document_folder_or_file_is_refused_and_nothing_is_written_outside(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    [first, second] = gini_connection.insert_documents(count=2, creationDate=ms(DAY6) + 1000, spacingMs=10)
    destination, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    execute(destination, ms(DAY6), ms(DAY7))
    # The first document's folder becomes a link to a folder outside, missing its document.json
    # (so a pull would write into it).
    (destination / first).rename(outside / first)
    (outside / first / "document.json").unlink()
    (destination / first).symlink_to(outside / first)
    before = modes_under(outside)
    with pytest.raises(AirflowFailException) as caught:
        execute(destination, ms(DAY6), ms(DAY7))
    assert isinstance(caught.value.__cause__, GiniConfigError)
    assert str(destination / first) in str(caught.value)
    assert "Remove the link" in str(caught.value)
    assert modes_under(outside) == before  # nothing new there

    # The second document's extractions.json, a file a pull replaces, becomes a link.
    (destination / first).unlink()
    secret = outside / "secret.txt"
    secret.write_text("not the pull's")
    (destination / second / "document.json").unlink()
    (destination / second / "extractions.json").unlink()
    (destination / second / "extractions.json").symlink_to(secret)
    with pytest.raises(AirflowFailException) as caught:
        execute(destination, ms(DAY6), ms(DAY7))
    assert str(destination / second / "extractions.json") in str(caught.value)
    assert secret.read_text() == "not the pull's"
    assert (destination / second / "extractions.json").is_symlink()


def test_a_link_planted_where_a_temporary_file_goes_is_not_followed(tmp_path: Path) -> None:
    """The race a check cannot close: the file is created with O_NOFOLLOW | O_EXCL."""
    store = Store(destination_path(str(tmp_path / "dest")))
    store.ensure_writable()
    try:
        store.makedirs("doc")
        target = tmp_path / "target"
        (tmp_path / "dest" / "doc" / "planted").symlink_to(target)
        with pytest.raises(GiniConfigError, match="Remove the link"):
            store.files.open_write(store.path("doc/planted"))
        assert not target.exists()
    finally:
        store.close()


# --- 3. permission modes -----------------------------------------------------------------------


def test_files_are_private_by_default_and_existing_ones_keep_their_mode(
    gini_connection: RunningSandbox, window_dag: Callable[..., Any], tmp_path: Path, umask: Any
) -> None:
    umask(0o022)  # the usual umask, which would leave invoices world-readable
    destination = tmp_path / "dest"
    destination.mkdir(mode=0o755)
    (destination / "notes.txt").write_text("mine")
    os.chmod(destination / "notes.txt", 0o644)
    assert pull(window_dag(), destination, ms(DAY6), ms(DAY7)).state == "success"
    modes = modes_under(destination)
    assert modes.pop(".") == 0o755  # the destination existed: not the pull's to change
    assert modes.pop("notes.txt") == 0o644
    assert any(name.endswith("processed.pdf") for name in modes)
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o700 if (destination / name).is_dir() else 0o600)
    }
    assert wrong == {}


def test_configured_modes_are_set_whatever_the_umask(
    gini_connection: RunningSandbox, window_dag: Callable[..., Any], tmp_path: Path, umask: Any
) -> None:
    umask(0o077)  # would take the group's bits away from os.open's and mkdir's modes
    destination = tmp_path / "new" / "dest"
    dag = window_dag("file_mode=0o640, folder_mode=0o750")
    assert pull(dag, destination, ms(DAY6), ms(DAY7)).state == "success"
    modes = modes_under(destination)
    assert modes["."] == 0o750  # created by the pull
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o750 if (destination / name).is_dir() else 0o640)
    }
    assert wrong == {}


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("file_mode", 0o400, "leaves out bits the pull needs"),
        ("folder_mode", 0o600, "leaves out bits the pull needs"),
        ("file_mode", 0o4600, "from 0o000 to 0o777"),
        ("file_mode", "0o640", "from 0o000 to 0o777"),
        ("folder_mode", True, "from 0o000 to 0o777"),
    ],
)
def test_a_mode_that_cannot_work_is_refused_where_the_dag_is_parsed(
    argument: str, value: Any, message: str
) -> None:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    with pytest.raises(GiniConfigError, match=message) as caught:
        GiniPullDocumentsOperator(task_id="pull", destination="/data/gini", **{argument: value})
    assert argument in str(caught.value)


# --- 4. a damaged stored document.json ---------------------------------------------------------


def test_an_unreadable_document_json_is_pulled_again(
    gini_connection: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = gini_connection.insert_documents(count=5, creationDate=ms(DAY6) + 1000, spacingMs=10)
    destination = tmp_path / "dest"
    execute(destination, ms(DAY6), ms(DAY7))
    damaged = {
        ids[0]: (destination / ids[0] / "document.json").read_bytes()[:20],  # truncated
        ids[1]: b"not JSON at all \xff",
        ids[2]: b"[1, 2, 3]",  # JSON of the wrong shape
        ids[3]: json.dumps({"id": "another-document", "progress": "COMPLETED"}).encode(),
    }
    for doc_id, content in damaged.items():
        (destination / doc_id / "document.json").write_bytes(content)
    caplog.set_level("WARNING", logger="airflow_provider_gini.pull")
    result = execute(destination, ms(DAY6), ms(DAY7))
    assert result["failed"] == 0
    assert result["pulled"] == 4
    assert (
        result["skipped"]
        == len(gini_connection.documents(created_after=ms(DAY6), created_before=ms(DAY7))) - 4
    )
    for doc_id in damaged:
        assert json.loads((destination / doc_id / "document.json").read_text())["id"] == doc_id
        assert any(doc_id in r.getMessage() and "document.json" in r.getMessage() for r in caplog.records)
