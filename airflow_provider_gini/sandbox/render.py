"""Real file bytes for a ``Paper``: PDF with reportlab, PNG/JPEG pages with Pillow.

A PDF made here carries its paper in the document keywords, so when one of
these files is uploaded again the sandbox "extracts" exactly what it printed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from airflow_provider_gini.sandbox.invoices import (
    CHAR_W,
    LEFT,
    LINE_H,
    PAGE_H,
    PAGE_W,
    STEP,
    TOP,
    Line,
    Paper,
)

MARKER = b"gini-sandbox:"
_MARKER_RE = re.compile(rb"gini-sandbox:([A-Za-z0-9_\-=]+)")


def _require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            f"The Gini sandbox needs {module.split('.')[0]} to make document files: "
            "pip install 'airflow-provider-gini[sandbox]'"
        ) from exc


def encode_paper(paper: Paper) -> str:
    raw = json.dumps(asdict(paper), separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_paper(data: bytes) -> Paper | None:
    match = _MARKER_RE.search(data)
    if match is None:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(match.group(1)))
        return Paper(
            doctype=raw["doctype"],
            lines=[Line(**line) for line in raw["lines"]],
            extractions={k: tuple(v) for k, v in raw["extractions"].items()},
            line_items=raw.get("line_items", []),
        )
    except (ValueError, KeyError, TypeError):
        return None


def pdf_bytes(paper: Paper, title: str) -> bytes:
    canvas_module = _require("reportlab.pdfgen.canvas")
    buffer = io.BytesIO()
    # invariant=1 drops the creation date and random file id: the same paper gives the same bytes.
    canvas = canvas_module.Canvas(buffer, pagesize=(PAGE_W, PAGE_H), invariant=1)
    canvas.setTitle(title)
    canvas.setKeywords(MARKER.decode() + encode_paper(paper))
    for i, line in enumerate(paper.lines):
        canvas.setFont("Helvetica-Bold" if i == 0 else "Helvetica", 10)
        canvas.drawString(LEFT, PAGE_H - (TOP + i * STEP) - LINE_H, line.text)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _image(paper: Paper, width: int, height: int) -> Any:
    image_module = _require("PIL.Image")
    draw_module = _require("PIL.ImageDraw")
    image = image_module.new("RGB", (width, height), "white")
    draw = draw_module.Draw(image)
    scale_x, scale_y = width / PAGE_W, height / PAGE_H
    for i, line in enumerate(paper.lines):
        draw.text((LEFT * scale_x, (TOP + i * STEP) * scale_y), line.text, fill="black")
    return image


@lru_cache(maxsize=256)
def _image_bytes(encoded: str, width: int, height: int, fmt: str) -> bytes:
    paper = decode_paper(MARKER + encoded.encode())
    assert paper is not None
    buffer = io.BytesIO()
    _image(paper, width, height).save(buffer, format=fmt)
    return buffer.getvalue()


def image_bytes(paper: Paper, width: int, height: int, fmt: str = "PNG") -> bytes:
    return _image_bytes(encode_paper(paper), width, height, fmt)


def layout(paper: Paper, page_count: int) -> dict[str, Any]:
    def words(line: Line, top: float) -> list[dict[str, Any]]:
        out, left = [], LEFT
        for word in line.text.split():
            width = round(len(word) * CHAR_W, 1)
            out.append(
                {
                    "l": left,
                    "t": top,
                    "w": width,
                    "h": LINE_H,
                    "fontSize": 10.0,
                    "fontFamily": "Helvetica",
                    "bold": False,
                    "text": word,
                }
            )
            left = round(left + width + CHAR_W, 1)
        return out

    lines = []
    for i, line in enumerate(paper.lines):
        top = TOP + i * STEP
        lines.append(
            {
                "l": LEFT,
                "t": top,
                "w": round(len(line.text) * CHAR_W, 1),
                "h": LINE_H,
                "wds": words(line, top),
            }
        )
    height = round(len(paper.lines) * STEP, 1)
    box = {"l": LEFT, "t": TOP, "w": PAGE_W - 2 * LEFT, "h": height}
    zone = {"paragraphs": [{**box, "lines": lines}]}
    # Every page has regions (gini-mobile-android requires the key; its layout.json fixture marks
    # a remittance slip's area as {l, t, w, h, type: "RemittanceSlip"}).
    regions = [{**box, "type": "RemittanceSlip"}] if paper.doctype == "RemittanceSlip" else []
    pages = [{"number": 1, "sizeX": PAGE_W, "sizeY": PAGE_H, "textZones": [zone], "regions": regions}]
    pages += [
        {"number": n, "sizeX": PAGE_W, "sizeY": PAGE_H, "textZones": [], "regions": []}
        for n in range(2, page_count + 1)
    ]
    return {"pages": pages}
