"""GiniHook: the ``gini`` connection type over the pure client in ``airflow_provider_gini.client``."""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_gini._compat import BaseHook, mask_secret
from airflow_provider_gini.client import ClientSettings, GiniError, GiniSession, RetrySettings
from airflow_provider_gini.client.api import GiniAPI
from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.client.settings import DEFAULT_API_URL, DEFAULT_USER_CENTER_URL
from airflow_provider_gini.get_provider_info import connection_type

# Optional extras, with the type each must have; hook keyword arguments of the same names win.
NUMERIC_EXTRAS: dict[str, type] = {
    "connect_timeout": float,
    "read_timeout": float,
    "request_deadline": float,
    "token_deadline": float,
    "download_deadline": float,
    "max_json_bytes": int,
    "max_error_bytes": int,
    "max_download_bytes": int,
    "refresh_leeway": float,
    "pool_size": int,
    "max_requests_per_second": float,
    "max_attempts": int,
    "max_elapsed": float,
    "backoff_initial": float,
    "backoff_max": float,
    "retry_after_cap": float,
}
RETRY_FIELDS = ("max_attempts", "max_elapsed", "backoff_initial", "backoff_max", "retry_after_cap")


class GiniHook(BaseHook, GiniAPI):  # type: ignore[misc,unused-ignore]
    """Talks to Gini's Pay API on behalf of the user in an Airflow connection of type ``gini``.

    Connection: Login is the user's email, Password the user's password, Host the API base URL
    (default https://pay-api.gini.net; a bare host means https). Extras: ``client_id`` and
    ``client_secret`` (required), ``user_center_url`` (default https://user.gini.net),
    ``api_version`` (default 1), and optionally ``connect_timeout``, ``read_timeout``,
    ``request_deadline``, ``token_deadline``, ``download_deadline``, ``max_json_bytes``,
    ``max_error_bytes``, ``max_download_bytes``, ``max_attempts``, ``max_elapsed``,
    ``backoff_initial``, ``backoff_max``, ``retry_after_cap``, ``refresh_leeway``, ``pool_size``,
    ``max_requests_per_second`` (a ceiling on the hook's request rate; without it the hook paces
    itself only once Gini answers 429) and ``verify`` (false or a CA bundle).

    Every API method (``list_documents``, ``iter_documents``, ``get_document``,
    ``upload_document``, ``wait_for_processing``, ...) comes from
    :class:`~airflow_provider_gini.client.api.GiniAPI`. One hook holds one pooled session and
    one token for all its calls, threads included. No I/O happens before the first call.
    """

    conn_name_attr = "gini_conn_id"
    default_conn_name = "gini_default"
    conn_type = "gini"
    hook_name = "Gini"

    def __init__(self, gini_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(NUMERIC_EXTRAS) - {"logger_name"}
        if unknown:
            raise TypeError(f"GiniHook got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        super().__init__(logger_name=kwargs.pop("logger_name", None))
        self.gini_conn_id = gini_conn_id
        self.overrides = kwargs
        self._session: GiniSession | None = None
        self._lock = threading.Lock()

    @property
    def gini(self) -> GiniSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = GiniSession(self.settings(), on_secret=mask_secret)
        return self._session

    def settings(self) -> ClientSettings:
        """The client settings from the connection, checked; raises GiniConfigError naming what to fix."""
        conn = self.get_connection(self.gini_conn_id)
        extra = conn.extra_dejson
        for secret in (conn.password, extra.get("client_secret")):
            if isinstance(secret, str) and secret:
                mask_secret(secret)
        numbers: dict[str, Any] = {
            name: _number(name, extra.get(name), kind) for name, kind in NUMERIC_EXTRAS.items()
        }
        numbers.update({k: _number(k, v, NUMERIC_EXTRAS[k]) for k, v in self.overrides.items()})
        numbers = {k: v for k, v in numbers.items() if v is not None}
        retry = RetrySettings(**{k: numbers.pop(k) for k in RETRY_FIELDS if k in numbers})
        return ClientSettings(
            client_id=_text(extra.get("client_id")),
            client_secret=_text(extra.get("client_secret")),
            username=_text(conn.login),
            password=_text(conn.password),
            api_url=_api_url(conn.host, conn.port, conn.schema),
            user_center_url=_text(extra.get("user_center_url")) or DEFAULT_USER_CENTER_URL,
            api_version=_api_version(extra.get("api_version")),
            verify=_verify(extra.get("verify", True)),
            retry=retry,
            **numbers,
        )

    def get_conn(self) -> Any:
        """A pooled ``requests.Session`` that attaches the current bearer token to every request,
        for requests of your own (the hook's methods send through their own pools)."""
        return self.gini.http

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def test_connection(self) -> tuple[bool, str]:
        try:
            page = self.list_documents(limit=1)
        except GiniError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: could not reach Gini"
        # Only servers that page by offset send a totalCount (docs/gini-compat.md).
        total = page.get("totalCount")
        count = f": {total} documents" if isinstance(total, int) else ""
        return True, f"Connected to Gini as {self.gini.settings.username}{count}"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        # Airflow < 3.2 drops the hook's whole form, field behaviour included, when this raises
        # ImportError. Without Flask-AppBuilder (e.g. the simple auth manager) there is no wtforms
        # either: no extra fields then, but the relabels, placeholders and hidden fields still apply.
        try:
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import PasswordField, StringField
        except ImportError:
            return {}

        # Before Airflow 3.2 the connection form comes from these widgets alone, not from the
        # provider info's conn-fields: they are built from there, so both say the same.
        def widget(spec: dict[str, Any]) -> Any:
            secret = spec["schema"].get("format") == "password"
            field, drawn = (
                (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
            )
            return field(lazy_gettext(spec["label"]), description=spec["description"], widget=drawn())

        return {name: widget(spec) for name, spec in connection_type(cls.conn_type)["conn-fields"].items()}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        # The provider info's ui-field-behaviour, with the key spellings the Python method uses.
        behaviour = connection_type(cls.conn_type)["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(name: str, value: Any, kind: type) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = kind(value)
        if isinstance(value, bool) or (kind is int and float(value) != number):
            raise ValueError
    except (TypeError, ValueError):
        raise GiniConfigError(
            f"Gini connection: extra {name!r} must be a {kind.__name__}, got {value!r}"
        ) from None
    return number  # type: ignore[no-any-return]


def _api_version(value: Any) -> int:
    # Airflow's connection form stores a blank optional field as null, so unset means the default.
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        # An integral float (JSON 1.0) is the integer; int("1.0") would refuse it.
        version = int(value) if isinstance(value, float) else int(str(value).strip().lstrip("vV"))
    except (TypeError, ValueError):
        raise GiniConfigError(
            f"Gini connection: extra 'api_version' must be an integer like 1, got {value!r}"
        ) from None
    return version


def _verify(value: Any) -> bool | str:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, (bool, str)):
        return value
    raise GiniConfigError("Gini connection: extra 'verify' must be true, false or a CA bundle path")


def _api_url(host: str | None, port: int | None, schema: str | None) -> str:
    if not host:
        return DEFAULT_API_URL
    if "://" in host:
        return host
    scheme = schema if schema in ("http", "https") else "https"
    return f"{scheme}://{host}{f':{port}' if port else ''}"
