"""The typer application objects that the command modules attach to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="audioscale",
    help="Scaling studies of general audio representations: MAE pretraining, RankMe, "
    "probes and power-law fits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build, import and check audio datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
