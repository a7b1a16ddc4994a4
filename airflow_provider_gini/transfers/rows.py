"""Pull manifests as table rows: one row per document, its key extractions typed.

Every manifest is read and every line checked before the caller writes anything, so a malformed
line (named by manifest and line number) leaves the table as it was. A value the API sent that
does not parse (an amount like ``12,50 EUR``, a creation date out of range) is NULL with a
warning: one odd document never stops the load of the others.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_gini.client.errors import GiniConfigError, GiniProtocolError, shown
from airflow_provider_gini.pull.manifest import KEY_EXTRACTIONS, OUTCOMES
from airflow_provider_gini.pull.storage import destination_path, public_uri, safe_id

log = logging.getLogger(__name__)

# The table's columns, in the order of each row. The first nine are the issue's; the rest are
# the other key extractions and where and when a row came from.
COLUMNS = (
    "document_id",
    "creation_date",
    "amount",
    "currency",
    "iban",
    "bic",
    "recipient",
    "reference",
    "outcome",
    "purpose",
    "due_date",
    "doc_type",
    "name",
    "manifest",
    "loaded_at",
)
# Manifest field -> column, for the extractions stored as the text Gini sent.
TEXT_FIELDS = {
    "iban": "iban",
    "bic": "bic",
    "paymentRecipient": "recipient",
    "paymentReference": "reference",
    "paymentPurpose": "purpose",
    "paymentDueDate": "due_date",
    "docType": "doc_type",
    "name": "name",
}
# Gini's amounts are "<decimal>:<ISO 4217 code>" ("12.50:EUR"). The column is NUMERIC(19, 4):
# four decimals hold every ISO currency's minor unit, so a value that fits is stored exactly, and
# one that does not is NULL with a warning instead of being rounded by the database.
# [0-9], not \d: \d also matches other scripts' digits ("١٢"), which are no amount Gini writes.
AMOUNT = re.compile(r"([+-]?[0-9]{1,15}(?:\.[0-9]{1,4})?)(?::([A-Za-z]{3}))?")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SHOWN_WARNINGS = 20


@dataclass
class Loaded:
    """The rows to write, by document id (the last manifest's line wins), and what was seen."""

    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    manifests: int = 0
    lines: int = 0
    replaced: int = 0  # lines of a document an earlier line already gave
    filtered: int = 0  # lines of outcomes not asked for
    warnings: int = 0


def manifest_locations(value: Any) -> list[str | ObjectStoragePath]:
    """The manifests ``value`` names: a path or URL, an ObjectStoragePath, a pull's XCom result
    (``{"manifest": ...}``), or a list of these (a mapped pull's results). Missing results (None)
    are skipped with a warning saying how many: a mapped instance that failed returned none (the
    load then runs under a trigger rule like all_done), and its documents are not loaded."""
    if isinstance(value, (str, ObjectStoragePath, Mapping)):
        value = [value]
    if not isinstance(value, Iterable):
        raise GiniConfigError(
            f"manifest must be a manifest's path or URL, a pull's result or a list of them; got "
            f"{type(value).__name__}"
        )
    found: list[str | ObjectStoragePath] = []
    missing = 0
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("manifest")
        if item is None:
            missing += 1
            continue
        if isinstance(item, str) and item.strip().startswith(("{", "[")):
            # What a Jinja template makes of a pull's result: its Python repr, not the result.
            raise GiniConfigError(
                f"manifest {shown(item, 80)!r} is a rendered dict or list, not a path: pass "
                "manifest=pull.output (or pull.output['manifest']), or render the DAG's templates as "
                "native objects (render_template_as_native_obj=True)"
            )
        if not isinstance(item, (str, ObjectStoragePath)) or not str(item).strip():
            raise GiniConfigError(f"manifest: expected a path or URL, got {shown(repr(item), 80)}")
        found.append(item)
    if missing:
        log.warning(
            "%d of %d manifest result(s) are missing (None): a pull instance that failed or was "
            "skipped returned no manifest, so its documents are not loaded; rerun it, then this load",
            missing,
            missing + len(found),
        )
    return found


def read_manifests(
    locations: list[str | ObjectStoragePath],
    conn_id: str | None,
    outcomes: frozenset[str] | None,
    loaded_at: datetime,
) -> Loaded:
    """Every manifest's rows, in order, a later line of a document replacing an earlier one."""
    loaded = Loaded()
    for location in locations:
        path = destination_path(location, conn_id)
        name = public_uri(path)
        try:
            with path.open("rb") as handle:  # type: ignore[no-untyped-call,unused-ignore]
                # Not `for raw in handle`: Airflow 3.0's file wrapper cannot be iterated.
                for number, raw in enumerate(iter(handle.readline, b""), 1):
                    if raw.strip():
                        _add(loaded, _parsed(raw, name, number), name, number, outcomes, loaded_at)
        except FileNotFoundError:
            raise GiniConfigError(
                f"Manifest {name} not found. Pass the pull's result (manifest=pull.output) or the URI "
                "it returned; for a remote destination also manifest_conn_id, the pull's "
                "destination_conn_id"
            ) from None
        loaded.manifests += 1
    return loaded


def _parsed(raw: bytes, name: str, number: int) -> dict[str, Any]:
    try:
        line = json.loads(raw)
    except ValueError as exc:  # JSON and UTF-8 errors
        raise malformed(name, number, f"not JSON ({exc})") from None
    if not isinstance(line, dict):
        raise malformed(name, number, f"a JSON {type(line).__name__}, not an object")
    try:
        safe_id(line.get("id"))
    except GiniProtocolError as exc:
        raise malformed(name, number, str(exc)) from None
    if line.get("outcome") not in OUTCOMES:
        raise malformed(name, number, f"outcome {line.get('outcome')!r} is none of {', '.join(OUTCOMES)}")
    for label in (*KEY_EXTRACTIONS, "name"):
        if not isinstance(line.get(label), (str, type(None))):
            raise malformed(name, number, f"{label} is a {type(line[label]).__name__}, not text or null")
    return line


def malformed(name: str, number: int, why: str) -> GiniConfigError:
    return GiniConfigError(
        f"Manifest {name} line {number} is malformed: {why}. Nothing was loaded; a manifest is "
        "written by GiniPullDocumentsOperator, one JSON object per line"
    )


def _add(
    loaded: Loaded,
    line: dict[str, Any],
    name: str,
    number: int,
    outcomes: frozenset[str] | None,
    loaded_at: datetime,
) -> None:
    loaded.lines += 1
    if outcomes is not None and line["outcome"] not in outcomes:
        loaded.filtered += 1
        return
    where = f"document {line['id']} ({name} line {number})"
    amount, currency = parse_amount(line.get("amountToPay"), where, loaded)
    values: dict[str, Any] = {
        "document_id": line["id"],
        "creation_date": _creation_date(line.get("creationDate"), where, loaded),
        "amount": amount,
        "currency": currency,
        "outcome": line["outcome"],
        "manifest": name,
        "loaded_at": loaded_at,
        **{column: line.get(label) for label, column in TEXT_FIELDS.items()},
    }
    # pop first: the dict's order is then the order of the last lines, deterministic too.
    if loaded.rows.pop(line["id"], None) is not None:
        loaded.replaced += 1
    loaded.rows[line["id"]] = tuple(values[column] for column in COLUMNS)


def parse_amount(value: str | None, where: str, loaded: Loaded) -> tuple[Decimal | None, str | None]:
    """``"12.50:EUR"`` as (Decimal("12.50"), "EUR"); (None, None), with a warning, when it does not
    parse."""
    if value is None or not value.strip():
        return None, None
    match = AMOUNT.fullmatch(value.strip())
    if match is None:
        _warn(
            loaded,
            "%s: amountToPay %r is not an amount like '12.50:EUR'; amount and currency NULL",
            where,
            shown(value, 60),
        )
        return None, None
    currency = match.group(2)
    # Cannot raise: the pattern admits ASCII digits only (no exponent, NaN or Infinity, no other
    # script's digits), each a Decimal, NUMERIC(19, 4) holds them exactly.
    return Decimal(match.group(1)), currency.upper() if currency else None


def _creation_date(value: Any, where: str, loaded: Loaded) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            pass
    _warn(
        loaded,
        "%s: creationDate %s is no epoch-milliseconds date; creation_date NULL",
        where,
        shown(repr(value), 40),
    )
    return None


def _warn(loaded: Loaded, message: str, *args: Any) -> None:
    loaded.warnings += 1
    if loaded.warnings <= SHOWN_WARNINGS:
        log.warning(message, *args)
