"""The client's checks of a payment request's fields (client/payments.py): pure functions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.client.payments import (
    PaymentFieldError,
    normalise_amount,
    normalise_bic,
    normalise_iban,
    payment_fields,
)

# Valid IBANs from the countries' published examples (the SWIFT IBAN registry).
VALID_IBANS = {
    "DE89 3704 0044 0532 0130 00": "DE89370400440532013000",
    "de89370400440532013000": "DE89370400440532013000",
    "AT61 1904 3002 3457 3201": "AT611904300234573201",
    "FR14 2004 1010 0505 0001 3M02 606": "FR1420041010050500013M02606",
    "NL91ABNA0417164300": "NL91ABNA0417164300",
    "GB29 NWBK 6016 1331 9268 19": "GB29NWBK60161331926819",
    "NO9386011117947": "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S": "MT84MALT011000012345MTLCAST001S",
    "ES91 2100 0418 4502 0005 1332": "ES9121000418450200051332",
    "BE68 5390 0754 7034": "BE68539007547034",  # pragma: allowlist secret
    # Not a SEPA country of the table: only the general bounds and the checksum apply.
    "BR1800360305000010009795493C1": "BR1800360305000010009795493C1",
}


@pytest.mark.parametrize(("given", "normal"), list(VALID_IBANS.items()))
def test_valid_ibans_are_normalised(given: str, normal: str) -> None:
    assert normalise_iban(given) == normal


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("DE88 3704 0044 0532 0130 00", "fails the IBAN checksum"),  # one check digit off
        ("DE89 3704 0044 0523 0130 00", "fails the IBAN checksum"),  # two digits swapped
        ("DE89 3704 0044 0532 0130 0", "has 21 characters; an IBAN of DE has 22"),
        ("AT61 1904 3002 3457 3201 1", "has 21 characters; an IBAN of AT has 20"),
        ("3704 0044 0532 0130 00", "is not an IBAN"),
        ("DE89-3704-0044-0532-0130-00", "is not an IBAN"),
        # Passes mod 97, but no IBAN has the check digits 00, 01 or 99.
        (
            "DE00071616074616228029",  # pragma: allowlist secret
            "has the check digits 00; an IBAN's are 02 to 98",
        ),
        # Pass mod 97, but a German or Austrian BBAN is digits only.
        ("DE05 3704 0044 0532 0130 0A", "has letters after its check digits; an IBAN of DE has only digits"),
        ("AT76 1904 3002 3457 3O01", "an IBAN of AT has only digits"),
        ("", "iban is empty"),
        (None, "iban is empty"),
    ],
)
def test_wrong_ibans_name_the_field_and_the_fix(given: Any, said: str) -> None:
    with pytest.raises(PaymentFieldError, match=said) as caught:
        normalise_iban(given)
    assert caught.value.field == "iban"
    assert isinstance(caught.value, GiniConfigError)  # terminal: no task retries


@pytest.mark.parametrize(
    ("amount", "currency", "normal"),
    [
        ("12.50:EUR", None, "12.50:EUR"),
        ("12.5:EUR", None, "12.50:EUR"),
        ("12:eur", None, "12.00:EUR"),
        (" 335.50:EUR ", "EUR", "335.50:EUR"),
        ("12.5", "EUR", "12.50:EUR"),
        (12, "chf", "12.00:CHF"),
        (12.5, "EUR", "12.50:EUR"),
        (Decimal("0.01"), "EUR", "0.01:EUR"),
        # Trailing zeros are no extra decimal places.
        ("12.500:EUR", None, "12.50:EUR"),
        (Decimal("12.5000"), "EUR", "12.50:EUR"),
        ("999999999.99:EUR", None, "999999999.99:EUR"),
    ],
)
def test_amounts_are_normalised(amount: Any, currency: str | None, normal: str) -> None:
    assert normalise_amount(amount, currency) == normal


@pytest.mark.parametrize(
    ("amount", "currency", "said"),
    [
        ("0:EUR", None, "must be more than 0"),
        ("-12.50:EUR", None, "must be more than 0"),
        ("12.505:EUR", None, "more than 2 decimal places"),
        ("12.5001:EUR", None, "more than 2 decimal places"),
        # Beyond SEPA's 999,999,999.99, and beyond what Decimal's context can quantize to cents:
        # a typed error naming the field, never a bare decimal.InvalidOperation.
        ("1E30", "EUR", "is more than a SEPA transfer carries"),
        ("1" * 30 + ":EUR", None, "is more than a SEPA transfer carries"),
        ("1000000000:EUR", None, "is more than a SEPA transfer carries"),
        ("1E-40", "EUR", "more than 2 decimal places"),
        (0.1 + 0.2, "EUR", "more than 2 decimal places"),
        ("12,50:EUR", None, "a point for decimals"),
        ("12.50 EUR", None, "is not a number"),
        ("12.50", None, "has no currency"),
        ("12.50:EUR", "USD", "is in EUR but currency='USD'"),
        ("12.50", "EURO", "not a 3-letter ISO 4217 code"),
        (float("inf"), "EUR", "is not a number"),
        (True, "EUR", "amount is empty"),
        ("", "EUR", "amount is empty"),
    ],
)
def test_wrong_amounts_name_the_field_and_the_fix(amount: Any, currency: str | None, said: str) -> None:
    with pytest.raises(PaymentFieldError, match=said) as caught:
        normalise_amount(amount, currency)
    assert caught.value.field in ("amount", "currency")


def test_bic_is_optional_and_checked() -> None:
    assert normalise_bic(None) is None
    assert normalise_bic("  ") is None
    assert normalise_bic("cobadeffxxx") == "COBADEFFXXX"
    assert normalise_bic("COBADEFF") == "COBADEFF"
    with pytest.raises(PaymentFieldError, match="is not a BIC"):
        normalise_bic("COBADE")


def test_payment_fields_check_every_field() -> None:
    fields = payment_fields(
        payment_provider="p1",
        recipient=" Stadtwerke ",
        iban="DE89 3704 0044 0532 0130 00",
        amount="12.5",
        currency="EUR",
        purpose="RE-1",
        bic="cobadeffxxx",
    )
    assert fields.as_kwargs() == {
        "payment_provider": "p1",
        "recipient": "Stadtwerke",
        "iban": "DE89370400440532013000",
        "amount": "12.50:EUR",
        "purpose": "RE-1",
        "bic": "COBADEFFXXX",
    }
    base: dict[str, Any] = {
        "payment_provider": "p1",
        "recipient": "R",
        "iban": "DE89370400440532013000",
        "amount": "1:EUR",
        "purpose": "P",
    }
    for name in ("payment_provider", "recipient", "purpose"):
        with pytest.raises(PaymentFieldError, match=f"^{name} is empty: give") as caught:
            payment_fields(**{**base, name: "  "})
        assert caught.value.field == name
