"""What the browser tests share with their fixtures: the server handle and the time limits."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "run scripts/test.sh as root, or: apt-get install --no-install-recommends chromium chromium-driver"
)
REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# A loaded 2-core machine needs ~15 s to start the API server and ~10 s for the UI's first paint.
START_TIMEOUT = 120.0
UI_TIMEOUT = 60.0


@dataclass(frozen=True)
class AirflowUI:
    url: str
    env: dict[str, str]
    log: Path

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``airflow`` CLI against this server's AIRFLOW_HOME."""
        return subprocess.run(  # noqa: S603 (the venv's airflow, our own arguments)
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"
