"""``audioscale fit STUDY_DIR``: every scaling fit of a study into STUDY_DIR/fits.json.

``--json`` prints one JSON object on stdout: the content of fits.json plus
``fits_path`` (the headline's ``claims``, the ``paired`` comparisons with their
intervals and "tie" outcomes). Without it, the headline claims (one line each, with
its interval) and the verdict go to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app


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
    for claim in h.get("claims") or []:  # one line per claim, each with its interval
        print(f"- {claim}")
    print(h["verdict"])
