"""``audioscale probe``: linear / kNN probes of one encoder on task folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audioscale.cli.app import app
from audioscale.external_specs import model_help


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_tables(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    protocols = list(out["suite_by_protocol"])
    t = Table(title=f"probe: {out['model']}")
    for col in ("task", "domain", "metric", "n_test", "chance", *protocols):
        left = col in ("task", "domain", "metric")
        t.add_column(col, justify="left" if left else "right", no_wrap=col == "task")
    for name, res in out["tasks"].items():
        first = next(iter(res.values()), {"metric": "-", "n_test": 0, "chance": None})
        t.add_row(
            name,
            out["domain_of_task"][name],
            first["metric"],
            str(first["n_test"]),
            _fmt(first["chance"]),
            *(_fmt(res.get(p, {}).get("score")) for p in protocols),
        )
    con.print(t)
    s = Table(title="suite")
    s.add_column("aggregate")
    for p in protocols:
        s.add_column(p, justify="right")
    s.add_row("mean of tasks", *(_fmt(out["suite_by_protocol"][p]) for p in protocols))
    weighted = out["suite_weighted_by_protocol"]
    how = (
        f"weighted ({out['suite_name']})"
        if out["suite_weighting"] == "suite"
        else "test-size weighted"
    )
    s.add_row(how, *(_fmt(weighted[p]) for p in protocols))
    domains = sorted({d for p in protocols for d in out["domains_by_protocol"][p]})
    for d in domains:
        s.add_row(f"domain {d}", *(_fmt(out["domains_by_protocol"][p].get(d)) for p in protocols))
    con.print(s)
    con.print(f"suite ({out['primary_protocol']}): {_fmt(out['suite'])}")
    for task, files in out["skipped"].items():
        con.print(f"[yellow]{task}: skipped {len(files)} unreadable clips[/]")


def _check_options(protocol: str, features: str, has_tasks: bool) -> tuple[str, ...]:
    """The protocols that --protocol names; a ConfigError for a bad option."""
    from audioscale.errors import ConfigError
    from audioscale.probe.suite import FEATURES

    choices = {"both": ("linear", "knn"), "linear": ("linear",), "knn": ("knn",)}
    if protocol not in choices:
        raise ConfigError("--protocol", f"{protocol!r} is not linear, knn or both")
    if features not in FEATURES:
        raise ConfigError("--features", f"{features!r} is not one of {', '.join(FEATURES)}")
    if not has_tasks:
        raise ConfigError("--task", "give --task or --suite")
    return choices[protocol]


def _checked_encoder(model: str, layer: int):
    """The encoder --model names, passed through the encoder checker, with --layer checked."""
    from audioscale.embed.checker import assert_ok
    from audioscale.embed.registry import get_encoder
    from audioscale.errors import ConfigError

    enc = get_encoder(model)
    assert_ok(enc)
    try:
        enc.layer_index(layer)
    except ValueError as e:
        raise ConfigError("--layer", str(e)) from None
    return enc


@app.command("probe")
def probe_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        help=model_help("Run folder, random:<preset>, logmel-stats or hf:<local dir>."),
    ),
    task: list[Path] = typer.Option(
        [], "--task", help="Task folder (repeatable); a folder of task folders expands."
    ),
    suite: Path | None = typer.Option(
        None,
        "--suite",
        help="Suite file (YAML: task folders with weights); with or instead of --task.",
    ),
    protocol: str = typer.Option("both", "--protocol", help="linear, knn or both."),
    features: str = typer.Option(
        "standardised",
        "--features",
        help="Probe input: standardised (z-scored per dimension on each task's train split) "
        "or raw.",
    ),
    cache: Path | None = typer.Option(
        Path("cache/embeddings"), "--cache", help="Embedding cache folder."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write a cache."),
    layer: int = typer.Option(-1, "--layer", help="Encoder layer (-1 = last)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Probe an encoder on downstream tasks; prints per-task, domain and suite scores."""
    from audioscale.probe.suite import evaluate

    protocols = _check_options(protocol, features, bool(task) or suite is not None)
    res = evaluate(
        _checked_encoder(model, layer),
        task,
        suite=suite,
        protocols=protocols,
        cache_dir=None if no_cache else cache,
        device=device,
        progress=not as_json,
        layer=layer,
        batch_size=batch_size,
        features=features,
    )
    out = res.to_json()
    if as_json:
        print(json.dumps(out))
    else:
        _print_tables(out)
