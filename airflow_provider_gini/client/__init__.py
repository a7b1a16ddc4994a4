"""A pure Python client for Gini's user center and Pay API (no Airflow import).

``GiniClient(settings)`` is what the Airflow hook wraps; it is usable on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from airflow_provider_gini.client.api import GiniAPI, epoch_ms
from airflow_provider_gini.client.errors import (
    GiniAuthError,
    GiniConfigError,
    GiniConflict,
    GiniError,
    GiniHTTPError,
    GiniIncompleteListing,
    GiniInvalidClientCredentials,
    GiniInvalidUserCredentials,
    GiniNotFound,
    GiniProcessingError,
    GiniProcessingTimeout,
    GiniProtocolError,
    GiniRefreshRejected,
    GiniRefusedAnswer,
    GiniRejected,
    GiniRetryError,
    GiniTransportError,
    GiniUnauthorized,
)
from airflow_provider_gini.client.listing import DocumentListing, ListingStats
from airflow_provider_gini.client.settings import ClientSettings, RetrySettings
from airflow_provider_gini.client.transport import GiniSession


class GiniClient(GiniAPI):
    def __init__(self, settings: ClientSettings, *, on_secret: Callable[[str], None] | None = None) -> None:
        self._session = GiniSession(settings, on_secret=on_secret)

    @property
    def gini(self) -> GiniSession:
        return self._session

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GiniClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ClientSettings",
    "DocumentListing",
    "GiniAPI",
    "GiniAuthError",
    "GiniClient",
    "GiniConfigError",
    "GiniConflict",
    "GiniError",
    "GiniHTTPError",
    "GiniIncompleteListing",
    "GiniInvalidClientCredentials",
    "GiniInvalidUserCredentials",
    "GiniNotFound",
    "GiniProcessingError",
    "GiniProcessingTimeout",
    "GiniProtocolError",
    "GiniRefreshRejected",
    "GiniRefusedAnswer",
    "GiniRejected",
    "GiniRetryError",
    "GiniSession",
    "GiniTransportError",
    "GiniUnauthorized",
    "ListingStats",
    "RetrySettings",
    "epoch_ms",
]
