"""The page's HTML helpers: everything that comes from data goes through :func:`esc`; :class:`Raw`
marks HTML built here. Tables, figures (inline ``data:`` PNG), key-figure cards, sections, and the
page itself (:func:`page`) with its CSS and script, read from the package data files
``assets/report.css`` and ``assets/report.js`` and allowed by hash in the Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "Cell",
    "Raw",
    "Section",
    "asset",
    "cards",
    "esc",
    "figure",
    "fnum",
    "fpct",
    "num",
    "page",
    "para",
    "rel",
    "table",
]


class Raw(str):
    """Trusted HTML built by this package (never data)."""


def esc(x: Any) -> str:
    return x if isinstance(x, Raw) else html.escape(str(x), quote=True)


def fnum(x: Any, digits: int = 4) -> str:
    if (
        isinstance(x, bool)
        or not isinstance(x, (int, float))
        or (isinstance(x, float) and not math.isfinite(x))
    ):
        return "–"
    return f"{x:,}" if isinstance(x, int) else f"{x:.{digits}f}"


def fpct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def rel(path: Path | str) -> str:
    """``path`` relative to the working folder when inside it (shorter, and no home folder shown)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


@dataclass
class Cell:
    """A table cell: ``text`` (escaped unless :class:`Raw`), an optional sort key, and a class."""

    text: Any
    sort: Any = None
    cls: str = ""


def num(x: Any, digits: int = 4) -> Cell:
    return Cell(fnum(x, digits), x if isinstance(x, (int, float)) else "", "num")


def table(
    headers: Sequence[str | tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    *,
    sortable: bool = False,
    tid: str | None = None,
    cls: str = "",
) -> Raw:
    """``headers``: titles, or (title, "num") for right-aligned columns."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    id_attr = f" id={esc(tid)!r}" if tid else ""
    class_attr = f" class={classes!r}" if classes else ""
    out = [f'<div class="tw"><table{id_attr}{class_attr}>']
    out.append("<thead><tr>")
    for h in headers:
        title, hc = (h, "") if isinstance(h, str) else h
        out.append(f'<th{f" class={hc!r}" if hc else ""} scope="col">{esc(title)}</th>')
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for c in row:
            cell = c if isinstance(c, Cell) else Cell(c)
            attrs = f' class="{cell.cls}"' if cell.cls else ""
            if cell.sort is not None:
                attrs += f' data-sort="{esc(cell.sort)}"'
            out.append(f"<td{attrs}>{esc(cell.text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return Raw("".join(out))


def figure(uri: str, alt: str, caption: str = "") -> Raw:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Raw(f'<figure><img class="fig" src="{esc(uri)}" alt="{esc(alt)}">{cap}</figure>')


def para(text: Any, cls: str = "lead") -> Raw:
    return Raw(f'<p class="{cls}">{esc(text)}</p>')


def cards(items: Sequence[tuple[str, str, str]]) -> Raw:
    """Key figures: (label, value, detail)."""
    out = ['<div class="cards">']
    for k, v, d in items:
        out.append(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
            f'<div class="d">{esc(d)}</div></div>'
        )
    out.append("</div>")
    return Raw("".join(out))


@dataclass
class Section:
    """One section of the page: ``body`` is trusted HTML made with the helpers above."""

    id: str
    title: str
    body: str
    nav: str = ""


@cache
def asset(name: str) -> str:
    """The text of the package data file ``assets/<name>`` (the page's CSS and script)."""
    return resources.files("skillneurons.report").joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(title: str, where: str, sections: Sequence[Section], version: str) -> str:
    """The whole page: a header (``title``, ``where`` the run folder), the navigation, the sections,
    and the inline CSS and script; the Content-Security-Policy allows nothing else."""
    css, js = asset("report.css"), asset("report.js")
    csp = (
        f"default-src 'none'; img-src data:; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.nav or s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        f'<meta name="generator" content="skillneurons {esc(version)}">'
        f"<title>{esc(title)}</title><style>{css}</style></head>\n<body>"
        f'<header><div class="wrap"><h1>{esc(title)}</h1><div class="sub">{esc(where)} · '
        f"report generated {esc(time.strftime('%Y-%m-%d %H:%M'))}</div></div></header>"
        f'<nav><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="wrap">skillneurons {esc(version)} · one self-contained file: no network needed'
        "</footer>"
        f"<script>{js}</script></body></html>\n"
    )
