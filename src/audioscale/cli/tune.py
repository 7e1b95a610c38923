"""``audioscale tune``: short runs over an lr grid per size, picked by held-out loss."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app
from audioscale.train.tune import DEFAULT_GRID, TUNE_STEPS


def _split(text: str, key: str) -> list[str]:
    from audioscale.errors import ConfigError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(key, "give a comma-separated list")
    return items


def _floats(text: str, key: str) -> list[float]:
    from audioscale.errors import ConfigError

    out = []
    for t in _split(text, key):
        try:
            out.append(float(t))
        except ValueError:
            raise ConfigError(key, f"{t!r} is not a number") from None
    return out


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _print_table(d: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"held-out loss after {d['steps']} steps (batch {d['batch_size']})")
    t.add_column("size")
    t.add_column("width", justify="right")
    t.add_column("rule lr", justify="right")
    for m in d["grid"]:
        t.add_column(f"x{m:g}", justify="right")
    t.add_column("best lr", justify="right")
    for s in d["sizes"]:
        cells = []
        for p in s["points"]:
            if p["status"] != "ok":
                cells.append(f"[red]{p['status']}[/]")
                continue
            cell = f"{_fmt(p['heldout_loss'])}"
            if p["lr"] == s["best_lr"]:
                cell = f"[bold green]{cell}*[/]"
            cells.append(cell)
        best = _fmt(s["best_lr"], 3) + (" (edge)" if s["at_grid_edge"] else "")
        t.add_row(s["size"], str(s["model"]["width"]), _fmt(s["rule_lr"], 3), *cells, best)
    con.print(t)
    fit = d["fit"]
    if fit:
        r2 = "" if fit["r2"] is None else f", R² {fit['r2']:.3f}"
        eff = d["rule_effective_exponent"]
        con.print(
            f"fit: lr* = {fit['c']:.4g} · width^-{fit['k']:.3f} over {fit['n']} sizes{r2}; "
            f"rule: width^-1 (with its depth factor, effective exponent {_fmt(eff, 3)})"
        )
        adj = d["fit_depth_adjusted"]
        if adj:
            con.print(f"depth-adjusted fit (lr* · sqrt(depth/4)): exponent {adj['k']:.3f}")
    else:
        con.print("fit: needs picks at two or more widths")


@app.command("tune")
def tune_cmd(
    config: Path | None = typer.Option(None, "--config", help="Base RunConfig YAML."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key: a.b=value."),
    sizes: str = typer.Option(
        ..., "--sizes", help="Comma-separated ladder presets or w<W>d<D>[h<H>], e.g. atto,femto."
    ),
    steps: int = typer.Option(TUNE_STEPS, "--steps", help="Updates per short run."),
    grid: str = typer.Option(
        ",".join(f"{g:g}" for g in DEFAULT_GRID),
        "--grid",
        help="lr multipliers of the recipe rule's lr per size.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the runs and tune.json."),
    as_json: bool = typer.Option(False, "--json", help="Print tune.json as one JSON object."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress output."),
) -> None:
    """Tune the learning rate per size with short runs; writes OUT/tune.json.

    Picks by held-out reconstruction loss (no labels) and fits lr* = c · width^-k."""
    from audioscale.config import load_config
    from audioscale.train.tune import tune

    if out.exists() and not out.is_dir():
        from audioscale.errors import ConfigError

        raise ConfigError("--out", f"{out} is a file, not a folder")
    cfg = load_config(config, overrides)
    res = tune(
        cfg,
        _split(sizes, "--sizes"),
        _floats(grid, "--grid"),
        steps=steps,
        out_dir=out,
        progress=not (as_json or no_progress),
    )
    d = res.to_dict()
    if as_json:
        print(json.dumps(d))
        return
    _print_table(d)
    typer.echo(f"wrote {Path(res.out_dir) / 'tune.json'}", err=True)
