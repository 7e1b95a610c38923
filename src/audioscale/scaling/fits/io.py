"""Store I/O of the fits: read a study's rows, write ``STUDY_DIR/fits.json``."""

from __future__ import annotations

from pathlib import Path

from audioscale.errors import DataError
from audioscale.scaling.fits.common import FitSettings
from audioscale.scaling.fits.results import fit_results
from audioscale.utils import atomic_save_json


def load_store_rows(study_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(results, checkpoint_metrics) from STUDY_DIR/study.db."""
    db = Path(study_dir) / "study.db"
    if not db.is_file():
        raise DataError(f"{db}: no study database here (run `audioscale sweep` or `study` first)")
    from audioscale.sweep.store import Store

    store = Store(db)
    try:
        return store.results(), store.checkpoint_metrics()
    finally:
        store.close()


def load_store_outcomes(study_dir: str | Path) -> dict:
    """Per-clip test outcomes of every run (``Store.outcomes``); {} without a store."""
    db = Path(study_dir) / "study.db"
    if not db.is_file():
        return {}
    from audioscale.sweep.store import Store

    store = Store(db)
    try:
        return store.outcomes()
    finally:
        store.close()


def fit_study(study_dir: str | Path, settings: FitSettings | None = None) -> dict:
    """Fit a study's results and write STUDY_DIR/fits.json atomically; returns the dict."""
    rows, ckpt = load_store_rows(study_dir)
    if not rows:
        raise DataError(f"{Path(study_dir) / 'study.db'}: no finished runs to fit")
    fits = fit_results(rows, ckpt, settings, outcomes=load_store_outcomes(study_dir))
    atomic_save_json(Path(study_dir) / "fits.json", fits)
    return fits
