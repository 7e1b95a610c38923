"""``audioscale report STUDY_DIR``: STUDY_DIR/report.html (self-contained) and figures/."""

from __future__ import annotations

from pathlib import Path

import typer

from audioscale.cli.app import app


@app.command("report")
def report_cmd(
    study_dir: Path = typer.Argument(..., help="Study folder (holds study.db, fits.json)."),
    refit: bool = typer.Option(False, "--refit", help="Run the fits again before the report."),
) -> None:
    """Write the HTML report (fits first when fits.json is missing)."""
    from audioscale.report import write_report

    path = write_report(study_dir, refit=refit)
    print(path)
