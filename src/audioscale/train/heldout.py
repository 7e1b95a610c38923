"""The held-out reconstruction loss: which files a run is scored on, and the one loss loop.

- Files: ``select_rows`` takes at most ``HELDOUT_FILES`` files of the pool's heldout split,
  chosen by a fixed seeded subsample (``sampling.subsample``, seed 0, ``"permutation"``),
  beside the run's training subset.
- Clips: ``corpus.fixed_clips`` of their feature cache, up to ``HELDOUT_CLIPS`` clips.
- Loss: :func:`heldout_loss` is the masked-patch loss on those clips in batches of
  ``EVAL_BATCH``, each batch masked by a CPU generator seeded ``EVAL_MASK_SEED + i``
  (``i`` the batch's first clip), fp32: the same clips and masks for every run of a study
  on any device. The trainer scores at the run's own mask ratio (every checkpoint's
  sidecar and done.json); the evaluation stage (``evaluate.heldout``) scores a final
  checkpoint at one reference mask ratio, through the same function.

This module lives in ``train/`` because the trainer calls it while it trains; the
evaluation stage sits above ``train/`` and imports it from here.
"""

from __future__ import annotations

import torch

from audioscale.config import RunConfig
from audioscale.sampling import subsample
from audioscale.train import checkpoint as ckpt

HELDOUT_FILES = 256
HELDOUT_CLIPS = 256
EVAL_MASK_SEED = 1234
EVAL_BATCH = 64


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module,
    clips: torch.Tensor | None,
    device: torch.device,
    mask_ratio: float | None = None,
) -> float | None:
    """Mean masked-patch loss on fixed clips with fixed masks (fp32) at ``mask_ratio``
    (None: the model's own); None without clips. The model is put in eval mode for the
    loop and back in the mode it was in."""
    if clips is None or len(clips) == 0:
        return None
    model = ckpt.unwrap(model)
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(clips), EVAL_BATCH):
        g = torch.Generator().manual_seed(EVAL_MASK_SEED + i)
        x = clips[i : i + EVAL_BATCH].to(device)
        total += float(model(x, mask_ratio=mask_ratio, generator=g).loss) * len(x)
        n += len(x)
    model.train(was_training)
    return total / n


def select_rows(cfg: RunConfig) -> tuple[list[dict], list[dict]]:
    """(training rows: the nested subset of ``data.hours``, held-out rows: at most
    ``HELDOUT_FILES`` of the pool's heldout split in path order, by a fixed subsample)."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import heldout_rows, nested_subset

    rows = load_pool(cfg.data.pool)
    train = nested_subset(rows, cfg.data.hours, cfg.data.subset_seed)
    held = sorted(heldout_rows(rows), key=lambda r: str(r["path"]))
    return train, subsample(held, HELDOUT_FILES, 0, "permutation")
