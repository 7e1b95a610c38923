"""RankMe of a run's final checkpoint on slices of its own data, and the equal-N gap.

- ``rankme_train``: RankMe on crops of the run's own pretraining audio;
  ``rankme_heldout``: the same on crops of its pool's heldout split (never trained on).
  Both use the same N (at most the eval pool's N; fewer when the run's data or the
  heldout split hold fewer crops, the seeded ``"choice"`` subsample of
  ``sampling.subsample``) and the same crop length (the eval pool's median clip,
  ``context.slice_seconds``: pool files can be much longer than task clips).
- ``rankme_gap`` (the results contract) compares the train slice with the eval pool at
  equal N: RankMe grows with N, and a run's train slice can hold fewer crops than the
  pool has clips, so the larger of the two embedding matrices is subsampled (the nested
  ``"permutation"`` subsample, seed ``ctx.seed``) to the smaller N before both are
  measured; ``rankme_gap_N`` is that N, ``rankme_gap_pool`` / ``rankme_gap_train`` the
  two values. At frame level N counts frames, and both sides get the same number of
  clips (the ``"choice"`` subsample of each side's clips). It still contains the shift
  between pool audio and task clips; ``rankme_gap_heldout = rankme_train -
  rankme_heldout`` isolates train vs unseen audio of one distribution (two slices of one
  N by construction): the cleaner repetition / memorisation signal.
"""

from __future__ import annotations

from pathlib import Path

from audioscale.config import RunConfig
from audioscale.evaluate.context import EvalContext, extract_rows, slice_seconds
from audioscale.evaluate.records import GapInfo, SliceInfo
from audioscale.evaluate.spectral import FINAL, pool_matrix, spectral_row, streamed_row
from audioscale.sampling import subsample

TRAIN_SLICE = "train-slice"
HELDOUT_SLICE = "heldout-slice"


def run_train_rows(cfg: RunConfig) -> list[dict]:
    """The files this run pretrains on (the trainer's ``select_rows``: the nested subset
    of its pool's train split)."""
    from audioscale.train.heldout import select_rows

    return select_rows(cfg)[0]


def slices(cfg: RunConfig, ctx: EvalContext, n_cap: int) -> dict[str, list[dict]]:
    """Crops of the run's own training audio and of its pool's heldout split, the same
    number of each (at most ``n_cap``, the eval pool's N) and the same crop length (the
    eval pool's median clip), so the two RankMe values differ only by train vs unseen."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import crops_of, heldout_rows, nested_subset

    pool = load_pool(cfg.data.pool)
    crop = slice_seconds(ctx.pool_rows, default=4.0)
    train = crops_of(nested_subset(pool, cfg.data.hours, cfg.data.subset_seed), crop)
    held = crops_of(heldout_rows(pool), crop)
    n = min(n_cap, len(train), len(held)) if held else min(n_cap, len(train))
    return {
        TRAIN_SLICE: subsample(train, n, ctx.seed, "choice"),
        HELDOUT_SLICE: subsample(held, n, ctx.seed, "choice"),
    }


def slice_cap(final: dict, ctx: EvalContext) -> int:
    """Clips a slice may hold: as many as the eval pool measured (the final row's ``n``
    counts frames at frame level, so there it is the pool's clip count)."""
    return final["n"] if ctx.level == "clip" else len(ctx.pool_rows)


def slice_metrics(run_dir: Path, cfg: RunConfig, n_cap: int, ctx: EvalContext, which: str):
    """Spectral metrics of the final checkpoint on one of ``slices`` (None when empty)."""
    from audioscale.embed.ours import RunEncoder

    rows = slices(cfg, ctx, n_cap)[which]
    if not rows:
        return None
    encoder = RunEncoder(run_dir, checkpoint=FINAL)
    if ctx.level == "frame":
        return streamed_row(encoder, rows, ctx, which)
    return spectral_row(extract_rows(encoder, rows, ctx, ctx.level).emb, ctx, which)


def slice_info(train: dict, held: dict) -> dict:
    """``SliceInfo`` of the two slice rows (empty dicts for a slice left empty), with
    ``rankme_gap_heldout`` when both were measured."""
    info = SliceInfo.build(rankme_train=train.get("rankme"), rankme_train_N=train.get("n"),
                           rankme_heldout=held.get("rankme"))  # fmt: skip
    if train and held:
        info["rankme_gap_heldout"] = train["rankme"] - held["rankme"]
    return info


def gap_metrics(run_dir: Path, cfg: RunConfig, n_cap: int, ctx: EvalContext, tasks):
    """``rankme_gap`` at equal N: RankMe of the train slice and of the eval pool, the
    larger side subsampled (seed ``ctx.seed``) to the smaller N. Frame level: the same
    number of clips on both sides (N counts frames). None when the train slice is
    empty."""
    from audioscale.embed.ours import RunEncoder

    rows = slices(cfg, ctx, n_cap)[TRAIN_SLICE]
    if not rows:
        return None
    encoder = RunEncoder(run_dir, checkpoint=FINAL)
    if ctx.level == "frame":
        k = min(len(rows), len(ctx.pool_rows))
        tr = streamed_row(encoder, subsample(rows, k, ctx.seed, "choice"), ctx, TRAIN_SLICE)
        pool = subsample(ctx.pool_rows, k, ctx.seed, "choice")
        po = streamed_row(encoder, pool, ctx, ctx.pool_name)
        n_used, clips = None, k
    else:
        zt = extract_rows(encoder, rows, ctx, "clip").emb
        zp = pool_matrix(encoder, ctx, tasks)
        n_used = clips = min(len(zt), len(zp))
        tr = spectral_row(subsample(zt, n_used, ctx.seed), ctx, TRAIN_SLICE)
        po = spectral_row(subsample(zp, n_used, ctx.seed), ctx, ctx.pool_name)
    return GapInfo(
        rankme_gap=tr["rankme"] - po["rankme"],
        rankme_gap_N=tr["n"] if n_used is None else n_used,
        rankme_gap_N_pool=po["n"],
        rankme_gap_clips=clips,
        rankme_gap_train=tr["rankme"],
        rankme_gap_pool=po["rankme"],
    ).to_dict()
