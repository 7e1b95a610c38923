"""``audioscale pretrain --config FILE [--set k=v ...] --out RUN_DIR [--no-resume]``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from audioscale.cli.app import app


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


@app.command("pretrain")
def pretrain_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder to write (created if missing)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="RunConfig YAML file."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a config key, e.g. --set model.preset=atto (repeatable)."
    ),
    no_resume: bool = typer.Option(
        False, "--no-resume", help="Start over instead of resuming an interrupted run."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Pretrain a masked autoencoder into a run folder; print its summary.

    A finished run folder is returned as is; an interrupted one resumes from its newest
    checkpoint (reproducing the uninterrupted loss curve on CPU)."""
    from audioscale.config import load_config
    from audioscale.train.plan import plan
    from audioscale.train.trainer import pretrain

    cfg = load_config(config, overrides)
    p = plan(cfg)  # bad model/budget settings fail here, before any work
    result = pretrain(cfg, out, progress=progress and not as_json, resume=not no_resume)
    summary = {
        "run_dir": str(out),
        # the results table's names: params = encoder; params_total includes the decoder
        "params": result.params.get("encoder"),
        "params_nonembed": result.params.get("encoder_nonembed"),
        "params_total": result.params.get("total"),
        "flops_per_example": p.flops_per_example,
        "train_flops": result.flops,
        "steps": result.steps,
        "batch_size": result.batch_size,
        "lr": result.lr,
        "epochs": result.epochs,
        "data_hours": result.data_hours,
        "final_loss": result.final_loss,
        "heldout_loss": result.heldout_loss,
        "wall_s": result.wall_s,
    }
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        print(json.dumps(summary))
        return
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        print(f"{k:<{width}}  {_fmt(v)}")
