"""The held-out loss a law is fitted on: the masked-patch loss of a final checkpoint on
the trainer's held-out clips, at ONE reference mask ratio (``REF_MASK_RATIO``, the MAE
default) and ONE reference clip length (``REF_CLIP_SECONDS``, cut to the patch width,
capped at the model's longest input), with the trainer's fixed mask seeds. The same
weights score differently at another mask ratio, so a run's own ratio would confound a
law fitted across runs. The run's own value (its mask ratio and clip length, what it
optimised) is the trainer's done.json ``heldout_loss``, kept as ``heldout_loss_own``.

The files, the clips and the loss loop are the trainer's (``train.heldout``); only the
mask ratio and the clip length differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audioscale.audio.frames import frames_for_seconds
from audioscale.evaluate.context import EvalContext
from audioscale.evaluate.records import ReferenceLoss
from audioscale.evaluate.spectral import FINAL

REF_MASK_RATIO = 0.75
REF_CLIP_SECONDS = 2.0


def reference_frames(model: Any, fe: Any, seconds: float = REF_CLIP_SECONDS) -> int:
    """Mel frames of the reference clip for ``model`` (an MAE) and frontend ``fe``:
    ``seconds`` as the trainer counts them (``1 + samples // hop``), cut to the patch
    width, capped at the longest input the model takes."""
    w = model.geom.patch_w
    frames = frames_for_seconds(seconds, fe)
    return max(w, (min(frames, model.encoder.max_frames) // w) * w)


def reference_heldout_loss(run_dir: Path, ctx: EvalContext) -> dict:
    """Masked-patch loss of the final checkpoint on the trainer's held-out files, at
    ``REF_MASK_RATIO`` and ``reference_frames`` (``train.heldout.heldout_loss``: fp32, CPU
    generators seeded as the trainer seeds them): comparable across runs of any mask
    ratio and clip length."""
    import torch

    from audioscale.data.corpus import fixed_clips
    from audioscale.data.featcache import FeatureCache
    from audioscale.train.checkpoint import load_mae
    from audioscale.train.heldout import HELDOUT_CLIPS, heldout_loss, select_rows
    from audioscale.utils import resolve_device

    device = torch.device(resolve_device(ctx.device))
    model, cfg = load_mae(run_dir, FINAL, device)
    fe = cfg.frontend
    frames = reference_frames(model, fe)
    out = ReferenceLoss.build(
        heldout_loss=None,
        heldout_mask_ratio=REF_MASK_RATIO,
        heldout_clip_frames=frames,
        heldout_clip_seconds=frames * fe.hop_length / fe.sample_rate,
    )
    _, held = select_rows(cfg)
    if not held:
        return out
    cache = FeatureCache.build(held, cfg.frontend, cfg.data.cache_dir, progress=False)
    if cache.n_items == 0:
        return out
    clips = fixed_clips(cache, frames, HELDOUT_CLIPS)
    out["heldout_loss"] = heldout_loss(model, clips, device, mask_ratio=REF_MASK_RATIO)
    out["heldout_clips"] = len(clips)
    return out
