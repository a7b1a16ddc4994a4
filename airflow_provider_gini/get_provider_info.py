"""Provider metadata read by Airflow's ProvidersManager; imports nothing heavy on purpose."""

from __future__ import annotations

from typing import Any

from airflow_provider_gini import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-gini",
        "name": "Gini",
        "description": "Gini document-processing APIs (Pay API, user center) for Apache Airflow.",
        "versions": [__version__],
    }
