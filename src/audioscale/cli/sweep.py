"""``audioscale sweep`` and ``audioscale status``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app
from audioscale.cli.session import study_session


@app.command("sweep")
def sweep_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="Sweep spec YAML."),
    out: Path = typer.Option(..., "--out", help="Study folder (created; resumed if present)."),
    executor: str = typer.Option(
        None, help="local | ray | inline (default: the spec's study.executor)."
    ),
    workers: int = typer.Option(None, help="Parallel runs (default: the spec's study.workers)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed runs again."),
    ray_address: str = typer.Option(
        None,
        help="Join the Ray cluster at host:port (the head's `ray start` prints it; default: "
        "RAY_ADDRESS); implies --executor ray.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Run every run of a sweep (skips finished ones, resumes unfinished ones)."""
    from audioscale.sweep.runner import run_sweep

    executor = ray_executor(executor, ray_address)

    with study_session(out):
        summary = run_sweep(
            config, out, executor=executor, workers=workers, retry_failed=retry_failed,
            progress=not as_json, address=ray_address,
        )  # fmt: skip
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        _print_status(summary)
        for kind, path in summary.get("exports", {}).items():
            typer.echo(f"{kind}: {path}", err=True)
    exit_if_failed(summary["failed"])


def exit_if_failed(failed: list[dict]) -> None:
    """Some run failed: one line naming them on stderr, exit 2 (the finished runs are
    kept; ``audioscale status`` has the reasons, ``--retry-failed`` runs them again)."""
    if not failed:
        return
    ids = ", ".join(f["run_id"] for f in failed)
    typer.echo(
        f"audioscale: {len(failed)} run(s) failed: {ids}; reasons: audioscale status; "
        "fix the cause and rerun with --retry-failed (finished runs are kept)",
        err=True,
    )
    raise typer.Exit(2)


def ray_executor(executor: str | None, ray_address: str | None) -> str | None:
    """An address asks for the Ray executor: it is chosen when none is named, and naming
    another is a mistake (the spec's ``study.executor`` would otherwise decide silently)."""
    from audioscale.errors import ConfigError

    if ray_address is None:
        return executor
    if executor not in (None, "ray"):
        raise ConfigError("--ray-address", f"needs --executor ray, not {executor}")
    return "ray"


@app.command("status")
def status_cmd(
    study_dir: Path = typer.Argument(..., help="Study folder (holds study.db)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Runs by state, failed runs with their reasons, and an ETA."""
    from audioscale.sweep.runner import study_status

    summary = study_status(study_dir)
    if as_json:
        print(json.dumps(summary, default=str))
        return
    _print_status(summary)


def _print_status(s: dict) -> None:
    c = s["counts"]
    typer.echo(
        f"{s['total']} runs: {c['done']} done, {c['running']} running, {c['pending']} pending, "
        f"{c['failed']} failed"
    )
    for f in s["failed"]:
        typer.echo(f"  failed {f['run_id']} (attempts {f['attempts']}): {f['error']}")
    if s["eta_s"] is not None and (c["pending"] or c["running"]):
        typer.echo(f"ETA {s['eta_s'] / 60:.1f} min with {s['workers']} workers")
