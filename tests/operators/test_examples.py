"""The example DAGs parse and run green against the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.compat import dag_bag
from tests.operators.conftest import EXAMPLES, task_states, xcom


def test_examples_parse_without_import_errors(airflow_db: Path) -> None:
    bag = dag_bag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert {"gini_daily_pull", "gini_upload_and_extract", "gini_mapped_uploads", "gini_backfill"} <= set(
        bag.dag_ids
    )
    pull = bag.get_dag("gini_daily_pull")
    assert pull.catchup is True
    assert pull.max_active_runs == 1
    # Whoever may trigger a run must not choose where the account's invoices are written.
    assert "destination" not in pull.params
    assert pull.get_task("pull_documents").destination == "{{ gini_destination }}"  # a macro, not conf


def test_daily_pull(
    gini_connection: RunningSandbox,
    example_dag: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination, chosen = tmp_path / "configured", tmp_path / "chosen-by-the-trigger"
    monkeypatch.setenv("GINI_DESTINATION", str(destination))  # the deployment's setting
    dag = example_dag("gini_daily_pull")
    summaries = []
    for day in (6, 7, 8):
        # A destination in the run's conf, as anyone who may trigger the DAG could send, is ignored.
        dag_run = dag.test(
            logical_date=datetime(2026, 1, day, tzinfo=timezone.utc), run_conf={"destination": str(chosen)}
        )
        assert dag_run.state == "success", task_states(dag_run)
        summaries.append(xcom(dag_run, "summarise"))
    assert not chosen.exists()
    assert len(list((destination / "_manifests").glob("*.jsonl"))) == 3
    assert [s["window"][1] for s in summaries] == [f"2026-01-0{d}T00:00:00+00:00" for d in (6, 7, 8)]
    for summary in summaries:
        assert summary["counts"]["pulled"] > 0
        assert all(total.endswith(":EUR") for total in summary["totals"].values())
    pulled = sum(s["counts"]["pulled"] + s["counts"]["errored"] for s in summaries)
    assert pulled == len(
        gini_connection.documents(
            created_before=int(datetime(2026, 1, 8, tzinfo=timezone.utc).timestamp() * 1000)
        )
    )


def test_upload_and_extract(gini_connection: RunningSandbox, example_dag: Callable[[str], Any]) -> None:
    gini_connection.settings(processing_delay=1.0)
    dag_run = example_dag("gini_upload_and_extract").test()
    assert dag_run.state == "success", task_states(dag_run)
    document_id = xcom(dag_run, "upload")
    stored = gini_connection.document(document_id)
    assert stored["name"] == "rechnung-sample-1.pdf"
    [feedback] = stored["feedback"]
    assert (
        feedback["extractions"]["amountToPay"]["value"]
        == stored["extractions"]["extractions"]["amountToPay"]["value"]
    )


def test_mapped_uploads(gini_connection: RunningSandbox, example_dag: Callable[[str], Any]) -> None:
    before = len(gini_connection.documents())
    dag_run = example_dag("gini_mapped_uploads").test()
    assert dag_run.state == "success", task_states(dag_run)
    states = task_states(dag_run)
    assert [k for k in states if k.startswith("upload[")] == ["upload[0]", "upload[1]", "upload[2]"]
    assert len(gini_connection.documents()) == before + 3
    lines = xcom(dag_run, "report")
    assert len(lines) == 3
    assert all(" to " in line and "(DE" in line for line in lines)


def test_backfill_in_shards_pulls_every_document_once(
    gini_connection: RunningSandbox,
    example_dag: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GINI_DESTINATION", str(tmp_path))
    start, end = datetime(2026, 1, 5, tzinfo=timezone.utc), datetime(2026, 1, 10, tzinfo=timezone.utc)
    # Documents on the shard boundaries (midnights) and a millisecond before each: each in one shard.
    for day in range(6, 10):
        midnight = int(datetime(2026, 1, day, tzinfo=timezone.utc).timestamp() * 1000)
        gini_connection.insert_documents(count=2, creationDate=midnight - 1, spacingMs=1)
    dag_run = example_dag("gini_backfill").test(
        run_conf={"start": start.isoformat(), "end": end.isoformat(), "shard": "day"}
    )
    assert dag_run.state == "success", task_states(dag_run)
    states = task_states(dag_run)
    assert sorted(k for k in states if k.startswith("pull[")) == [f"pull[{i}]" for i in range(5)]
    truth = {
        d["id"]
        for d in gini_connection.documents(
            created_after=int(start.timestamp() * 1000), created_before=int(end.timestamp() * 1000)
        )
    }
    lines = [
        json.loads(line)
        for manifest in sorted((tmp_path / "_manifests").glob("*.jsonl"))
        for line in manifest.read_text().splitlines()
    ]
    assert len(list((tmp_path / "_manifests").glob("*.jsonl"))) == 5  # one per shard
    ids = [line["id"] for line in lines]
    assert sorted(ids) == sorted(truth)  # every document, in exactly one shard
    summary = xcom(dag_run, "check")
    assert summary["shards"] == 5
    assert summary["pulled"] + summary["errored"] == len(truth)
