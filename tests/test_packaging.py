"""The provider as a user gets it: a wheel and an sdist that twine accepts, and a wheel that,
installed into a clean venv, shows up in `airflow providers list` and runs the example DAGs'
imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]

pytestmark = pytest.mark.timeout(900)


def run(*cmd: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kwargs)  # noqa: S603


def test_wheel_installs_into_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_provider_gini/py.typed" in names
    assert any(n.endswith("entry_points.txt") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The Airflow this suite runs on, so each nox session checks the wheel on its own minor.
    airflow = f"apache-airflow=={version('apache-airflow')}"
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[sandbox]", airflow, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    listed = run(env_dir / "bin" / "airflow", "providers", "list", cwd=tmp_path, env=env)
    assert "airflow-provider-gini" in listed.stdout

    # The example DAGs import the installed wheel (cwd is outside the source tree).
    check = textwrap.dedent(
        f"""
        import airflow_provider_gini
        assert "site-packages" in airflow_provider_gini.__file__
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # its home before Airflow 3.2
            from airflow.models.dagbag import DagBag
        bag = DagBag({str(ROOT / "example_dags")!r})
        assert bag.import_errors == {{}}, bag.import_errors
        print(sorted(bag.dag_ids))
        """
    )
    imported = run(python, "-c", check, cwd=tmp_path, env=env)
    assert "gini_daily_pull" in imported.stdout
    assert "gini_mapped_uploads" in imported.stdout
