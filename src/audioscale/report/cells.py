"""The cells of the report's tables: numbers, estimates with intervals, notes, figures.

Escaping is the default, not the caller's job: ``table()`` renders through a Jinja2
template with autoescaping, so every header and cell is escaped unless it is a
``markupsafe.Markup`` (HTML built here on purpose: ``fmt``, ``est``, the note spans,
each built with ``Markup.format``, which escapes its arguments). A run name or an
error message holding ``<script>`` therefore shows as text. ``esc`` is
``markupsafe.escape`` for the few fragments written outside tables.
"""

from __future__ import annotations

import base64
import math

from jinja2 import Environment
from markupsafe import Markup, escape

from audioscale.report.figures import FigureRecord
from audioscale.scaling.schema import Estimate

_ENV = Environment(autoescape=True)
_TABLE = _ENV.from_string(
    "<div class='scroll'><table><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>"
    "{% for r in rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}"
    "</table></div>"
)
NOTE = Markup("<span class='note'>{}</span>")


def esc(x: object) -> Markup:
    """Escaped text (a Markup, so it is not escaped twice)."""
    return escape(str(x))


def note(text: object) -> Markup:
    """An italic note span around escaped ``text``."""
    return NOTE.format(text)


def fmt(v: object, digits: int = 3) -> Markup:
    """Numbers to short strings; None/NaN to an en dash; anything else escaped."""
    return esc(_fmt(v, digits))


def _fmt(v: object, digits: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}g}" if abs(v) >= 100 else f"{v:.{digits}f}"
    return str(v)


def est(d: Estimate | dict | None) -> Markup:
    """'value [lo, hi]' for a bootstrap summary."""
    if isinstance(d, Estimate):
        d = d.to_dict()
    if not d or d.get("value") is None:
        if d and d.get("note"):
            return Markup("– {}").format(note(f"({d['note']})"))
        return Markup("–")
    ci = d.get("ci")
    if not ci:
        if d.get("ci_status") == "refused":
            why = f"(interval refused: {d.get('ci_reason') or 'too many failed resamples'})"
            return Markup("{} {}").format(fmt(d["value"]), note(why))
        return fmt(d["value"])
    return Markup("{} [{}, {}]").format(fmt(d["value"]), fmt(ci[0]), fmt(ci[1]))


def loo_mae(loo: dict | None) -> Markup:
    """A leave-one-out MAE with its failed folds ('k/n folds failed'), or the refusal."""
    loo = loo or {}
    if loo.get("mae_status") == "refused":
        return Markup("– {}").format(note(f"(refused: {loo.get('mae_reason')})"))
    if loo.get("n_failed"):
        folds = f"({loo['n_failed']}/{loo.get('n')} folds failed)"
        return Markup("{} {}").format(fmt(loo.get("mae")), note(folds))
    return fmt(loo.get("mae"))


def table(header: list[object], rows: list[list[object]]) -> str:
    """An HTML table; every header and cell is escaped unless it is a ``Markup``."""
    return _TABLE.render(header=header, rows=rows)


def figure_html(rec: FigureRecord | None) -> str:
    if rec is None:
        return ""
    if rec.png is None:
        return f"<p class='note'>Figure “{esc(rec.title)}” not drawn: {esc(rec.note)}.</p>"
    b64 = base64.b64encode(rec.png).decode("ascii")
    return (
        f"<div class='fig'><img alt='{esc(rec.title)}' src='data:image/png;base64,{b64}'>"
        f"<p class='caption'>{esc(rec.caption)} (also {esc(rec.png_path.name)}, "
        f"{esc(rec.svg_path.name)} in figures/)</p></div>"
    )
