"""Spectral rows: RankMe and the other spectral metrics of an encoder on the study's eval
pool, one row per checkpoint (``records.SpectralRow``: the pool, level, layer, centring,
N, K and route named with every value).

- Clip level: one embedding per clip, through the study's embedding cache; the final
  checkpoint's task-clip embeddings (``probes.task_embeddings``) are reused for the pool,
  so each clip is extracted once.
- Frame level: every frame streamed through the Gram accumulator (``metrics.measure``):
  memory O(K²) however many frames; ``n`` counts frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audioscale.evaluate.context import EvalContext, extract_rows
from audioscale.evaluate.records import SpectralMetrics, SpectralRow
from audioscale.utils import finite_or_none

FINAL = "final"


def checkpoints(run_dir: Path) -> list[dict]:
    """Stored checkpoints (name, step, fraction, loss = the sidecar's ``loss_window``,
    heldout_loss), by step, the final one last."""
    from audioscale.train.checkpoint import list_checkpoints, read_sidecar

    out = []
    for step, fraction, path in list_checkpoints(run_dir):
        meta = read_sidecar(path)
        # the windowed mean (folders written before loss_window had a one-column "loss")
        loss, held = meta.get("loss_window", meta.get("loss")), meta.get("heldout_loss")
        out.append({"name": path.stem, "step": step, "fraction": fraction, "loss": loss,
                    "heldout_loss": held})  # fmt: skip
    return out


def spectral_row(z: np.ndarray, ctx: EvalContext, pool: str, **extra: Any) -> dict:
    """The spectral metrics of an (N, K) embedding matrix as a ``SpectralRow``."""
    from audioscale.metrics.spectral import spectrum_metrics

    res = spectrum_metrics(np.asarray(z, dtype=np.float64), centred=ctx.centred)
    return SpectralRow.build(
        pool=pool,
        level=ctx.level,
        layer=ctx.layer,
        centred=ctx.centred,
        n=int(res.n),
        k=int(res.k),
        route=res.route,
        rankme=float(res.rankme),
        alpha_req=finite_or_none(res.alpha_req),
        nesum=finite_or_none(res.nesum),
        stable_rank=finite_or_none(res.stable_rank),
        participation_ratio=finite_or_none(res.participation_ratio),
        **extra,
    )


def pool_matrix(encoder: Any, ctx: EvalContext, tasks: dict | None = None) -> np.ndarray:
    """Embeddings of the eval pool (clips that fail to decode are left out). At clip level
    the task clips are taken from ``tasks`` when given, so each clip is extracted once."""
    if ctx.level != "clip" or not tasks:
        return extract_rows(encoder, ctx.pool_rows, ctx, ctx.level).emb
    have: dict[str, np.ndarray] = {}
    for task, ex in tasks.values():
        full = ex.full()
        have |= {r["path"]: full[i] for i, r in enumerate(task.rows) if ex.ok[i]}
    other = [r for r in ctx.pool_rows if r["path"] not in have]
    if other:
        ex = extract_rows(encoder, other, ctx, "clip")
        full = ex.full()
        have |= {r["path"]: full[i] for i, r in enumerate(other) if ex.ok[i]}
    return np.stack([have[r["path"]] for r in ctx.pool_rows if r["path"] in have])


def measure_checkpoint(run_dir: Path, c: dict, ctx: EvalContext, tasks: dict | None) -> dict:
    """The spectral row of checkpoint ``c`` (an entry of ``checkpoints``) on the eval pool;
    ``tasks`` serve the final checkpoint only."""
    from audioscale.embed.ours import RunEncoder

    encoder = RunEncoder(run_dir, checkpoint=FINAL if c["name"] == FINAL else c["step"])
    return measure_encoder(encoder, ctx, tasks if c["name"] == FINAL else None)


def measure_encoder(encoder: Any, ctx: EvalContext, tasks: dict | None = None) -> dict:
    """The spectral row of ``encoder`` on the eval pool at the study's level."""
    if ctx.level == "frame":
        return streamed_row(encoder, ctx.pool_rows, ctx, ctx.pool_name)
    return spectral_row(pool_matrix(encoder, ctx, tasks), ctx, ctx.pool_name)


def streamed_row(encoder: Any, rows: list[dict], ctx: EvalContext, pool: str) -> dict:
    """Frame-level metrics of ``rows`` streamed through the Gram accumulator
    (``metrics.measure``): memory O(K²) however many frames; ``n`` counts frames."""
    from audioscale.metrics.measure import measure

    m = measure(
        encoder, rows, samples=None, level="frame", layer=ctx.layer, centred=ctx.centred,
        pool_name=pool, device=ctx.device, batch_size=ctx.batch_size,
    )  # fmt: skip
    return SpectralRow.build(
        pool=pool, level="frame", layer=ctx.layer, centred=ctx.centred,
        n=int(m["n"]), k=int(m["k"]), route=m["route"],
        **{k: finite_or_none(m.get(k)) for k in SpectralMetrics.names()},
    )  # fmt: skip
