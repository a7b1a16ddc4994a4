"""Pulls and waits side by side (#14, first part): mapped pulls into one destination keep their
own manifests, operators never change a ``hook_params`` dict they share, and every deferral
carries Airflow's own timeout."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.operators.conftest import task_states, xcom

UTC = timezone.utc


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


MAPPED_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator.partial(
        task_id="pull", destination="{{ dag_run.conf['destination'] }}", max_workers=4
    ).expand_kwargs([
        {"created_after": "2026-01-06T00:00:00+00:00", "created_before": "2026-01-07T00:00:00+00:00"},
        {"created_after": "2026-01-07T00:00:00+00:00", "created_before": "2026-01-08T00:00:00+00:00"},
    ])
"""


def test_mapped_pulls_into_one_destination_keep_their_own_manifests(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag_run = dag_file(MAPPED_DAG).test(run_conf={"destination": str(tmp_path)})
    assert dag_run.state == "success", task_states(dag_run)
    results = [xcom(dag_run, "pull", map_index=i) for i in (0, 1)]
    assert results[0]["manifest"] != results[1]["manifest"]
    for result, (start, end) in zip(results, [(day(6), day(7)), (day(7), day(8))], strict=True):
        lines = Path(result["manifest"].removeprefix("file://")).read_text().splitlines()
        truth = {d["id"] for d in gini_connection.documents(created_after=ms(start), created_before=ms(end))}
        assert {json.loads(line)["id"] for line in lines} == truth
    manifests = sorted(p.name for p in (tmp_path / "_manifests").iterdir())
    assert len(manifests) == 2, manifests
    assert all(".pull.0." in m or ".pull.1." in m for m in manifests), manifests
    assert not [p for p in tmp_path.rglob("*") if ".gini-tmp-" in p.name]


def test_a_shared_hook_params_dict_is_never_changed() -> None:
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    shared = {"read_timeout": 5, "pool_size": 4}  # e.g. one dict in default_args
    small = GiniPullDocumentsOperator(task_id="a", destination="/tmp/x", max_workers=2, hook_params=shared)
    large = GiniPullDocumentsOperator(task_id="b", destination="/tmp/x", max_workers=16, hook_params=shared)
    assert shared == {"read_timeout": 5, "pool_size": 4}
    assert (small.hook_params["pool_size"], large.hook_params["pool_size"]) == (4, 18)
    assert small.hook_params["read_timeout"] == large.hook_params["read_timeout"] == 5


def test_every_deferral_carries_an_airflow_side_timeout(
    gini_connection: RunningSandbox, tmp_path: Path
) -> None:
    """Without a triggerer the trigger never fires; Airflow's deferral timeout still ends the
    task, a little after the trigger's own timeout (whose event carries the better message)."""
    from airflow_provider_gini._compat import TaskDeferred
    from airflow_provider_gini.operators.base import DEFERRAL_GRACE
    from airflow_provider_gini.operators.documents import GiniUploadDocumentOperator
    from airflow_provider_gini.sensors.documents import GiniDocumentProcessedSensor

    gini_connection.settings(processing_delay=3600.0)
    upload = tmp_path / "invoice.pdf"
    upload.write_bytes(b"%PDF-1.4 test\n")
    operator = GiniUploadDocumentOperator(
        task_id="upload", file=str(upload), wait_for_processing=True, deferrable=True, processing_timeout=120
    )
    with pytest.raises(TaskDeferred) as uploaded:
        operator.execute({"run_id": "manual_defer"})  # type: ignore[arg-type]
    assert uploaded.value.timeout is not None
    assert uploaded.value.timeout.total_seconds() == 120 + DEFERRAL_GRACE
    document_id = uploaded.value.trigger.document_id
    sensor = GiniDocumentProcessedSensor(
        task_id="wait", document_id=document_id, deferrable=True, timeout=300
    )
    with pytest.raises(TaskDeferred) as waited:
        sensor.execute({"run_id": "manual_defer"})  # type: ignore[arg-type]
    assert waited.value.timeout is not None
    assert waited.value.timeout.total_seconds() == 300 + DEFERRAL_GRACE


def asset_events(dag_id: str) -> list[tuple[str, int]]:
    """(asset URI, source map index) of each Asset event the DAG's tasks emitted, from Airflow's
    metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.uri, AssetEvent.source_map_index)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_dag_id == dag_id)
            .all()
        )
        return sorted((uri, index) for uri, index in rows)


def test_a_mapped_pull_emits_an_asset_event_per_instance(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    dag = dag_file(MAPPED_DAG)
    [alias] = dag.get_task("pull").outlets  # declared where the DAG is parsed, by partial()
    assert alias.name == f"gini-pull-destination:{dag.dag_id}/pull"
    dag_run = dag.test(run_conf={"destination": str(tmp_path)})
    assert dag_run.state == "success", task_states(dag_run)
    events = asset_events(dag.dag_id)
    print(f"FIGURE mapped pull, 2 instances: {len(events)} Asset event(s) (before #14: 0)")
    assert events == [(f"file://{tmp_path}", 0), (f"file://{tmp_path}", 1)]


CONNECTION_DAG = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniPullDocumentsOperator(
        task_id="pull", destination="file://{{ dag_run.conf['destination'] }}", destination_conn_id="local_files",
        created_after="2026-01-06T00:00:00+00:00", created_before="2026-01-07T00:00:00+00:00",
    )
"""


def test_asset_lineage_and_manifest_uris_never_name_the_connection(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_gini.operators.lineage import dataset_name

    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_FILES", '{"conn_type": "fs"}')
    dag = dag_file(CONNECTION_DAG)
    dag_run = dag.test(run_conf={"destination": str(tmp_path)})
    assert dag_run.state == "success", task_states(dag_run)
    result = xcom(dag_run, "pull")
    uris = [uri for uri, _ in asset_events(dag.dag_id)] + [result["manifest"]]
    print(
        f"FIGURE destination_conn_id in URIs: {sum('local_files' in u for u in uris)} of {len(uris)} (before #14: 2 of 2)"
    )
    assert uris == [f"file://{tmp_path}", f"file://{tmp_path}/_manifests/{Path(result['manifest']).name}"]
    assert Path(result["manifest"].removeprefix("file://")).is_file()
    assert dataset_name(uris[0]) == ("file", str(tmp_path))


def test_alias_names_are_unique_per_dag_and_task() -> None:
    from airflow.sdk import DAG, TaskGroup

    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    names = []
    for dag_id in ("first", "second"):
        with DAG(dag_id, schedule=None):
            plain = GiniPullDocumentsOperator(task_id="pull", destination="{{ params.d }}")
            with TaskGroup("daily"):
                mapped = GiniPullDocumentsOperator.partial(
                    task_id="pull", destination="relative/path"
                ).expand(created_after=["2026-01-01"])
            names += [o.name for o in [*plain.outlets, *mapped.outlets]]
    assert names == [
        "gini-pull-destination:first/pull",
        "gini-pull-destination:first/daily.pull",
        "gini-pull-destination:second/pull",
        "gini-pull-destination:second/daily.pull",
    ]
    # Where the DAG file alone tells where the data lands, the outlet is that Asset, without the
    # user part of the URL (where a connection id would be).
    fixed = GiniPullDocumentsOperator(task_id="p", destination="s3://aws_default@bucket/gini/")
    assert [str(o.uri) for o in fixed.outlets] == ["s3://bucket/gini"]
