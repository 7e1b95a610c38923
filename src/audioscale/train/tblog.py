"""TensorBoard event files beside ``metrics.jsonl``: ``RUN_DIR/tb/events.out.tfevents.*``.

Scalars (step = optimisation step): ``train/loss``, ``train/lr``, ``train/examples_per_s``
at every ``metrics.jsonl`` line (the trainer), and ``eval/rankme`` and
``eval/heldout_loss`` at every checkpoint (the sweep, once it has measured them).
``tensorboard --logdir STUDY`` then shows every run of a study, named by its folder.

Written through ``torch.utils.tensorboard.SummaryWriter``, which needs the optional
``tensorboard`` package (``pip install 'audioscale[tensorboard]'``); without it the first
attempt logs one info line on stderr and nothing else happens, never a failure.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

TB_DIR = "tb"
EVAL_SUFFIX = ".eval"  # the event file of the checkpoint curves (one per run)
_warned = False


def open_writer(run_dir: str | Path, purge_step: int | None = None, suffix: str = ""):
    """A SummaryWriter on ``run_dir/tb``, or None when tensorboard is not installed.

    ``purge_step``: a resumed run's first step; TensorBoard hides the events an
    interrupted attempt wrote at or after it (those steps are trained again)."""
    global _warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # not installed, or installed but broken (e.g. a protobuf
        # mismatch raises TypeError on import): an optional extra never fails a run
        if not _warned:
            why = "not installed" if isinstance(e, ImportError) else f"unusable ({e})"
            print(f"info: tensorboard {why}: no event files (metrics.jsonl only)",
                  file=sys.stderr)  # fmt: skip
            _warned = True
        return None
    log_dir = str(Path(run_dir) / TB_DIR)
    return SummaryWriter(log_dir=log_dir, purge_step=purge_step, filename_suffix=suffix)


def scalars(writer, step: int, values: dict[str, float | None]) -> None:
    """Add the finite ``values`` at ``step`` (no-op without a writer)."""
    if writer is None:
        return
    for tag, v in values.items():
        if v is not None and math.isfinite(float(v)):
            writer.add_scalar(tag, float(v), global_step=int(step))
    writer.flush()


def close(writer) -> None:
    if writer is not None:
        writer.close()


def checkpoint_curves(run_dir: str | Path, points: list[dict]) -> None:
    """``eval/rankme`` and ``eval/heldout_loss`` for each measured checkpoint (``points``:
    dicts with ``step`` and optional ``rankme`` / ``heldout_loss``), in their own event
    file (suffix ``.eval``) that replaces the one of an earlier evaluation."""
    for old in (Path(run_dir) / TB_DIR).glob(f"events.out.tfevents.*{EVAL_SUFFIX}"):
        old.unlink()
    writer = open_writer(run_dir, suffix=EVAL_SUFFIX)
    for p in sorted(points, key=lambda p: p["step"]):
        scalars(writer, p["step"], {"eval/rankme": p.get("rankme"),
                                    "eval/heldout_loss": p.get("heldout_loss")})  # fmt: skip
    close(writer)
