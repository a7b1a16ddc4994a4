"""The Gini connection form as Airflow's React UI really draws it, in headless Chromium against a
real ``airflow api-server``: what the provider metadata promises must reach the page.

Set GINI_UPDATE_SCREENSHOT=1 to refresh docs/img/connection-form.png from the run; otherwise
the screenshot goes to the test's temporary folder, so test runs leave the checkout clean."""

from __future__ import annotations

import importlib.util
import io
import json
import os
from typing import Any

import pytest
import requests

from airflow_provider_gini.client.settings import DEFAULT_API_URL, DEFAULT_USER_CENTER_URL
from airflow_provider_gini.get_provider_info import connection_type
from airflow_provider_gini.hooks.gini import GiniHook
from tests.compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS
from tests.deployment import REPO, cli_json
from tests.ui.helpers import INSTALL_HINT, UI_TIMEOUT, AirflowUI

pytest.importorskip("selenium", reason=f"selenium is missing; {INSTALL_HINT}")

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

GINI = connection_type()
BEHAVIOUR = GINI["ui-field-behaviour"]
EXTRA_FIELDS: dict[str, dict[str, Any]] = GINI["conn-fields"]
# The labels Airflow's UI gives the standard fields when a provider does not relabel them.
DEFAULT_LABELS = {
    "host": "Host",
    "schema": "Schema",
    "port": "Port",
    "login": "Login",
    "password": "Password",
}
SCREENSHOT = REPO / "docs" / "img" / "connection-form.png"
# Before 3.2 Airflow builds every provider's connection form from wtforms fields, and wtforms
# comes with Flask-AppBuilder (the FAB auth manager): an api-server with the simple auth manager
# and no FAB draws the plain form for every connection type, Gini's included.
pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS and importlib.util.find_spec("wtforms") is None,
    reason="Airflow < 3.2 without Flask-AppBuilder (wtforms) draws no provider's connection form",
)
DIALOG = "//div[@role='dialog']"
# Airflow 3.2's React form ignores ``format: password`` on extra fields and draws the client secret
# as a text input while it is typed; 3.3 masks it (apache/airflow#70473). Both show a stored
# secret only as "***" when the connection is edited, which the second test checks.
MASKS_SECRET_EXTRAS = not AIRFLOW_V_3_2_PLUS or AIRFLOW_V_3_3_PLUS
SECRET_EXTRA_INPUT = "password" if MASKS_SECRET_EXTRAS else "text"


def field_xpath(label: str) -> str:
    assert "'" not in label
    # The first text node: a required field's label ends with a "*" span.
    return f"{DIALOG}//div[@role='group'][.//label[normalize-space(text()[1])='{label}']]"


class ConnectionForm:
    """The Add Connection dialog, reached the way a user does: connections list, Add Connection."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url
        self.wait = WebDriverWait(driver, UI_TIMEOUT)

    def open(self, conn_type: str = "Gini") -> None:
        self.driver.get(f"{self.url}/connections")
        add = (By.XPATH, "//button[normalize-space(.)='Add Connection']")
        self.wait.until(ec.element_to_be_clickable(add)).click()
        self.wait.until(ec.visibility_of_element_located((By.XPATH, field_xpath("Connection Type"))))
        self.input("Connection Type").send_keys(conn_type)
        option = f"//div[starts-with(@id, 'react-select') and contains(@id, '-option-')][normalize-space(.)='{conn_type}']"
        self.wait.until(ec.element_to_be_clickable((By.XPATH, option))).click()
        # The standard fields section opens by itself once the type is known.
        self.wait.until(ec.visibility_of_element_located((By.NAME, "host")))

    def edit(self, conn_id: str) -> None:
        self.driver.get(f"{self.url}/connections")
        row = f"//tr[.//td[normalize-space(.)='{conn_id}']]"
        edit = (By.XPATH, f"{row}//button[@aria-label='Edit Connection']")
        self.wait.until(ec.element_to_be_clickable(edit)).click()
        self.wait.until(ec.visibility_of_element_located((By.NAME, "host")))

    def open_section(self, title: str) -> None:
        trigger = f"{DIALOG}//button[@data-part='item-trigger'][normalize-space(.)='{title}']"
        self.wait.until(ec.element_to_be_clickable((By.XPATH, trigger))).click()
        self.wait.until(
            ec.visibility_of_element_located((By.XPATH, f"{trigger}/following-sibling::*[@role='region']"))
        )

    def input(self, label: str) -> WebElement:
        return self.driver.find_element(By.XPATH, f"{field_xpath(label)}//*[self::input or self::textarea]")

    def has_label(self, label: str) -> bool:
        return bool(self.driver.find_elements(By.XPATH, field_xpath(label)))

    def visible_label(self, label: str) -> bool:
        return any(e.is_displayed() for e in self.driver.find_elements(By.XPATH, field_xpath(label)))

    def helper_text(self, label: str) -> str:
        return str(
            self.driver.find_element(By.XPATH, f"{field_xpath(label)}//*[@data-part='helper-text']").text
        )

    def dialog_png(self) -> bytes:
        return bytes(self.driver.find_element(By.XPATH, DIALOG).screenshot_as_png)

    def save(self) -> None:
        save = self.driver.find_element(By.XPATH, f"{DIALOG}//button[normalize-space(.)='Save']")
        self.wait.until(lambda _: save.is_enabled())
        save.click()
        self.wait.until(ec.invisibility_of_element_located((By.XPATH, DIALOG)))


@pytest.fixture
def form(airflow_ui: AirflowUI, chrome: WebDriver) -> ConnectionForm:
    # This order quits the browser before the server stops, so no open connection delays its exit.
    form = ConnectionForm(chrome, airflow_ui.url)
    form.open()
    return form


def side_by_side(*pngs: bytes) -> bytes:
    from PIL import Image

    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    gap = 24
    sheet = Image.new(
        "RGB",
        (sum(i.width for i in images) + gap * (len(images) + 1), max(i.height for i in images) + 2 * gap),
        "#e4e7eb",
    )
    x = gap
    for image in images:
        sheet.paste(image, (x, gap))
        x += image.width + gap
    out = io.BytesIO()
    sheet.save(out, "PNG", optimize=True)
    return out.getvalue()


def test_gini_form_shows_the_provider_fields(form: ConnectionForm, tmp_path: Any) -> None:
    form.input("Connection ID").send_keys("gini_default")
    # Standard fields: relabelled, with the provider's placeholders; schema and port hidden.
    for name, label in BEHAVIOUR["relabeling"].items():
        assert form.visible_label(label), label
        assert form.input(label).get_attribute("name") == name
        assert form.input(label).get_attribute("placeholder") == BEHAVIOUR["placeholders"].get(name, "")
    assert form.input("API base URL").get_attribute("placeholder") == DEFAULT_API_URL
    assert form.input("User email").get_attribute("placeholder") == "user@example.com"
    for name in BEHAVIOUR["hidden-fields"]:
        assert not form.driver.find_elements(By.NAME, name), name
        assert not form.has_label(DEFAULT_LABELS[name]), name
    for name in BEHAVIOUR["relabeling"]:
        assert not form.has_label(DEFAULT_LABELS[name]), name
    assert form.input("User password").get_attribute("type") == "password"
    assert form.input("User email").get_attribute("type") == "text"
    standard_png = form.dialog_png()

    # Extra fields: the provider's labels and help texts; only the client secret is masked.
    form.open_section("Extra Fields")
    for name, field in EXTRA_FIELDS.items():
        assert form.visible_label(field["label"]), field["label"]
        element = form.input(field["label"])
        assert element.get_attribute("id") == f"element_{name}"
        assert form.helper_text(field["label"]) == field["description"]
        is_secret = field["schema"].get("format") == "password"
        assert (element.get_attribute("type") == "password") is (is_secret and MASKS_SECRET_EXTRAS), name
    assert form.input("OAuth client secret").get_attribute("type") == SECRET_EXTRA_INPUT
    assert form.input("OAuth client ID").get_attribute("type") != "password"
    # Airflow 3's form draws no placeholder for extra fields, so the defaults live in the help texts.
    assert DEFAULT_USER_CENTER_URL in form.helper_text("User center URL")
    # With the extra fields open the standard ones fold away: one image per section.
    form.input("OAuth client ID").send_keys("your-gini-client-id")
    form.input("OAuth client secret").send_keys("a-client-secret")
    extra_png = form.dialog_png()

    image = side_by_side(standard_png, extra_png)
    (tmp_path / SCREENSHOT.name).write_bytes(image)
    if os.environ.get("GINI_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(image)


def test_connection_saved_from_the_form_works_with_the_hook(
    form: ConnectionForm, airflow_ui: AirflowUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fields left blank in the form are stored as nulls; the hook must read those as defaults."""
    form.input("Connection ID").send_keys("gini_from_ui")
    form.input("User email").send_keys("user@example.com")
    form.input("User password").send_keys("ui-user-password")
    form.open_section("Extra Fields")
    form.input("OAuth client ID").send_keys("ui-client")
    form.input("OAuth client secret").send_keys("ui-client-secret")
    form.save()

    shown = requests.get(f"{airflow_ui.url}/api/v2/connections/gini_from_ui", timeout=30)
    assert shown.status_code == 200, shown.text
    assert shown.json()["conn_type"] == "gini"
    # The API hands the client secret back masked, like the password.
    assert "ui-client-secret" not in shown.text
    assert "ui-user-password" not in shown.text

    # Reopened for editing, the form must not show either stored secret.
    form.edit("gini_from_ui")
    assert form.input("User email").get_attribute("value") == "user@example.com"
    assert form.input("User password").get_attribute("value") != "ui-user-password"
    form.open_section("Extra Fields")
    assert form.input("OAuth client ID").get_attribute("value") == "ui-client"
    assert form.input("OAuth client secret").get_attribute("value") != "ui-client-secret"

    result = airflow_ui.airflow("connections", "get", "gini_from_ui", "--output", "json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (stored,) = cli_json(result.stdout)
    assert stored["login"] == "user@example.com"
    assert stored["password"] == "ui-user-password"
    assert stored["extra_dejson"] == {
        "client_id": "ui-client",
        "client_secret": "ui-client-secret",
        "user_center_url": None,
        "api_version": None,
    }

    conn = {key: stored[key] for key in ("conn_type", "host", "login", "password")}
    monkeypatch.setenv("AIRFLOW_CONN_GINI_FROM_UI", json.dumps({**conn, "extra": stored["extra_dejson"]}))
    settings = GiniHook("gini_from_ui").settings()
    assert settings.client_id == "ui-client"
    assert settings.client_secret == "ui-client-secret"
    assert settings.username == "user@example.com"
    assert settings.api_url == DEFAULT_API_URL
    assert settings.user_center_url == DEFAULT_USER_CENTER_URL
    assert settings.api_version == 1
