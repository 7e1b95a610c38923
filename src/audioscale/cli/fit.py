"""``audioscale fit STUDY_DIR``: every scaling fit of a study into STUDY_DIR/fits.json.

``--json`` prints one JSON object on stdout: the content of fits.json plus
``fits_path``. Without it, the headline numbers and the verdict go to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app


def _fmt_est(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    ci = d.get("ci")
    return f"{d['value']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "")


@app.command("fit")
def fit_cmd(
    study_dir: Path = typer.Argument(..., help="Study folder (holds study.db)."),
    resamples: int = typer.Option(1000, "--resamples", min=50, help="Bootstrap resamples."),
    joint_resamples: int = typer.Option(
        300, "--joint-resamples", min=20, help="Bootstrap resamples of the joint law / allocation."
    ),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    huber: bool = typer.Option(False, "--huber", help="Huber loss instead of least squares."),
    budget: float = typer.Option(
        None, "--budget", help="FLOP budget for the allocation (default 2x the largest run)."
    ),
    cut: float = typer.Option(
        None, "--cut", help="Compute cut (FLOPs) for fit-small-predict-large (default median)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Fit power laws with bootstrap CIs, validate them, write fits.json."""
    from audioscale.errors import ConfigError
    from audioscale.scaling.fits import FitSettings, fit_study

    for key, v in (("--budget", budget), ("--cut", cut)):
        if v is not None and not v > 0:  # also NaN
            raise ConfigError(key, f"must be a positive number of FLOPs, got {v:g}")
    settings = FitSettings(
        n_resamples=resamples, n_resamples_joint=joint_resamples, seed=seed, huber=huber,
        budget_flops=budget, compute_cut=cut,
    )  # fmt: skip
    fits = fit_study(study_dir, settings)
    path = Path(study_dir) / "fits.json"
    if as_json:
        print(json.dumps({"fits_path": str(path), **fits}, allow_nan=False))
        return
    h = fits["headline"]
    print(f"fits: {path}")
    print(f"trained runs: {h['n_runs']}")
    print(f"Spearman(RankMe, suite): {_fmt_est(h['spearman_rankme_suite'])}")
    print(f"chosen form: {h['chosen_form']}, exponent b: {_fmt_est(h['exponent_b'])}")
    mae = h["fit_small_predict_large_mae"]
    print(f"fit-small-predict-large MAE: {'n/a' if mae is None else f'{mae:.4g}'}")
    print(h["verdict"])
