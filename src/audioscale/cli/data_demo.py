"""``audioscale data demo``: build the real-audio demo corpus from Debian packages."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import data_app


@data_app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("data/demo"), "--out", help="Output folder."),
    size: str = typer.Option(
        "small",
        "--size",
        help="small (tests, < 1 min), full (3.3 h pool) or large (~12 h pool, GPU).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice (splits, renders)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar or table."),
) -> None:
    """Build the demo corpus (six tasks + pretraining pool); reuses clips already built."""
    from audioscale.data.demo import build_demo

    summary = build_demo(out, size=size, seed=seed, progress=not no_progress)
    if as_json:
        print(json.dumps(summary.to_dict()))
