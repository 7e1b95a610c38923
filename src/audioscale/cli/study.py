"""``audioscale study demo|FILE``: corpus → sweep → fits → report, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app
from audioscale.cli.session import study_session


@app.command("study")
def study_cmd(
    source: str = typer.Argument(
        ..., help="A preset (demo, unify, gpu, gpu-hour) or a sweep YAML."
    ),
    out: Path = typer.Option(None, "--out", help="Study folder (default: studies/<name>)."),
    workers: int = typer.Option(None, help="Parallel runs (default: the spec's study.workers)."),
    executor: str = typer.Option(None, help="local | ray | inline (default: the spec's)."),
    ray_address: str = typer.Option(
        None,
        help="Join the Ray cluster at host:port (the head's `ray start` prints it; default: "
        "RAY_ADDRESS); implies --executor ray.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Train the allocated configuration and check it against its predicted interval "
        "(when the joint law is fitted).",
    ),
) -> None:
    """Run a whole study and print where the report is and its headline numbers."""
    from audioscale.cli.sweep import exit_if_failed, ray_executor
    from audioscale.study import print_headline, run_study
    from audioscale.sweep.runner import resolve_source
    from audioscale.sweep.spec import load_sweep

    executor = ray_executor(executor, ray_address)
    out = out or Path("studies") / load_sweep(resolve_source(source)).name
    with study_session(out):
        result = run_study(
            source,
            out,
            workers=workers,
            executor=executor,
            progress=not as_json,
            verify=verify,
            address=ray_address,
        )
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print_headline(result, file=None)
    exit_if_failed(result.get("failed") or [])
