"""What a payment request must hold, checked before it is sent: a request Gini refuses costs a
round trip, and one it accepts with a wrong IBAN or amount is worse (a payer may pay it).

Pure functions: they raise :class:`PaymentFieldError` (a ``GiniConfigError``) whose message names
the field and the fix, and return the values normalised as Gini writes them (IBAN without
spaces, upper case; amount ``"12.50:EUR"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_gini.client.errors import GiniConfigError, shown

# ISO 13616 IBAN lengths of the SEPA countries (the SWIFT IBAN registry). A country not listed
# is held to the general bounds of 15 to 34 characters only: the checksum still applies.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "VA": 22,
}  # fmt: skip
# The countries whose BBAN is digits only (the SWIFT IBAN registry's formats, all "n"). Others
# (FR, NL, GB, IT, ...) have letters in their bank codes or accounts: only the shape applies.
NUMERIC_BBAN = frozenset(
    {"AT", "BE", "CZ", "DE", "DK", "EE", "ES", "FI", "HR", "HU", "LT", "NO", "PL", "PT", "SE", "SI", "SK"}
)
IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
BIC_SHAPE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
CURRENCY_SHAPE = re.compile(r"[A-Z]{3}")
# Gini's amount format (docs/gini-compat.md, Payment requests): "<decimal>:<ISO 4217 code>".
AMOUNT_SHAPE = re.compile(r"([+-]?[0-9]+(?:\.[0-9]+)?):([A-Za-z]{3})")
# The largest amount a SEPA credit transfer carries (the EPC rulebook: 999,999,999.99).
MAX_AMOUNT = Decimal("999999999.99")


class PaymentFieldError(GiniConfigError):
    """A payment request field is missing or wrong; ``field`` names it (``iban``, ``amount``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PaymentFields:
    """A payment request's fields, checked and normalised, ready for ``create_payment_request``."""

    payment_provider: str
    recipient: str
    iban: str
    amount: str
    purpose: str
    bic: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "payment_provider": self.payment_provider,
            "recipient": self.recipient,
            "iban": self.iban,
            "amount": self.amount,
            "purpose": self.purpose,
            "bic": self.bic,
        }


def normalise_iban(value: Any, field: str = "iban") -> str:
    """``value`` as an IBAN without spaces in upper case, if it has its country's length (for the
    SEPA countries), check digits 02 to 98, only digits after them where its country's BBAN is
    numeric (NUMERIC_BBAN), and a valid ISO 13616 checksum (mod 97)."""
    if not isinstance(value, str) or not value.strip():
        raise PaymentFieldError(
            field, f"{field} is empty: give the payee's IBAN, e.g. 'DE89 3704 0044 0532 0130 00'"
        )
    iban = "".join(value.split()).upper()
    named = repr(shown(value, 60))
    if not IBAN_SHAPE.fullmatch(iban):
        raise PaymentFieldError(
            field,
            f"{field} {named} is not an IBAN: it must be a 2-letter country code, 2 check digits "
            "and 11 to 30 letters or digits (spaces are allowed)",
        )
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        raise PaymentFieldError(
            field,
            f"{field} {named} has {len(iban)} characters; an IBAN of {iban[:2]} has {expected}: "
            "check for a missing or extra digit",
        )
    if not 2 <= int(iban[2:4]) <= 98:
        raise PaymentFieldError(
            field,
            f"{field} {named} has the check digits {iban[2:4]}; an IBAN's are 02 to 98: copy it "
            "again from the invoice",
        )
    if iban[:2] in NUMERIC_BBAN and not iban[4:].isdigit():
        raise PaymentFieldError(
            field,
            f"{field} {named} has letters after its check digits; an IBAN of {iban[:2]} has only "
            "digits there: an O for a 0, or an I for a 1?",
        )
    # ISO 13616: move the first four characters to the end, letters to 10..35, then mod 97 is 1.
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise PaymentFieldError(
            field,
            f"{field} {named} fails the IBAN checksum (ISO 13616 mod 97): a digit is wrong or two "
            "are swapped; copy it again from the invoice",
        )
    return iban


def normalise_bic(value: Any, field: str = "bic") -> str | None:
    """``value`` as a BIC in upper case (8 or 11 characters), or None when it is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    bic = "".join(str(value).split()).upper()
    if not BIC_SHAPE.fullmatch(bic):
        raise PaymentFieldError(
            field,
            f"{field} {shown(str(value), 40)!r} is not a BIC: 8 or 11 letters and digits, like "
            "'COBADEFFXXX'; or leave it out (Gini does not require it)",
        )
    return bic


def normalise_amount(value: Any, currency: str | None = None, field: str = "amount") -> str:
    """``value`` as Gini's ``"12.50:EUR"``: a positive amount up to 999999999.99 with at most 2
    decimal places (trailing zeros aside) and a 3-letter ISO 4217 currency code. Takes that
    string, or a number (int, Decimal, float, or a string like ``"12.5"``) with ``currency``."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise PaymentFieldError(
            field, f"{field} is empty: give it as '12.50:EUR', or a number and currency='EUR'"
        )
    code = currency.strip().upper() if isinstance(currency, str) and currency.strip() else None
    text = value.strip() if isinstance(value, str) else None
    matched = AMOUNT_SHAPE.fullmatch(text) if text is not None else None
    if matched:
        number, given = matched.group(1), matched.group(2).upper()
        if code is not None and code != given:
            raise PaymentFieldError(
                field,
                f"{field} {shown(text or '', 40)!r} is in {given} but currency={code!r} was given: "
                "drop one of them",
            )
        code = given
    elif isinstance(value, (int, float, Decimal)):
        number = str(value)
    elif text is not None and ":" not in text:
        number = text
    else:
        raise PaymentFieldError(
            field,
            f"{field} {shown(str(value), 40)!r} is not an amount: write it as '12.50:EUR' (a point "
            "for decimals, no thousands separator), or a number and currency='EUR'",
        )
    try:
        amount = Decimal(number)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise PaymentFieldError(
            field,
            f"{field} {shown(str(value), 40)!r} is not a number: use a point for decimals and no "
            "thousands separator, e.g. '1234.50:EUR'",
        )
    if amount <= 0:
        raise PaymentFieldError(field, f"{field} {shown(str(value), 40)!r} must be more than 0")
    if amount > MAX_AMOUNT:
        raise PaymentFieldError(
            field,
            f"{field} {shown(str(value), 40)!r} is more than a SEPA transfer carries ({MAX_AMOUNT})",
        )
    # Within MAX_AMOUNT, quantize cannot overflow the context; trailing zeros ("12.500") are no
    # extra decimal places.
    cents = amount.quantize(Decimal("0.01"))
    if cents != amount:
        raise PaymentFieldError(
            field, f"{field} {shown(str(value), 40)!r} has more than 2 decimal places: round it to cents"
        )
    if code is None:
        raise PaymentFieldError(
            field,
            f"{field} {shown(str(value), 40)!r} has no currency: write '12.50:EUR' or pass currency='EUR'",
        )
    if not CURRENCY_SHAPE.fullmatch(code):
        raise PaymentFieldError(
            "currency", f"currency {shown(code, 10)!r} is not a 3-letter ISO 4217 code like 'EUR'"
        )
    return f"{cents}:{code}"


def required_text(value: Any, field: str, hint: str) -> str:
    """``value`` stripped, if it is a non-empty string; else PaymentFieldError saying ``hint``."""
    if not isinstance(value, str) or not value.strip():
        raise PaymentFieldError(field, f"{field} is empty: {hint}")
    return value.strip()


def payment_fields(
    *,
    payment_provider: Any,
    recipient: Any,
    iban: Any,
    amount: Any,
    purpose: Any,
    bic: Any = None,
    currency: str | None = None,
) -> PaymentFields:
    """Every field checked and normalised; the first wrong one raises PaymentFieldError."""
    return PaymentFields(
        payment_provider=required_text(
            payment_provider, "payment_provider", "give the id of a payment provider (GET /paymentProviders)"
        ),
        recipient=required_text(recipient, "recipient", "give the payee's name as on the invoice"),
        iban=normalise_iban(iban),
        amount=normalise_amount(amount, currency),
        purpose=required_text(purpose, "purpose", "give the remittance text, e.g. the invoice number"),
        bic=normalise_bic(bic),
    )
