from __future__ import annotations

import shutil
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.compat import dag_bag
from tests.conftest import DAGS_FOLDER

EXAMPLES = Path(__file__).parents[2] / "example_dags"


@pytest.fixture
def dag_file(airflow_db: Path) -> Callable[..., Any]:
    """Writes a DAG file into the DAGs folder (dag.test() runs only DAGs of a bundle) and
    returns the parsed DAG. ``{dag_id}`` in the source is replaced by a fresh id."""

    def write(source: str, dag_id: str | None = None) -> Any:
        dag_id = dag_id or f"test_{uuid.uuid4().hex[:12]}"
        path = DAGS_FOLDER / f"{dag_id}.py"
        path.write_text(textwrap.dedent(source).replace("{dag_id}", dag_id))
        bag = dag_bag(str(path))
        assert bag.import_errors == {}, bag.import_errors
        return bag.get_dag(dag_id)

    return write


@pytest.fixture
def example_dag(airflow_db: Path) -> Callable[[str], Any]:
    """An example DAG, copied into the DAGs folder under a fresh id so its runs start from scratch."""
    samples = DAGS_FOLDER / "sample_documents"
    if not samples.exists():
        shutil.copytree(EXAMPLES / "sample_documents", samples)

    def load(name: str) -> Any:
        dag_id = f"{name}_{uuid.uuid4().hex[:8]}"
        source = (EXAMPLES / f"{name}.py").read_text().replace(f'dag_id="{name}"', f'dag_id="{dag_id}"')
        path = DAGS_FOLDER / f"{dag_id}.py"
        path.write_text(source)
        bag = dag_bag(str(path))
        assert bag.import_errors == {}, bag.import_errors
        return bag.get_dag(dag_id)

    return load


def task_states(run: Any) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {
            f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state) for ti in rows
        }


def xcom(run: Any, task_id: str, map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(
                dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value", map_index=map_index
            )
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
