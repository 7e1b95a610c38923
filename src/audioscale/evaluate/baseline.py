"""Baselines measured like a final checkpoint: a random-init encoder of a run's
architecture, log-mel statistics standardised on the pool's train split, or an external
pretrained encoder. No training, so no intermediate checkpoints and no train slice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from audioscale.config import RunConfig
from audioscale.evaluate.context import EvalContext, context_info, slice_seconds
from audioscale.evaluate.probes import probe_rows, task_embeddings
from audioscale.evaluate.records import RunInfo, TrainingInfo
from audioscale.evaluate.spectral import FINAL, measure_encoder


def external_encoder(spec: str) -> tuple[Any, dict]:
    """A pretrained reference encoder (checked by the encoder checker) and its info."""
    from audioscale.embed.checker import assert_ok
    from audioscale.embed.registry import get_encoder

    encoder = get_encoder(spec)
    assert_ok(encoder)
    params = sum(p.numel() for v in vars(encoder).values() if hasattr(v, "parameters")
                 for p in v.parameters())  # fmt: skip
    info = RunInfo.build(family=spec, preset=None, params=params, params_nonembed=params,
                         encoder_identity=encoder.identity())  # fmt: skip
    return encoder, info


def encoder_params(cfg: RunConfig) -> dict:
    """Parameter counts of the architecture (as the trainer's model card counts them)."""
    from audioscale.models.accounting import count_params
    from audioscale.models.mae import build_mae

    p = count_params(build_mae(cfg.model, cfg.frontend))
    return {"params": p.get("encoder"), "params_nonembed": p.get("encoder_nonembed"),
            "params_total": p.get("total")}  # fmt: skip


def random_init_encoder(cfg: RunConfig) -> tuple[Any, dict]:
    """The run's architecture at its init seed (``train.seed``), untrained, and its info."""
    from audioscale.embed.ours import RandomInitEncoder
    from audioscale.models.ladder import resolve

    encoder = RandomInitEncoder(cfg.model, cfg.frontend, seed=cfg.train.seed)
    model = resolve(cfg.model).model_dump(mode="json")
    info = TrainingInfo.build(
        **{k: model.get(k) for k in ("family", "preset", "width", "depth", "heads", "patch")},
        **encoder_params(cfg), steps=0, examples_seen=0, hours_seen=0.0, train_flops=0.0,
        epochs=0.0,
    )  # fmt: skip
    return encoder, info


def logmel_encoder(cfg: RunConfig, ctx: EvalContext) -> tuple[Any, dict]:
    """Log-mel statistics standardised on crops of the pool's train split
    (``embed.baselines.reference_rows``, crops of the eval pool's median clip length)."""
    from audioscale.embed.baselines import LogMelStats, reference_rows

    ref = reference_rows(cfg.data.pool, slice_seconds(ctx.pool_rows, 4.0), ctx.seed)
    encoder = LogMelStats.standardised_on(
        ref, cfg.frontend, name="pool train split", cache_dir=ctx.cache_dir,
        batch_size=ctx.batch_size, device=ctx.device,
    )  # fmt: skip
    info = RunInfo.build(
        family="logmel-stats", preset=None, params=0, params_nonembed=0,
        standardised_on=f"{len(ref)} crops of the pool's train split",
    )  # fmt: skip
    return encoder, info


def baseline_encoder(
    kind: str, cfg: RunConfig, spec: str | None, ctx: EvalContext
) -> tuple[Any, dict, EvalContext]:
    """The encoder of a baseline job of ``kind`` (``external`` names it by ``spec``), its
    info, and the context to measure it under: an external encoder is measured at its own
    last layer (the study's ``eval.rankme_layer`` indexes our blocks, not its own)."""
    if kind == "external":
        return *external_encoder(spec), replace(ctx, layer=-1)
    if kind == "random-init":
        return *random_init_encoder(cfg), ctx
    return *logmel_encoder(cfg, ctx), ctx


def measure_baseline(name: str, encoder: Any, ctx: EvalContext) -> tuple[dict, list, dict]:
    """A baseline's final spectral row, probe rows and info columns (suite means, the
    study's RankMe options, no pool overlap: it trained on nothing)."""
    tasks = task_embeddings(encoder, ctx) if ctx.task_dirs else None
    row = measure_encoder(encoder, ctx, tasks) | {
        "checkpoint": FINAL, "step": 0, "fraction": 1.0, "is_final": True, "loss": None,
    }  # fmt: skip
    probes, suite = probe_rows(name, tasks, ctx) if tasks else ([], {})
    return row, probes, suite | context_info(ctx) | {"pool_overlap": False}
