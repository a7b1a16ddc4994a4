"""Realistic German invoices and remittance slips: their printed lines and extractions.

A ``Paper`` is what the sandbox knows about a document's content. It is
rendered to PDF/PNG/JPEG bytes by ``render.py`` and answers the extraction
and layout endpoints. The printed lines and the extractions come from one
place, so every extraction's box points at the line that shows its value.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

# (recipient, BLZ, BIC) of fictional payees at real German banks.
PAYEES: list[tuple[str, str, str]] = [
    ("Stadtwerke Neustadt GmbH", "10050000", "BELADEBEXXX"),
    ("Bäckerei Sonnenschein GmbH", "70150000", "SSKMDEMMXXX"),
    ("Elektro Krause KG", "10070000", "DEUTDEBBXXX"),
    ("Hausverwaltung Lindner & Söhne", "10040000", "COBADEBBXXX"),
    ("Zahnarztpraxis Dr. Weber", "43060967", "GENODEM1GLS"),
    ("Autohaus Bergmann GmbH", "70020270", "HYVEDEMMXXX"),
    ("Kanzlei Hoffmann Rechtsanwälte", "50010517", "INGDDEFFXXX"),
    ("Grünwerk Gartenbau GmbH", "12030000", "BYLADEM1001"),
    ("Druckerei Meyer OHG", "10010010", "PBNKDEFFXXX"),
    ("Fahrradladen Kettenblatt e.K.", "20050550", "HASPDEHHXXX"),
]

ITEMS: list[tuple[str, str]] = [
    ("Wartung Heizungsanlage", "89.00"),
    ("Ersatzteil Thermostat", "24.50"),
    ("Arbeitszeit je Stunde", "62.00"),
    ("Anfahrtspauschale", "35.00"),
    ("Büromaterial Paket", "18.90"),
    ("Visitenkarten 500 Stk.", "49.00"),
    ("Strom Abschlag", "112.00"),
    ("Reinigung Treppenhaus", "75.00"),
    ("Inspektion Fahrzeug", "189.00"),
    ("Beratung Mietrecht", "150.00"),
]

DOC_TYPES = ("Invoice", "RemittanceSlip")
AMOUNT_RE = re.compile(r"^-?\d+(\.\d{1,2})?:[A-Z]{3}$")
BIC_RE = re.compile(r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$")


def iban_de(blz: str, account: int) -> str:
    bban = f"{blz}{account:010d}"
    numeric = int(bban + "131400")  # "DE00": D=13, E=14, check digits 00
    return f"DE{98 - numeric % 97:02d}{bban}"


def iban_is_valid(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if len(iban) < 15 or len(iban) > 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    if not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}:EUR"


@dataclass
class Line:
    text: str
    label: str | None = None  # the extraction this line shows, if any


@dataclass
class Paper:
    doctype: str
    lines: list[Line]
    extractions: dict[str, Any]
    line_items: list[dict[str, Any]] = field(default_factory=list)

    def extractions_body(self) -> dict[str, Any]:
        boxes = {line.label: i for i, line in enumerate(self.lines) if line.label}
        extractions: dict[str, Any] = {}
        candidates: dict[str, list[dict[str, Any]]] = {}
        for label, (entity, value) in self.extractions.items():
            item: dict[str, Any] = {"entity": entity, "value": value}
            if label in boxes:
                item["box"] = line_box(boxes[label], len(self.lines[boxes[label]].text))
            if entity in ("amount", "iban", "date"):
                pool = {"amount": "amounts", "iban": "ibans", "date": "dates"}[entity]
                item["candidates"] = pool
                candidates.setdefault(pool, []).append({k: v for k, v in item.items() if k != "candidates"})
            extractions[label] = item
        return {
            "extractions": extractions,
            "candidates": candidates,
            "compoundExtractions": {"lineItems": self.line_items},
            "returnReasons": [],
        }


PAGE_W, PAGE_H = 595.0, 842.0  # A4 in points
TOP, STEP, LEFT, CHAR_W, LINE_H = 72.0, 18.0, 56.0, 5.6, 12.0


def line_box(index: int, chars: int) -> dict[str, Any]:
    return {
        "page": 1,
        "left": LEFT,
        "top": TOP + index * STEP,
        "width": round(chars * CHAR_W, 1),
        "height": LINE_H,
    }


def make_paper(rng: random.Random, issued: date, doctype: str | None = None) -> Paper:
    doctype = doctype or rng.choice(DOC_TYPES)
    recipient, blz, bic = rng.choice(PAYEES)
    iban = iban_de(blz, rng.randrange(10**6, 10**10))
    reference = f"RE-{issued:%Y}-{rng.randrange(10000, 99999)}"
    due = issued + timedelta(days=14)
    lines = [Line(recipient, "paymentRecipient"), Line(f"Datum: {issued:%d.%m.%Y}")]
    items: list[dict[str, Any]] = []
    if doctype == "Invoice":
        lines.append(Line(f"Rechnung Nr. {reference}", "paymentReference"))
        total = Decimal(0)
        for description, price in rng.sample(ITEMS, rng.randint(1, 4)):
            quantity = rng.randint(1, 3)
            gross = Decimal(price) * quantity
            total += gross
            lines.append(Line(f"{quantity} x {description}  {gross:.2f} EUR"))
            items.append(
                {
                    "description": {"entity": "text", "value": description},
                    "quantity": {"entity": "numeric", "value": str(quantity)},
                    "baseGross": {"entity": "amount", "value": money(Decimal(price))},
                    "grossPrice": {"entity": "amount", "value": money(gross)},
                }
            )
        lines.append(Line(f"Gesamtbetrag: {total:.2f} EUR", "amountToPay"))
        lines.append(Line(f"Zahlbar bis {due:%d.%m.%Y}", "paymentDueDate"))
    else:
        total = Decimal(rng.randrange(1500, 250000)) / 100
        lines.append(Line("SEPA-Überweisung / Zahlschein"))
        lines.append(Line(f"Verwendungszweck: {reference}", "paymentReference"))
        lines.append(Line(f"Betrag: {total:.2f} EUR", "amountToPay"))
    lines.append(Line(f"IBAN: {iban}", "iban"))
    lines.append(Line(f"BIC: {bic}", "bic"))
    extractions: dict[str, tuple[str, str]] = {
        "docType": ("doctype", doctype),
        "paymentRecipient": ("companyname", recipient),
        "paymentReference": ("reference", reference),
        "paymentPurpose": ("reference", reference),
        "amountToPay": ("amount", money(total)),
        "iban": ("iban", iban),
        "bic": ("bic", bic),
    }
    if doctype == "Invoice":
        extractions["paymentDueDate"] = ("date", due.isoformat())
    return Paper(doctype=doctype, lines=lines, extractions=extractions, line_items=items)


def paper_from_bytes(data: bytes, doctype: str | None) -> Paper:
    """An uploaded file the sandbox did not make: content derived from its hash, so it is stable."""
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    return make_paper(random.Random(seed), date(2026, 1, 1), doctype if doctype in DOC_TYPES else None)
