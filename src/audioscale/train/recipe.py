"""The training recipe: learning rate, warm-up and batch size as stated functions of the
model's width and depth and of the batch, so that one base learning rate serves a whole
size ladder (in early studies with one fixed lr across a 30x size range, the deepest,
widest runs scored lowest).

Rule (``lr_for``), with ``train.lr`` set it is used as is instead:

    lr = base_lr * (REF_WIDTH / width) * sqrt(REF_DEPTH / depth) * sqrt(batch / REF_BATCH)

- Width, ``REF_WIDTH = 128`` (the ``pico`` rung): µP for Adam scales the learning rate of
  hidden weight matrices as 1/width (Yang et al. 2022, "Tensor Programs V: Tuning Large
  Neural Networks via Zero-Shot Hyperparameter Transfer", arXiv 2203.03466, Table 3). We
  apply the factor to every parameter group, the common "µP-lite" simplification (the
  embedding and output layers of full µP keep a width-independent lr; ours are a small
  share of the parameters); ``base_lr`` is the lr at the reference width.
- Depth, ``REF_DEPTH = 4``: Depth-µP (Yang et al. 2023, "Tensor Programs VI: Feature
  Learning in Infinite-Depth Neural Networks", arXiv 2310.02244) prescribes Adam learning
  rates ∝ 1/sqrt(depth) for residual networks. Our blocks are plain pre-LN (no 1/sqrt(L)
  branch multiplier), so this is the heuristic part of the rule: with ``L`` blocks each
  moving the residual stream by roughly lr, scaling lr by sqrt(REF_DEPTH / L) keeps the
  summed (uncorrelated) update of the stream at the reference size.
- Batch, ``REF_BATCH = 64``: square-root scaling for adaptive optimisers (Malladi et al.
  2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS,
  arXiv 2205.10287): lr ∝ sqrt(batch).
- Warm-up (``warmup_steps``): ``warmup_frac`` of the steps, but at least
  ``2 / (1 - beta2)`` updates (40 at beta2 = 0.95), the untuned warm-up length that
  covers Adam's second-moment estimate settling (Ma & Yarats 2021, "On the adequacy of
  untuned warmup for adaptive optimization", AAAI), itself capped at a fifth of the run;
  ``warmup_frac = 0`` turns warm-up off. Under ``schedule: wsd`` the warm-up may not
  depend on the budget (one trunk serves every budget): ``2 / (1 - beta2)`` updates.
  ``train.warmup_steps`` fixes the length under either schedule.

The rule's constants are calibration, not truth: ``audioscale tune`` style short runs over
``base_lr`` check them on new data. ``describe`` returns the rule and its numbers for
model cards.
"""

from __future__ import annotations

import math

from audioscale.config import ModelConfig, TrainConfig

REF_WIDTH = 128
REF_DEPTH = 4
REF_BATCH = 64

RULE_TEXT = (
    "lr = base_lr * (128 / width) * sqrt(4 / depth) * sqrt(batch / 64): muP 1/width for Adam "
    "(Yang et al. 2022, Tensor Programs V), 1/sqrt(depth) after Depth-muP (Yang et al. 2023, "
    "Tensor Programs VI), sqrt batch scaling for Adam (Malladi et al. 2022); warm-up "
    "max(warmup_frac * steps, min(2 / (1 - beta2), steps / 5)) (Ma & Yarats 2021)"
)


def _resolved(model_cfg: ModelConfig) -> ModelConfig:
    if model_cfg.width is None or model_cfg.depth is None:
        from audioscale.models.ladder import resolve

        return resolve(model_cfg)
    return model_cfg


def factors(model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict[str, float]:
    """The rule's three multipliers for this model and batch."""
    m = _resolved(model_cfg)
    return {
        "width_factor": REF_WIDTH / m.width,
        "depth_factor": math.sqrt(REF_DEPTH / m.depth),
        "batch_factor": math.sqrt(train_cfg.batch_size / REF_BATCH),
    }


def lr_for(model_cfg: ModelConfig, train_cfg: TrainConfig) -> float:
    """Peak learning rate: ``train_cfg.lr`` when set, else the rule (module docstring)."""
    if train_cfg.lr is not None:
        return float(train_cfg.lr)
    f = factors(model_cfg, train_cfg)
    return train_cfg.base_lr * f["width_factor"] * f["depth_factor"] * f["batch_factor"]


def warmup_steps(train_cfg: TrainConfig, steps: int) -> int:
    """Warm-up length in updates (module docstring); never more than ``steps``.
    ``train.warmup_steps`` fixes it; under ``schedule: wsd`` it may not depend on the
    budget (the trunk is shared by every budget), so it is ``2 / (1 - beta2)`` alone."""
    if train_cfg.warmup_steps is not None:
        return min(steps, train_cfg.warmup_steps)
    if train_cfg.warmup_frac == 0 or steps <= 1:
        return 0
    if train_cfg.schedule == "wsd":
        return math.ceil(2.0 / (1.0 - train_cfg.beta2))
    floor = min(math.ceil(2.0 / (1.0 - train_cfg.beta2)), steps // 5)
    return min(steps, max(round(train_cfg.warmup_frac * steps), floor))


def describe(model_cfg: ModelConfig, train_cfg: TrainConfig, steps: int | None = None) -> dict:
    """The rule's text and every number that went into this run's lr (for model cards)."""
    m = _resolved(model_cfg)
    out = {
        "rule": RULE_TEXT,
        "source": "override (train.lr)" if train_cfg.lr is not None else "rule",
        "lr": lr_for(m, train_cfg),
        "base_lr": train_cfg.base_lr,
        "ref_width": REF_WIDTH,
        "ref_depth": REF_DEPTH,
        "ref_batch": REF_BATCH,
        "width": m.width,
        "depth": m.depth,
        "batch_size": train_cfg.batch_size,
        **factors(m, train_cfg),
    }
    if steps is not None:
        out["warmup_steps"] = warmup_steps(train_cfg, steps)
        out["steps"] = steps
    return out
