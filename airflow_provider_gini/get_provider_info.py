"""Provider metadata read by Airflow's ProvidersManager; imports nothing heavy on purpose."""

from __future__ import annotations

from typing import Any

from airflow_provider_gini import __version__

HOOK = "airflow_provider_gini.hooks.gini.GiniHook"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-gini",
        "name": "Gini",
        "description": "Gini document-processing APIs (Pay API and user center) for Apache Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Gini",
                "external-doc-url": "https://developer.gini.net/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Gini", "python-modules": ["airflow_provider_gini.hooks.gini"]}],
        "operators": [
            {
                "integration-name": "Gini",
                "python-modules": [
                    "airflow_provider_gini.operators.documents",
                    "airflow_provider_gini.operators.payments",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Gini",
                "python-modules": [
                    "airflow_provider_gini.sensors.documents",
                    "airflow_provider_gini.sensors.payments",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Gini",
                "python-modules": [
                    "airflow_provider_gini.triggers.documents",
                    "airflow_provider_gini.triggers.arrivals",
                    "airflow_provider_gini.triggers.payments",
                ],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "Gini",
                "target-integration-name": "Common SQL",
                "python-module": "airflow_provider_gini.transfers.gini_to_sql",
            }
        ],
        "connection-types": [
            {
                "connection-type": "gini",
                "hook-class-name": HOOK,
                "hook-name": "Gini",
                "conn-fields": {
                    "client_id": {
                        "label": "OAuth client ID",
                        "description": "The client id Gini issued to your application",
                        "schema": {"type": "string"},
                    },
                    "client_secret": {
                        "label": "OAuth client secret",
                        "description": "The client secret Gini issued to your application",
                        "schema": {"type": "string", "format": "password"},
                    },
                    "user_center_url": {
                        "label": "User center URL",
                        "description": "Default https://user.gini.net",
                        "schema": {"type": ["string", "null"]},
                    },
                    "api_version": {
                        "label": "API version",
                        "description": "Default 1: Accept application/vnd.gini.v1+json",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "User email",
                        "password": "User password",
                    },
                    "placeholders": {
                        "host": "https://pay-api.gini.net",
                        "login": "user@example.com",
                        "client_id": "your-gini-client-id",
                        "user_center_url": "https://user.gini.net",
                        "api_version": "1",
                        "extra": '{"read_timeout": 60, "max_attempts": 8}',
                    },
                },
            }
        ],
    }


def connection_type(name: str = "gini") -> dict[str, Any]:
    """The provider info's entry for one connection type: its form fields and field behaviour."""
    entries: list[dict[str, Any]] = get_provider_info()["connection-types"]
    (entry,) = [c for c in entries if c["connection-type"] == name]
    return entry
