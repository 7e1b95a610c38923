"""``audioscale data import-pool | import-hear | import-xares | import-csv``.

Thin shells over :mod:`audioscale.data.import_pool`, ``import_hear``, ``import_xares`` and
``import_csv``: one line per problem (file: kind: reason), a summary count, exit 1 only
when nothing could be imported (the DataError the importer raises then).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from audioscale.audio.io import DEFAULT_LIMIT_SECONDS
from audioscale.cli.app import data_app

OUT_HELP = "Task folder to create (default: tasks/<task name>)."
SUITE_HELP = "Suite file (YAML) to append the imported task to, with its weight."
DOMAIN_HELP = "speech | music | environment"


def _problems(con: Console, skipped) -> None:
    for p in skipped:
        con.print(f"[yellow]skipped[/] {escape(p.path)}: {p.kind}: {escape(p.reason)}")


@contextmanager
def _listing_problems() -> Iterator[None]:
    """When nothing could be imported, still list every problem before the error line."""
    from audioscale.data.taskwrite import NothingImported

    try:
        yield
    except NothingImported as e:
        _problems(Console(stderr=True, soft_wrap=True), e.skipped)
        raise


def _report_task(rep, as_json: bool, suite: Path | None) -> None:
    """Print a TaskImport and append the task to ``suite`` when given."""
    if suite is not None:
        from audioscale.data.suitefile import add_task

        add_task(suite, rep.out, rep.weight)
    if as_json:
        print(json.dumps(rep.to_dict(), default=str))
        return
    con = Console(stderr=True, soft_wrap=True)
    _problems(con, rep.skipped)
    for w in rep.warnings:
        con.print(f"[yellow]warning:[/] {escape(w)}")
    splits = ", ".join(f"{s} {sum(c.values())}" for s, c in rep.counts.items())
    con.print(
        f"task {rep.name!r} in {escape(rep.out)}: {rep.n_kept} clips imported ({splits}), "
        f"{len(rep.skipped)} skipped, {rep.hours:.3f} h"
        + (f"; added to suite {escape(str(suite))}" if suite else "")
    )


@data_app.command("import-pool")
def import_pool_cmd(
    src: list[Path] = typer.Argument(..., help="Folders of audio (recursive; zip members too)."),
    out: Path = typer.Option(..., "--out", help="Pool folder (manifest.csv) to write or update."),
    heldout_fraction: float = typer.Option(0.05, help="Share of files in the heldout split."),
    copy: bool = typer.Option(False, "--copy", help="Convert to 16 kHz mono WAV under OUT."),
    workers: int = typer.Option(0, help="Scan processes (0: one per CPU, at most 8)."),
    limit_seconds: float = typer.Option(DEFAULT_LIMIT_SECONDS, help="Skip longer files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Make a pretraining pool (manifest.csv: path,duration,source,split) from any folders."""
    from audioscale.data.import_pool import import_pool

    with _listing_problems():
        rep = import_pool(
            src, out, heldout_fraction=heldout_fraction, copy=copy, workers=workers or None,
            limit_seconds=limit_seconds, progress=not as_json,
        )  # fmt: skip
    if as_json:
        print(json.dumps(rep.to_dict(), default=str))
        return
    con = Console(stderr=True, soft_wrap=True)
    _problems(con, rep.skipped)
    rate = rep.n_scanned / rep.wall_s if rep.wall_s else 0.0
    con.print(
        f"pool {escape(rep.out)}: {rep.n_kept} of {rep.n_files} files kept "
        f"({rep.n_heldout} heldout), {len(rep.skipped)} bad, {rep.n_ignored} non-audio ignored, "
        + (f"{rep.n_duplicates} duplicates dropped, " if rep.n_duplicates else "")
        + f"{rep.hours:.3f} h; scanned {rep.n_scanned} new ({rate:,.0f} files/s)"
    )


@data_app.command("import-hear")
def import_hear_cmd(
    task_dir: Path = typer.Argument(..., help="A HEAR 2021 task folder (task_metadata.json)."),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    domain: str = typer.Option("environment", help=DOMAIN_HELP),
    suite: Path | None = typer.Option(None, "--suite", help=SUITE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a task already in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Import a HEAR 2021 scene task (hear-preprocess layout) into a task folder."""
    from audioscale.data.import_hear import import_hear

    with _listing_problems():
        rep = import_hear(task_dir, out, domain=domain, force=force, progress=not as_json)
    _report_task(rep, as_json, suite)


@data_app.command("import-xares")
def import_xares_cmd(
    name: str = typer.Argument(..., help="X-ARES task name, e.g. esc50 (tasks/<name>_task.py)."),
    src: Path = typer.Option(..., "--from", help="Folder of its wds-audio-*.tar shards."),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    domain: str = typer.Option("environment", help=DOMAIN_HELP),
    suite: Path | None = typer.Option(None, "--suite", help=SUITE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a task already in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Import an X-ARES clip task from its downloaded webdataset shards."""
    from audioscale.data.import_xares import import_xares

    with _listing_problems():
        rep = import_xares(name, src, out, domain=domain, force=force)
    _report_task(rep, as_json, suite)


@data_app.command("import-csv")
def import_csv_cmd(
    meta: Path = typer.Argument(..., help="Metadata CSV (e.g. ESC-50 meta/esc50.csv)."),
    audio: Path = typer.Option(..., "--audio", help="Folder holding the clips."),
    path_col: str = typer.Option(..., "--path-col", help="Column with the clip's file name."),
    label_col: str = typer.Option(..., "--label-col", help="Column with the label."),
    fold_col: str | None = typer.Option(None, "--fold-col", help="Column with fold numbers."),
    split_col: str | None = typer.Option(None, "--split-col", help="Column: train/valid/test."),
    out: Path = typer.Option(..., "--out", help="Task folder to create."),
    name: str | None = typer.Option(None, help="Task name (default: the CSV's stem)."),
    domain: str = typer.Option("environment", help=DOMAIN_HELP),
    suite: Path | None = typer.Option(None, "--suite", help=SUITE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a task already in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Import clips listed in a metadata CSV (ESC-50, UrbanSound8K, ...) into a task folder."""
    from audioscale.data.import_csv import import_csv

    with _listing_problems():
        rep = import_csv(
            meta, audio, out, path_col, label_col, fold_col=fold_col, split_col=split_col,
            name=name, domain=domain, force=force, progress=not as_json,
        )  # fmt: skip
    _report_task(rep, as_json, suite)
