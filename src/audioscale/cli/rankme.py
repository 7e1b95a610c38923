"""``audioscale rankme``: RankMe and the other spectral metrics of an encoder on a pool of
clips (``--model SPEC --data DIR|MANIFEST``) or of an embedding matrix
(``--embeddings FILE.npy``). ``--json`` prints one object: top-level ``rankme``, every
metric, ``n``, ``k``, ``route`` and the options that produced them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from audioscale.cli.app import app
from audioscale.errors import AudioscaleError, EmbeddingError
from audioscale.external_specs import model_help


def load_embeddings(path: Path) -> np.ndarray:
    """Memory-map a 2-D numeric .npy file (never unpickles); EmbeddingError otherwise."""
    if not path.is_file():
        raise EmbeddingError(f"{path}: embeddings file not found")
    try:
        z = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmbeddingError(f"{path}: not a readable .npy array ({reason})") from None
    if not isinstance(z, np.ndarray):
        raise EmbeddingError(f"{path}: expected one .npy array, got {type(z).__name__}")
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise EmbeddingError(f"{path}: dtype {z.dtype} is not a real number type")
    if z.ndim != 2:
        raise EmbeddingError(f"{path}: expected a 2-D (N, K) matrix, got shape {z.shape}")
    return z


def load_rows(data: Path, split: str | None) -> list[dict]:
    """Rows of a task folder, pool folder or manifest CSV (optionally one split)."""
    from audioscale.data.manifest import read_manifest

    manifest = data / "manifest.csv" if data.is_dir() else data
    if not manifest.is_file():
        raise AudioscaleError(f"{data}: no manifest (expected a task/pool folder or a CSV)")
    rows = read_manifest(manifest)
    if split is not None:
        rows = [r for r in rows if str(r.get("split", "")).strip() == split]
        if not rows:
            raise AudioscaleError(f"{manifest}: no rows with split {split!r}")
    if not rows:
        raise AudioscaleError(f"{manifest}: manifest has no rows")
    return rows


def _print_human(r: dict) -> None:
    centred = "centred" if r["centred"] else "uncentred"
    layer = "" if r.get("layer") is None else f", layer {r['layer']}"
    print(
        f"RankMe {r['rankme']:.4f}  (N={r['n']}, K={r['k']}, {r['level']} level{layer}, "
        f"{centred}, route {r['route']}, eps {r['eps']:g})"
    )
    if r["alpha_req"] is None:
        alpha = "alpha-ReQ -"
    else:
        lo, hi = r["alpha_req_range"]
        alpha = f"alpha-ReQ {r['alpha_req']:.4f} (ranks {lo}-{hi}, R^2 {r['alpha_req_r2']:.3f})"
    print(
        f"{alpha}  NESum {r['nesum']:.4f}  stable rank {r['stable_rank']:.4f}  "
        f"participation ratio {r['participation_ratio']:.4f}"
    )
    extra = f", {r['clips_skipped']} clips skipped" if r.get("clips_skipped") else ""
    samples = r["samples"] or "all"
    print(f"pool {r['pool']} ({r['pool_rows']} rows, samples {samples}, seed {r['seed']}{extra})")


@app.command("rankme")
def rankme_cmd(
    embeddings: Path | None = typer.Option(
        None, "--embeddings", help="A 2-D (N, K) .npy embedding matrix (memory-mapped)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help=model_help("Run folder, random:<preset>, logmel-stats or hf:<dir>."),
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Task folder, pool folder or manifest CSV (with --model)."
    ),
    split: str | None = typer.Option(None, help="Only rows of this split (e.g. heldout)."),
    samples: int = typer.Option(25600, help="Clips (or rows) measured; 0 = all."),
    level: str = typer.Option("clip", help="clip | frame (frame: every frame, streamed)."),
    layer: int = typer.Option(-1, help="Encoder block (-1 = last)."),
    centred: bool = typer.Option(False, "--centred", help="Covariance (centred) variant."),
    seed: int = typer.Option(0, help="Seed of the deterministic subsample."),
    route: str = typer.Option("auto", help="auto | svd | gram."),
    cache_dir: Path | None = typer.Option(None, help="Embedding cache folder."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    batch_size: int = typer.Option(16, help="Clips per encoder batch."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """RankMe (Garrido et al. 2023) and alpha-ReQ, NESum, stable rank, participation ratio."""
    from audioscale.metrics.measure import measure, measure_embeddings

    if samples < 0:
        raise AudioscaleError(f"--samples must be >= 0, got {samples}")
    if level not in ("clip", "frame"):
        raise AudioscaleError(f"--level must be clip or frame, got {level!r}")
    if embeddings is not None and (model is not None or data is not None):
        raise AudioscaleError("rankme: give either --embeddings or --model with --data")
    if embeddings is not None:
        z = load_embeddings(embeddings)
        result = measure_embeddings(
            z, centred=centred, samples=samples or None, seed=seed, level=level,
            layer=None, pool_name=str(embeddings), route=route,
        )  # fmt: skip
        result["source"] = "embeddings"
    elif model is not None and data is not None:
        from audioscale.embed.registry import get_encoder

        rows = load_rows(data, split)
        encoder = get_encoder(model)
        pool = f"{data}" + (f"[{split}]" if split else "")
        result = measure(
            encoder, rows, samples=samples or None, level=level, layer=layer, centred=centred,
            seed=seed, pool_name=pool, cache_dir=str(cache_dir) if cache_dir else None,
            device=device, progress=not as_json and sys.stderr.isatty(),
            batch_size=batch_size, route=route,
        )  # fmt: skip
        result["source"] = "model"
        result["model"] = model
    else:
        raise AudioscaleError("rankme: give --embeddings FILE.npy, or --model SPEC and --data DIR")
    if as_json:
        print(json.dumps(result, default=str))
    else:
        _print_human(result)
