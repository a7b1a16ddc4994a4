"""What the browser tests share with their fixtures: the server handle and the time limits."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.deployment import Deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "run scripts/test.sh as root, or: apt-get install --no-install-recommends chromium chromium-driver"
)
# A loaded 2-core machine needs ~15 s to start the API server and ~10 s for the UI's first paint.
START_TIMEOUT = 120.0
UI_TIMEOUT = 60.0


@dataclass(frozen=True)
class AirflowUI:
    url: str
    deployment: Deployment

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.deployment.airflow(*args)
