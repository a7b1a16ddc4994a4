"""The benchmark suite still runs (quick mode). No timing is asserted: figures are ratios taken
in one run on a shared machine, and belong in benchmarks/RESULTS.md, not in a test verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home")}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| (")]
    labels = {line.split(" ", 2)[1] for line in table}
    assert labels == {"(a)", "(b)", "(c)", "(d)", "(e)", "(f)"}
    assert all(line.count("|") == 5 for line in table)
    for profile in ("pay-api", "legacy"):
        assert f"| (b) token grants per run ({profile}, with extractions) | 1 |" in result.stdout
        assert f"(d) incremental run, nothing new ({profile}): requests" in result.stdout
