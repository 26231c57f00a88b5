"""HTML fragments of a report: one self-contained page (inline CSS, images as data URIs)."""

from __future__ import annotations

import math

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption, .note { font-size: 0.85em; color: #555; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.5em; }
.gallery figure { margin: 0; text-align: center; font-size: 0.75em; width: 96px; }
.gallery img { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #ccc; }
"""


def page(title: str, body: Sequence[str]) -> str:
    """A whole HTML document: no script, no external resource."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p class=\"note\">Generated {stamp} by activelabel from the "
        "campaign database (no model was run for this report).</p>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def section(title: str, *parts: str, anchor: str | None = None) -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{ident}>\n<h2>{escape(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


def figure(png_base64: str, name: str, caption: str) -> str:
    """An embedded PNG figure; ``name`` goes into ``data-figure`` so tests and readers find it."""
    return (
        f'<figure data-figure="{escape(name)}"><img src="data:image/png;base64,{png_base64}" '
        f'alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


def table(ident: str, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table id="{escape(ident)}">{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def score_words(value: float) -> str:
    """An uncertainty score in three significant digits: a BALD of 0.0004 reads "0.0004", not
    "0.000" (trial F7b); 0.1234 reads "0.123". Just below 1 (a margin score of a near-tie,
    ``1 - (p1 - p2)``), enough digits for two of ``1 - value``: 0.99987 reads "0.99987", not
    "1", so a gallery of near-ties still shows its ranking (trial 17 F7)."""
    gap = 1.0 - value
    if 0 < gap < 0.01:
        return f"{value:.{int(math.floor(-math.log10(gap))) + 2}f}".rstrip("0")
    return f"{value:.3g}"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def gallery(items: Sequence[tuple[str, str]]) -> str:
    """Thumbnails: (PNG base64, caption) each."""
    cells = "".join(
        f'<figure><img src="data:image/png;base64,{png}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for png, caption in items
    )
    return f'<div class="gallery">{cells}</div>'
