"""What a run is, decided from its config before any data is read, and what it has
seen: the plan (resolved model, clip length, budget in steps, lr, warm-up, checkpoint
steps), the counters of examples / tokens / FLOPs / hours / epochs after ``step`` steps,
and the model card (``model_card.json``).

- Budget: ``cfg.train.budget()`` (config.Budget) turned into steps by ``Budget.steps``:
  ``train.examples`` → ``ceil(examples / batch)`` steps; ``train.hours`` of audio seen →
  ``ceil(hours * 3600 / clip_seconds / batch)``; ``train.flops`` →
  ``ceil(flops / (train_flops_per_example * batch))`` (models.accounting); else
  ``train.steps`` (config.DEFAULT_STEPS when no budget is set).
- Clips: ``clip_frames`` = the frames of ``data.clip_seconds`` (``1 + samples // hop``) cut
  to a multiple of the patch width, as accounting counts tokens; ``clip_seconds`` in the
  logs is ``clip_frames * hop / sr`` (2.0 for 2 s).
- Counters: ``tokens`` counts all patches of the clips seen (masked and visible);
  ``flops`` is examples × train_flops_per_example; ``hours_seen`` = examples ×
  clip_seconds / 3600; ``epochs`` = examples × clip_seconds / seconds of training audio
  (repetition).
- Schedule: ``train.schedule`` cosine (decay over the whole run) or wsd (constant lr,
  then a cooldown of ``schedule.cooldown_steps(steps, train.cooldown_fraction)`` updates
  whose start must lie after the warm-up); ``TrainPlan.schedule`` is the lr function.
- Checkpoints at ``round(f * steps)`` for each ``train.checkpoint_fractions`` ``f``
  (deduplicated, at least step 1, below the last step) and at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from audioscale.audio.frames import frames_for_seconds
from audioscale.config import RunConfig
from audioscale.errors import ConfigError
from audioscale.train import recipe
from audioscale.train.schedule import Schedule, cooldown_steps
from audioscale.utils import resolve_device

if TYPE_CHECKING:
    from audioscale.data.featcache import FeatureCache


@dataclass
class TrainPlan:
    """Everything decided from the config alone, before touching data."""

    cfg: RunConfig  # model resolved
    clip_frames: int
    clip_seconds: float
    tokens_per_example: int
    visible_per_example: int
    flops_per_example: float
    steps: int
    budget: dict  # config.Budget.to_dict(): {kind, value} as given
    lr: float
    warmup: int
    checkpoint_steps: list[int]
    run_hash: str = ""  # RunConfig.run_hash of the config as given (before resolution)
    cooldown: int | None = None  # wsd: the decaying updates at the end (None: cosine)

    @property
    def schedule(self) -> Schedule:
        t = self.cfg.train
        shape = t.cooldown_shape
        return Schedule(self.lr, self.warmup, self.steps, t.min_lr_frac, self.cooldown, shape)

    @property
    def decay_start(self) -> int:
        """The step a WSD run leaves its trunk (``steps`` for cosine: it has none)."""
        return self.schedule.decay_start


def budget_steps(cfg: RunConfig, clip_seconds: float, flops_per_example: float) -> tuple[int, dict]:
    """Steps for the run's budget (``cfg.train.budget().steps``), and the budget as given."""
    budget = cfg.train.budget()
    return budget.steps(cfg.train.batch_size, clip_seconds, flops_per_example), budget.to_dict()


def checkpoint_steps(fractions: list[float], steps: int) -> list[int]:
    """``round(f * steps)`` per fraction, at least 1, below ``steps``, deduplicated."""
    picked = {max(1, round(f * steps)) for f in fractions}
    return sorted(s for s in picked if s < steps)


def plan(cfg: RunConfig) -> TrainPlan:
    """Resolve the model and the budget; raises ConfigError before any work."""
    from audioscale.models import accounting
    from audioscale.models.ladder import resolve
    from audioscale.models.patch import geometry

    run_hash = cfg.run_hash()
    model_cfg = resolve(cfg.model)
    cfg = cfg.model_copy(update={"model": model_cfg})
    try:
        torch.device(resolve_device(cfg.train.device))
    except RuntimeError:
        raise ConfigError(
            "train.device", f"{cfg.train.device!r} is not auto, cpu, cuda or cuda:N"
        ) from None
    fe = cfg.frontend
    g = geometry(model_cfg.patch, fe.n_mels)
    frames = frames_for_seconds(cfg.data.clip_seconds, fe)
    clip_frames = (frames // g.patch_w) * g.patch_w
    if clip_frames == 0:
        raise ConfigError(
            "data.clip_seconds", f"{cfg.data.clip_seconds} s is shorter than one patch"
        )
    max_frames = frames_for_seconds(model_cfg.max_seconds, fe)
    if clip_frames > max_frames:
        raise ConfigError(
            "data.clip_seconds",
            f"{cfg.data.clip_seconds} s is longer than model.max_seconds={model_cfg.max_seconds}",
        )
    clip_seconds = clip_frames * fe.hop_length / fe.sample_rate
    n_tok, n_vis = accounting.tokens_per_example(model_cfg, fe, cfg.data.clip_seconds)
    fpe = accounting.train_flops_per_example(model_cfg, fe, cfg.data.clip_seconds)
    steps, budget = budget_steps(cfg, clip_seconds, fpe)
    warmup, cooldown = recipe.warmup_steps(cfg.train, steps), None
    if cfg.train.schedule == "wsd":
        cooldown = cooldown_steps(steps, cfg.train.cooldown_fraction)
        if steps - cooldown < warmup:
            raise ConfigError(
                "train.cooldown_fraction",
                f"the cooldown of {cooldown} steps starts inside the {warmup}-step warm-up "
                f"of this {steps}-step run; lower it or set train.warmup_steps",
            )
    return TrainPlan(
        cfg=cfg,
        clip_frames=clip_frames,
        clip_seconds=clip_seconds,
        tokens_per_example=n_tok,
        visible_per_example=n_vis,
        flops_per_example=fpe,
        steps=steps,
        budget=budget,
        lr=recipe.lr_for(model_cfg, cfg.train),
        warmup=warmup,
        checkpoint_steps=checkpoint_steps(cfg.train.checkpoint_fractions, steps),
        run_hash=run_hash,
        cooldown=cooldown,
    )


def counters(p: TrainPlan, data_seconds: float, step: int) -> dict:
    """Examples, tokens, FLOPs, hours and epochs seen after ``step`` steps of ``p``
    (``data_seconds``: seconds of training audio)."""
    ex = step * p.cfg.train.batch_size
    return {
        "examples": ex,
        "tokens": ex * p.tokens_per_example,
        "flops": ex * p.flops_per_example,
        "hours_seen": ex * p.clip_seconds / 3600.0,
        "epochs": ex * p.clip_seconds / data_seconds,
    }


def model_card(
    cfg: RunConfig,
    p: TrainPlan,
    params: dict,
    cache: FeatureCache,
    rows: list[dict],
    execution: dict,
) -> dict:
    """``model_card.json``: params, FLOPs and tokens per example, the resolved model and
    frontend, the lr rule, the budget and the data the run trains on."""
    from audioscale.data.subsets import subset_hours

    return {
        "name": cfg.name,
        "run_hash": p.run_hash or cfg.run_hash(),
        "family": cfg.model.family,
        "params": params,
        "flops_per_example": p.flops_per_example,
        "train_flops": p.flops_per_example * p.steps * cfg.train.batch_size,
        "tokens_per_example": p.tokens_per_example,
        "visible_tokens_per_example": p.visible_per_example,
        "clip_frames": p.clip_frames,
        "clip_seconds": p.clip_seconds,
        "model": cfg.model.model_dump(mode="json"),
        "frontend": cfg.frontend.model_dump(mode="json"),
        "lr": p.lr,
        "lr_rule": recipe.describe(cfg.model, cfg.train, p.steps),
        "warmup_steps": p.warmup,
        "steps": p.steps,
        "schedule": {
            "kind": cfg.train.schedule,
            "cooldown_steps": p.cooldown,
            "cooldown_shape": cfg.train.cooldown_shape if p.cooldown else None,
            "decay_start": p.decay_start,
        },  # fmt: skip
        "batch_size": cfg.train.batch_size,
        "budget": p.budget,
        "checkpoint_steps": p.checkpoint_steps,
        "data": {
            "pool": cfg.data.pool,
            "hours_requested": cfg.data.hours,
            "subset_hours": subset_hours(rows),
            "data_hours": cache.total_seconds / 3600.0,
            "files": cache.n_items,
            "skipped_files": [{"path": s["path"], "reason": s["reason"]} for s in cache.skipped],
            "cache_key": cache.key,
        },
        "execution": execution,
    }
