"""All fits of a study, from the results table to ``fits.json``.

``fit_results(rows, ckpt_rows, settings)`` is pure: rows as ``Store.results()`` returns
them, checkpoint rows as ``Store.checkpoint_metrics()``; it returns one JSON-ready dict.
``fit_study(study_dir)`` reads the store, calls it and writes ``STUDY_DIR/fits.json``
atomically. Choices (each recorded under ``settings`` in the output):

- Only rows with ``kind == "trained"`` (or no kind) enter fits; baselines (random-init,
  baseline, external) are listed under ``baselines`` for the plots and the verdict.
  External (pretrained reference) rows do not widen the score-vs-RankMe band either,
  and the verdict names them for scale only, apart from the baselines a run must beat.
- Intervals: percentile bootstrap over runs, ``n_resamples`` (default 1000), seeded
  (``scaling.bootstrap``). Log-log OLS fits and Spearman are bootstrapped vectorised.
  The joint L(N, D) law and the allocation refit 5 parameters per resample and use
  ``n_resamples_joint`` (default 300) to keep ``audioscale fit`` within seconds; they
  resample residuals over the fixed (N, D) design instead of runs
  (``bootstrap.residual_resamples``: resampling runs drops whole sizes or budgets of the
  grid), and the verification run gets a prediction interval (``scaling.verify``).
  Warm-started refits (saturating bootstrap and leave-one-out, joint bootstrap) start
  from the full-data optimum with at most 50 evaluations, continued up to 300 when
  unfinished; saturating leave-one-out refits that still fail fall back to the
  cold-start grid (``powerlaw.refit_saturating``; too slow for 1,000 resamples, so the
  bootstrap does not). What fails after that is counted (``n_failed``,
  ``failed_fraction``), never guessed, and above 20 % failed resamples (or folds) the
  interval (or the leave-one-out error) is refused with its reason
  (``bootstrap.MAX_FAILED_FRACTION``).
- score vs RankMe: power law and saturating form (``scaling.powerlaw``), chosen by
  AICc when n/k < 40, else AIC. Residual flags: |z| > ``residual_z`` (default 2) where
  z = log-residual of the log-log power law / its standard deviation (ddof = 2).
- N = ``params_nonembed`` (else ``params``), D = ``examples_seen`` (else
  ``hours_seen``), C = ``train_flops``; single power laws of RankMe, suite score and
  held-out loss in each, with leave-one-out and fit-small-predict-large errors.
- Joint L(N, D) for held-out loss and for the suite error 1 − suite, and the
  compute-optimal allocation for a budget (default 2× the largest run's FLOPs), with the
  RankMe predicted there (``allocation.rankme_prediction``).
- Metric comparison: each label-free metric signed so that "higher predicts better"
  (α-ReQ and held-out loss get −1: a larger decay exponent means a more collapsed
  spectrum, Agrawal et al. NeurIPS 2022; a lower loss is better), Spearman with CI and
  LOO MAE of a log-log power law from the metric to the score.
- Verdict thresholds: see ``scaling.verdict``.
"""

from __future__ import annotations

from audioscale.scaling.fits.common import FITS_VERSION, FitSettings
from audioscale.scaling.fits.io import fit_study, load_store_rows
from audioscale.scaling.fits.results import fit_results

__all__ = ["FITS_VERSION", "FitSettings", "fit_results", "fit_study", "load_store_rows"]
