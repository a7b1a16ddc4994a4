"""The client and the pull operator against a replay of Gini's recorded shapes (shapes/, each
naming its source), over real HTTP: what Gini's own code and docs show, not the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.client.errors import GiniNotFound
from airflow_provider_gini.hooks.gini import GiniHook
from tests.contract.replay import SHAPES, Replay, connection, running, source
from tests.operators.conftest import xcom

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Replay]]:
    """Start a replay (keyword arguments: Replay's) and point AIRFLOW_CONN_GINI_REPLAY at it."""
    stack: list[Any] = []

    def start(**options: Any) -> Replay:
        context = running(Replay(**options))
        replay = context.__enter__()
        stack.append(context)
        monkeypatch.setenv("AIRFLOW_CONN_GINI_REPLAY", json.dumps(connection(replay)))
        return replay

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def test_every_shape_names_its_source() -> None:
    for path in SHAPES.glob("*.json"):
        origin = source(path.stem)
        assert all(origin.get(key) for key in ("repo", "path", "note")), path.name


@pytest.mark.parametrize("contract", ["pay-api", "legacy"])
def test_listing_yields_every_recorded_document_once(serve: Callable[..., Replay], contract: str) -> None:
    replay = serve(contract=contract)
    hook = GiniHook("gini_replay", **FAST)
    listing = hook.document_listing(page_size=50)
    assert [d["id"] for d in listing] == replay.ids
    pages = [line for line in replay.log if line.startswith("GET /documents?")]
    # 640 documents, 49 new a page (each page repeats its predecessor's last): 14 pages, and
    # one more where the last page is full; the offset contract's answers carry the count.
    assert len(pages) <= 15, pages
    assert listing.stats.contract == ("cursor" if contract == "pay-api" else "offset")
    lower, upper = replay.dates[replay.ids[100]], replay.dates[replay.ids[400]]
    window = [d["id"] for d in hook.iter_documents(lower, upper, page_size=50)]
    assert window == [i for i in replay.ids if lower <= replay.dates[i] < upper]


PULL_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(task_id="pull", gini_conn_id="gini_replay",
                              destination="{{ dag_run.conf['destination'] }}", full_history=True,
                              page_size=50, max_workers=8, pending_timeout=1,
                              poll_interval=0.2, hook_params={"backoff_initial": 0.01, "backoff_max": 0.05})
"""


@pytest.mark.parametrize("contract", ["pay-api", "legacy"])
def test_the_pull_operator_pulls_every_recorded_document_once(
    serve: Callable[..., Replay], dag_file: Callable[..., Any], tmp_path: Path, contract: str
) -> None:
    replay = serve(contract=contract, token="token-without-type")
    dag_run = dag_file(PULL_DAG).test(run_conf={"destination": str(tmp_path)})
    assert dag_run.state == "success"
    result = xcom(dag_run, "pull")
    lines = [
        json.loads(line) for line in Path(result["manifest"].removeprefix("file://")).read_text().splitlines()
    ]
    assert len(lines) == replay.count == result["pulled"]
    assert sorted(line["id"] for line in lines) == sorted(replay.ids)
    sample = replay.ids[333]
    assert (tmp_path / sample / "extractions.json").read_bytes() == replay.extractions(sample)
    assert json.loads((tmp_path / sample / "document.json").read_bytes()) == replay.document(sample)
    assert {line["iban"] for line in lines} == {"DE89370400440532013000"}


def test_a_document_with_a_progress_gini_does_not_document(
    serve: Callable[..., Replay], dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    """gini-mobile-android's unknown-processing-state fixture: progress QUEUED. It is waited for
    like PENDING, recorded as pending with its progress, and fails the run by name."""
    replay = serve(count=60, queued={7})
    dag_run = dag_file(PULL_DAG).test(run_conf={"destination": str(tmp_path)})
    assert dag_run.state == "failed"
    manifest = next((tmp_path / "_manifests").glob("*.jsonl"))
    lines = {line["id"]: line for line in map(json.loads, manifest.read_text().splitlines())}
    assert (lines[replay.ids[7]]["outcome"], lines[replay.ids[7]]["progress"]) == ("pending", "QUEUED")
    assert sum(line["outcome"] == "pulled" for line in lines.values()) == 59


@pytest.mark.parametrize(
    ("shape", "message", "codes"),
    [
        ("error-v5-not-found", r"Document \S+ does not exist \(code 2501\)", ("2501",)),
        ("error-message", r"Validation of the request entity failed", ()),
    ],
)
def test_both_error_bodies_reach_the_exception(
    serve: Callable[..., Replay], shape: str, message: str, codes: tuple[str, ...]
) -> None:
    serve(error=shape)
    with pytest.raises(GiniNotFound, match=message) as caught:
        GiniHook("gini_replay", **FAST).get_document("00000000-0000-0000-0000-00000000beef")
    assert caught.value.status == 404
    assert caught.value.codes == codes
    assert caught.value.request_id  # from the body: the replay sends no X-Request-Id header


@pytest.mark.parametrize("token", ["token", "token-without-type"])
def test_token_answers_with_and_without_token_type(serve: Callable[..., Replay], token: str) -> None:
    serve(count=3, token=token)
    assert len(GiniHook("gini_replay", **FAST).list_documents(limit=5)["documents"]) == 3


def test_feedback_falls_back_to_the_documented_put(serve: Callable[..., Replay]) -> None:
    replay = serve(count=2, feedback_methods=("PUT",))
    hook = GiniHook("gini_replay", **FAST)
    hook.send_feedback(replay.ids[0], {"amountToPay": {"value": "12.50:EUR"}})
    hook.send_feedback(replay.ids[1], {"amountToPay": {"value": "1.00:EUR"}})
    verbs = [line.split()[0] for line in replay.log if line.endswith("/extractions/feedback")]
    assert verbs == ["POST", "PUT", "PUT"]
    assert replay.feedback[replay.ids[1]] == [{"extractions": {"amountToPay": {"value": "1.00:EUR"}}}]
