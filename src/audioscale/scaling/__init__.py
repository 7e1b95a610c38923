"""Scaling fits: power laws with bootstrap intervals, validation and compute allocation.

``fit_results(rows, ckpt_rows)`` (pure) and ``fit_study(study_dir)`` (reads the store,
writes fits.json) are the entry points (``scaling.fits``); the pieces live in
``powerlaw``, ``bootstrap``, ``correlation``, ``validate`` and ``allocation``; the
typed form of fits.json in ``schema``, its verdict and headline in ``verdict``.
"""

from audioscale.scaling.fits import FitSettings, fit_results, fit_study

__all__ = ["FitSettings", "fit_results", "fit_study"]
