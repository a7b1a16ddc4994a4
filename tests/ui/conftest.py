"""A real ``airflow api-server`` and a headless Debian Chromium for the browser tests.

The server gets its own AIRFLOW_HOME and SQLite DB so nothing it writes reaches the rest of the
session; the simple auth manager in all-admins mode lets the browser in without a login.
scripts/test.sh installs Chromium when run as root; without it these tests skip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deployment import airflow_deployment, answers, free_port
from tests.ui.helpers import CHROMEDRIVER, CHROMIUM, INSTALL_HINT, START_TIMEOUT, AirflowUI


@pytest.fixture(scope="session")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with airflow_deployment(tmp_path_factory.mktemp("ui-airflow-home"), {}) as deployment:
        deployment.start(
            "api-server",
            "api-server",
            # The UI needs only the core app; the task execution API would just slow the start.
            "--apps",
            "core",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        )
        deployment.wait_for("healthy api-server", answers(f"{url}/api/v2/monitor/health"), START_TIMEOUT)
        yield AirflowUI(url, deployment)


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is missing; {INSTALL_HINT}")
    from selenium.webdriver.chrome.service import Service

    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing; {INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        # Without these Chromium keeps calling Google, and the closed network refuses it.
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Tall enough for the whole dialog, so the screenshot shows every field.
        "--window-size=1280,1400",
    ):
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from downloading one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
