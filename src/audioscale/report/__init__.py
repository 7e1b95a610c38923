"""The study report: figures (PNG + SVG in STUDY_DIR/figures/) and a self-contained
report.html. ``write_report(study_dir)`` reads the store and fits.json (fitting first
when fits.json is missing); ``build_report(rows, ckpt_rows, fits, study_dir)`` is the
pure seam used by tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from audioscale.errors import DataError
from audioscale.report.html import build_report


def _store_settings(study_dir: Path) -> dict:
    """Study-level settings: the store's ``meta`` table and each probe protocol's
    settings (as stored with the scores), values as short text."""
    from audioscale.sweep.store import Store

    store = Store(study_dir / "study.db")
    try:
        meta = store.meta()
        probes = store.probes()
    finally:
        store.close()
    out = {}
    for k, v in sorted(meta.items()):
        out[k] = _short(v)
    by_protocol: dict[str, set[str]] = {}
    for p in probes:
        text = json.dumps(p.get("settings") or {}, sort_keys=True, default=str)
        by_protocol.setdefault(f"probe.{p['protocol']}", set()).add(text)
    for k, texts in sorted(by_protocol.items()):
        first = sorted(texts)[0]
        out[k] = (
            _short(first) if len(texts) == 1 else f"{len(texts)} variants, e.g. {_short(first)}"
        )
    return out


def _short(v: object, limit: int = 400) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + " …"


def write_report(study_dir: str | Path, refit: bool = False, settings=None) -> Path:
    """Write STUDY_DIR/report.html (and figures/) from the store and fits.json.

    Fits first (``fit_study(study_dir, settings)``) when fits.json is missing or ``refit``.
    """
    from audioscale.scaling.fits import fit_study, load_store_rows

    study_dir = Path(study_dir)
    rows, ckpt = load_store_rows(study_dir)
    fits_path = study_dir / "fits.json"
    if refit or not fits_path.is_file():
        fits = fit_study(study_dir, settings)
    else:
        try:
            fits = json.loads(fits_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{fits_path}: not valid JSON ({e}); run `audioscale fit` again") from e
    return build_report(rows, ckpt, fits, study_dir, _store_settings(study_dir))


__all__ = ["build_report", "write_report"]
