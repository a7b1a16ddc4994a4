"""The sandbox API profiles every listing and pull test runs against: one per paging contract
Gini's sources show (docs/gini-compat.md), in both orders, with both readings of the cursor."""

from __future__ import annotations

import pytest

from airflow_provider_gini.sandbox import CONTRACTS, ApiProfile

EVERY_PROFILE = [pytest.param(api, id=name) for name, api in CONTRACTS.items()]

every_profile = pytest.mark.parametrize("gini_sandbox_profile", EVERY_PROFILE)


def in_listing_order(api: ApiProfile, newest_first: list[str]) -> list[str]:
    """The sandbox's truth (newest first) in the order the profile lists documents."""
    return newest_first if api.order == "descending" else newest_first[::-1]
