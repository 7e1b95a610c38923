"""``audioscale data check`` and ``audioscale data import-folder``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from audioscale.audio.io import DEFAULT_LIMIT_SECONDS
from audioscale.cli.app import data_app


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


@data_app.command("check")
def check_cmd(
    path: Path = typer.Argument(..., help="A folder of audio, a task/pool folder or a manifest."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    show_all: bool = typer.Option(False, "--all", help="List ok files too, not only problems."),
    limit_seconds: float = typer.Option(
        DEFAULT_LIMIT_SECONDS, help="Files longer than this are reported too-long."
    ),
) -> None:
    """Scan audio and report each file's problems (exit 0 whenever the scan ran)."""
    from audioscale.data.check import check_path

    report = check_path(path, limit_seconds=limit_seconds, progress=not as_json)
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
        return
    con = Console()
    shown = [r for r in report.rows if show_all or r["status"] != "ok"]
    if shown:
        t = Table(title=f"{report.root} ({report.mode})")
        for col in ("path", "status", "kind", "reason", "dur s", "sr", "ch"):
            t.add_column(col, overflow="fold")
        style = {"bad": "red", "warn": "yellow", "ok": "green"}
        for r in shown:
            t.add_row(
                r["path"], f"[{style[r['status']]}]{r['status']}[/]", r["kind"], r["reason"],
                _fmt(r["duration"]), _fmt(r["sample_rate"]), _fmt(r["channels"]),
            )  # fmt: skip
        con.print(t)
    for e in report.errors:
        con.print(f"[red]task problem:[/] {e}")
    s = report.summary
    kinds = ", ".join(f"{k} {n}" for k, n in s["kinds"].items()) or "none"
    con.print(
        f"{s['files']} files: {s['ok']} ok, {s['warn']} warn, {s['bad']} bad ({kinds}); "
        f"{s['hours_usable']:.3f} h usable"
    )


@data_app.command("import-folder")
def import_folder_cmd(
    src: Path = typer.Argument(..., help="Folder per class (optionally under train/valid/test)."),
    out: Path = typer.Option(..., "--out", help="Task folder to create."),
    name: str | None = typer.Option(None, help="Task name (default: SRC's folder name)."),
    domain: str = typer.Option("environment", help="speech | music | environment"),
    metric: str = typer.Option("accuracy", help="accuracy | mAP"),
    seed: int = typer.Option(0, help="Seed of the stratified 70/10/20 split."),
    keep_silent: bool = typer.Option(False, "--keep-silent", help="Keep all-silent files."),
    force: bool = typer.Option(False, "--force", help="Replace a task already in OUT."),
    limit_seconds: float = typer.Option(DEFAULT_LIMIT_SECONDS, help="Skip longer files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Import folder-per-class audio into a task folder (manifest.csv + task.yaml)."""
    from audioscale.data.importer import import_folder

    rep = import_folder(
        src, out, name=name, domain=domain, metric=metric, seed=seed, keep_silent=keep_silent,
        limit_seconds=limit_seconds, force=force, progress=not as_json,
    )  # fmt: skip
    if as_json:
        print(json.dumps(rep.to_dict(), default=str))
        return
    con = Console()
    if rep.skipped:
        t = Table(title=f"skipped {len(rep.skipped)} of {rep.n_files} files")
        for col in ("path", "kind", "reason"):
            t.add_column(col, overflow="fold")
        for r in rep.skipped:
            t.add_row(r.path, r.kind, r.reason)
        con.print(t)
    t = Table(title=f"task {rep.name!r} in {rep.out} ({rep.layout})")
    t.add_column("split")
    t.add_column("labels", justify="right")
    t.add_column("files", justify="right")
    for split, counts in rep.counts.items():
        t.add_row(split, str(len(counts)), str(sum(counts.values())))
    con.print(t)
    for w in rep.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    con.print(f"kept {rep.n_kept} of {rep.n_files} files, {rep.hours:.3f} h")
