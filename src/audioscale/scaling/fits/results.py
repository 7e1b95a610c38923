"""``fit_results``: every section of fits.json from a study's result rows (pure)."""

from __future__ import annotations

from dataclasses import asdict

from audioscale.scaling.axes import axis_residuals, leave_one_axis_out
from audioscale.scaling.bootstrap import METHOD
from audioscale.scaling.fits.common import (
    FITS_VERSION,
    FitSettings,
    clean,
    col,
    first_column,
    is_trained,
    run_ids,
)
from audioscale.scaling.fits.laws import joint_laws, score_vs_rankme, single_laws
from audioscale.scaling.fits.sections import (
    confounds,
    early_training,
    metric_comparison,
    model_selection,
)
from audioscale.scaling.learning import compute_buys_quality, versus_baselines
from audioscale.scaling.paired import load_outcomes, paired_section
from audioscale.scaling.schema import typed
from audioscale.scaling.verdict import headline, verdict
from audioscale.scaling.verify import verification_for
from audioscale.utils import float_or_nan


def fit_results(
    rows: list[dict],
    ckpt_rows: list[dict] | None = None,
    settings: FitSettings | None = None,
    outcomes: dict | None = None,
) -> dict:
    """Every fit of a study from result rows (pure); returns the fits.json dict.
    ``outcomes``: per-clip test outcomes as ``Store.outcomes()`` returns them (the paired
    comparisons, ``scaling.paired``; without them every comparison says it has no
    interval)."""
    s = settings or FitSettings()
    ckpt_rows = ckpt_rows or []
    trained = [r for r in rows if is_trained(r)]
    verify_rows = [r for r in rows if r.get("kind") == "verify"]
    others = [r for r in rows if not is_trained(r) and r.get("kind") != "verify"]
    n_col = first_column(trained, ("params_nonembed", "params"))
    d_col = first_column(trained, ("examples_seen", "hours_seen"))
    fits: dict = {
        "version": FITS_VERSION,
        "settings": {**asdict(s), "bootstrap": METHOD},
        "data": {
            "n_rows": len(rows),
            "n_trained": len(trained),
            "n_baselines": len(others),
            "N": n_col,
            "D": d_col,
            "C": "train_flops",
            "run_ids": run_ids(trained),
        },
        "baselines": [
            {
                "run_id": i,
                "kind": r.get("kind"),
                "rankme": float_or_nan(r.get("rankme")),
                "suite": float_or_nan(r.get("suite")),
            }
            for i, r in zip(run_ids(others), others, strict=True)
        ],
    }
    # the fit's band spans the baselines' RankMe, not the external encoders' (another method)
    own = [r for r in others if r.get("kind") != "external"]
    fits["score_vs_rankme"] = score_vs_rankme(trained, s, col(own, "rankme"))
    fits["score_vs_rankme"]["rankme_values"] = col(trained, "rankme")
    fits["score_vs_rankme"]["suite_values"] = col(trained, "suite")
    fits["laws"] = single_laws(trained, s, n_col, d_col)
    fits["joint"] = joint_laws(trained, s, n_col, d_col)
    fits["metric_comparison"] = metric_comparison(trained, s)
    fits["early_training"] = early_training(trained, ckpt_rows, s)
    fits["model_selection"] = model_selection(trained)
    fits["confounds"] = confounds(trained, s, n_col)
    fits["confounds"]["flagged"] = fits["score_vs_rankme"]["residuals"].get("flagged", [])
    fits["axes"] = {
        "leave_one_axis_out": leave_one_axis_out(trained, n_resamples=s.n_resamples, seed=s.seed),
        "residuals": axis_residuals(trained),
    }
    fits |= _learning_sections(trained, others, verify_rows, fits["joint"], outcomes, s)
    fits = clean(fits)
    fits["verdict"] = verdict(typed(fits))
    fits["headline"] = headline(typed(fits))
    return fits


def _learning_sections(trained, others, verify_rows, joint, outcomes, s: FitSettings) -> dict:
    """``learning``, ``paired`` (per-clip outcomes: ``scaling.paired``) and
    ``verification``."""
    clips, protocol = load_outcomes(outcomes or {})
    return {
        "learning": {
            "baselines": versus_baselines(trained, others),
            "compute": compute_buys_quality(trained),
        },
        "paired": paired_section(trained, others + verify_rows, clips, protocol, s),
        "verification": verification_for(
            trained, verify_rows, clean(joint), s.seed, s.n_resamples_joint, s.level
        ),
    }
