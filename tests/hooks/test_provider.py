"""Provider registration and the ``gini`` connection form, as Airflow itself sees them:
the ProvidersManager, the provider-info JSON schema, the ``airflow`` CLI in a subprocess,
and the API server's connection-form metadata service."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import airflow_provider_gini
from airflow_provider_gini.get_provider_info import connection_type, get_provider_info
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import DEMO_USER, RunningSandbox
from tests.compat import (
    AIRFLOW_V_3_2_PLUS,
    CLI_CONNECTION_TEST_FAILURE_EXIT,
    NO_TASK_RUNTIME_PROVIDERS_MANAGER,
    REQUIRED_EXTRA_TYPE,
    api_server_hook_form_view,
)
from tests.deployment import cli_json

MakeHook = Callable[..., GiniHook]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EXTRA_FIELDS = {
    "client_id": "OAuth client ID",
    "client_secret": "OAuth client secret",
    "user_center_url": "User center URL",
    "api_version": "API version",
}
RELABELING = {"host": "API base URL", "login": "User email", "password": "User password"}


def run_airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The venv's ``airflow`` CLI, with this session's environment (its temporary AIRFLOW_HOME)."""
    return subprocess.run(  # noqa: S603 (a fixed executable, our own arguments)
        [AIRFLOW, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- ProvidersManager ------------------------------------------------------------------------


def test_providers_manager_knows_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-gini" in manager.providers
    provider = manager.providers["airflow-provider-gini"]
    assert provider.version == airflow_provider_gini.__version__
    assert provider.data["package-name"] == "airflow-provider-gini"


@pytest.mark.filterwarnings("ignore:ProvidersManager.hooks is deprecated")
def test_providers_manager_resolves_the_gini_hook() -> None:
    from airflow.providers_manager import ProvidersManager

    info = ProvidersManager().hooks["gini"]
    assert info is not None
    assert info.hook_class_name == "airflow_provider_gini.hooks.gini.GiniHook"
    assert info.package_name == "airflow-provider-gini"
    assert info.connection_id_attribute_name == "gini_conn_id"
    assert info.hook_name == "Gini"
    assert info.connection_testable is True


@pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason=NO_TASK_RUNTIME_PROVIDERS_MANAGER)
def test_task_runtime_providers_manager_resolves_the_gini_hook() -> None:
    """The Task SDK's own registry, which hooks are looked up in inside a running task."""
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    info = ProvidersManagerTaskRuntime().hooks["gini"]
    assert info is not None
    assert info.hook_class_name == "airflow_provider_gini.hooks.gini.GiniHook"
    assert info.connection_testable is True


def test_hook_class_attributes() -> None:
    assert GiniHook.conn_type == "gini"
    assert GiniHook.hook_name == "Gini"
    assert GiniHook.conn_name_attr == "gini_conn_id"
    assert GiniHook.default_conn_name == "gini_default"
    assert GiniHook().gini_conn_id == "gini_default"


# --- provider info against Airflow's schema --------------------------------------------------


@pytest.fixture(scope="module")
def provider_info_schema() -> dict[str, Any]:
    import airflow

    path = Path(airflow.__file__).with_name("provider_info.schema.json")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def test_provider_info_validates_against_airflow_schema(provider_info_schema: dict[str, Any]) -> None:
    jsonschema.validate(get_provider_info(), provider_info_schema)


def test_schema_check_is_not_vacuous(provider_info_schema: dict[str, Any]) -> None:
    broken = copy.deepcopy(get_provider_info())
    del broken["connection-types"][0]["hook-class-name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, provider_info_schema)


def test_provider_info_names_what_exists() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-gini"
    assert info["versions"][0] == airflow_provider_gini.__version__
    entry = connection_type()
    assert entry["hook-class-name"] == f"{GiniHook.__module__}.{GiniHook.__qualname__}"
    assert entry["hook-name"] == GiniHook.hook_name
    for hooks in info["hooks"]:
        for module in hooks["python-modules"]:
            __import__(module)


def test_yaml_form_metadata_agrees_with_the_python_methods() -> None:
    """Airflow renders the YAML metadata when present and falls back to the Python methods:
    both must describe the same form."""
    entry = connection_type()
    yaml_behaviour = entry["ui-field-behaviour"]
    behaviour = GiniHook.get_ui_field_behaviour()
    assert yaml_behaviour["hidden-fields"] == behaviour["hidden_fields"]
    assert yaml_behaviour["relabeling"] == behaviour["relabeling"]
    assert yaml_behaviour["placeholders"] == behaviour["placeholders"]
    assert {name: field["label"] for name, field in entry["conn-fields"].items()} == EXTRA_FIELDS


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_providers_list_shows_the_provider() -> None:
    result = run_airflow("providers", "list", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    providers = {p["package_name"]: p for p in cli_json(result.stdout)}
    assert providers["airflow-provider-gini"]["version"] == airflow_provider_gini.__version__


def test_cli_connections_test_succeeds_against_the_sandbox(gini_connection: RunningSandbox) -> None:
    result = run_airflow(
        "connections",
        "test",
        "gini_default",
        env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled", **gini_connection.connection_env()},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert "Connection success!" in result.stdout
    # The test really went to the sandbox: one password grant, one cheap list call.
    counters = gini_connection.counters()
    assert counters["grants"] == {"password": 1}
    assert counters["routes"]["GET /documents"] == 1


def test_cli_connections_test_fails_with_a_wrong_password(gini_connection: RunningSandbox) -> None:
    conn = gini_connection.connection()
    conn["password"] = "wrong-cli-password-4411"
    result = run_airflow(
        "connections",
        "test",
        "gini_default",
        env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled", "AIRFLOW_CONN_GINI_DEFAULT": json.dumps(conn)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == CLI_CONNECTION_TEST_FAILURE_EXIT, output[-2000:]
    assert "Connection failed!" in result.stdout
    assert "user credentials" in result.stdout
    for secret in ("wrong-cli-password-4411", DEMO_USER.password, conn["extra"]["client_secret"]):
        assert secret not in output
    assert gini_connection.counters()["grants"] == {"password": 1}  # refused once, never retried


# --- the API server's connection-form metadata -----------------------------------------------


def gini_hook_meta() -> Any:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    with api_server_hook_form_view():
        (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "gini"]
    return meta


def test_api_server_form_metadata_extra_fields() -> None:
    meta = gini_hook_meta()
    assert meta.hook_class_name == "airflow_provider_gini.hooks.gini.GiniHook"
    assert meta.hook_name == "Gini"
    extra = meta.extra_fields
    assert set(extra) == set(EXTRA_FIELDS)
    for name, label in EXTRA_FIELDS.items():
        assert extra[name]["schema"]["title"] == label
        assert extra[name]["description"]
    assert extra["client_secret"]["schema"]["format"] == "password"
    assert extra["client_secret"]["schema"]["type"] == REQUIRED_EXTRA_TYPE
    assert extra["client_id"]["schema"]["type"] == REQUIRED_EXTRA_TYPE
    assert "format" not in extra["client_id"]["schema"]
    assert "format" not in extra["user_center_url"]["schema"]
    assert "format" not in extra["api_version"]["schema"]


def test_api_server_form_metadata_standard_fields() -> None:
    fields = gini_hook_meta().standard_fields
    assert fields.url_schema.hidden is True
    assert fields.port.hidden is True
    assert fields.host.hidden is False
    assert fields.host.title == "API base URL"
    assert fields.host.placeholder == "https://pay-api.gini.net"
    assert fields.login.title == "User email"
    assert fields.login.placeholder == "user@example.com"
    assert fields.password.title == "User password"
    assert fields.password.hidden is False


def test_get_ui_field_behaviour() -> None:
    behaviour = GiniHook.get_ui_field_behaviour()
    assert sorted(behaviour["hidden_fields"]) == ["port", "schema"]
    assert behaviour["relabeling"] == RELABELING
    placeholders = behaviour["placeholders"]
    assert placeholders["host"] == "https://pay-api.gini.net"
    assert placeholders["login"] == "user@example.com"
    assert placeholders["client_id"] == "your-gini-client-id"
    assert placeholders["user_center_url"] == "https://user.gini.net"
    assert placeholders["api_version"] == "1"
    # The extra placeholder is valid JSON naming real extras.
    assert set(json.loads(placeholders["extra"])) <= {
        "read_timeout",
        "connect_timeout",
        "max_attempts",
        "max_elapsed",
    }


@pytest.fixture
def fab_free_form_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Airflow's API server does when FAB and WTForms are not installed (as here): it serves
    the Python form widgets through its own stand-in field classes."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService as Meta

    modules = {
        "wtforms": {"StringField": Meta.MockStringField, "PasswordField": Meta.MockPasswordField},
        "flask_babel": {"lazy_gettext": lambda text: text},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {
            "BS3TextFieldWidget": Meta.MockAnyWidget,
            "BS3PasswordFieldWidget": Meta.MockAnyWidget,
        },
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        for attribute, value in attributes.items():
            setattr(module, attribute, value)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.usefixtures("fab_free_form_modules")
def test_python_form_widgets_match_the_yaml_fields() -> None:
    widgets = GiniHook.get_connection_form_widgets()
    assert set(widgets) == set(EXTRA_FIELDS)
    dumped = {name: widget.param.dump()["schema"] for name, widget in widgets.items()}
    assert {name: schema["title"] for name, schema in dumped.items()} == EXTRA_FIELDS
    descriptions = {name: widget.param.dump()["description"] for name, widget in widgets.items()}
    assert descriptions == {name: f["description"] for name, f in connection_type()["conn-fields"].items()}
    assert dumped["client_secret"].get("format") == "password"
    assert [name for name, schema in dumped.items() if schema.get("format") == "password"] == [
        "client_secret"
    ]


# --- hook.test_connection --------------------------------------------------------------------


@pytest.mark.parametrize("gini_sandbox_profile", ["pay-api", "legacy"])
def test_hook_test_connection_succeeds(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    ok, message = make_hook().test_connection()
    assert ok is True, message
    assert message.startswith(f"Connected to Gini as {DEMO_USER.email}")
    # Only a server that pages by offset says how many documents there are.
    legacy = gini_connection.state.config.api.listing == "legacy"
    assert (f": {len(gini_connection.documents())} documents" in message) is legacy
    assert gini_connection.counters()["routes"]["GET /documents"] == 1


def test_hook_test_connection_fails_with_a_wrong_password(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    conn = gini_connection.connection()
    conn["password"] = "wrong-password-5150"
    set_connection("gini_wrong", conn)
    ok, message = make_hook("gini_wrong").test_connection()
    assert ok is False
    assert "user credentials" in message
    for secret in ("wrong-password-5150", DEMO_USER.password, conn["extra"]["client_secret"]):
        assert secret not in message
    assert gini_connection.counters()["grants"] == {"password": 1}
    assert gini_connection.counters()["routes"].get("GET /documents", 0) == 0


def test_hook_test_connection_reports_a_config_error(set_connection: Callable[..., None]) -> None:
    set_connection(
        "gini_no_client",
        {"conn_type": "gini", "login": "user@example.com", "password": "pw-not-shown-123", "extra": {}},
    )
    ok, message = GiniHook("gini_no_client").test_connection()
    assert ok is False
    assert "client_id" in message
    assert "pw-not-shown-123" not in message


def test_hook_test_connection_when_gini_is_unreachable(
    gini_connection: RunningSandbox, make_hook: MakeHook, set_connection: Callable[..., None]
) -> None:
    conn = gini_connection.connection()
    conn["host"] = conn["extra"]["user_center_url"] = "http://127.0.0.1:9"  # discard port: refused
    set_connection("gini_unreachable", conn)
    ok, message = make_hook("gini_unreachable", max_attempts=2).test_connection()
    assert ok is False
    assert "127.0.0.1:9" in message
    assert DEMO_USER.password not in message
