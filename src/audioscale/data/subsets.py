"""Nested data-volume subsets of a pretraining pool (the data axis of a scaling study).

``nested_subset(rows, hours, seed)`` takes the pool's ``train`` rows, orders them by path
(so the manifest's row order does not matter), applies one seeded permutation, and keeps
the shortest prefix whose durations add up to ``hours``. The last file of the prefix is
truncated with a ``max_seconds`` field so the subset holds exactly ``hours`` of audio.

Because the permutation depends on the seed only, never on ``hours``, the subsets are
nested: for h1 < h2 at one seed, every file of subset(h1) is in subset(h2), and the one
truncated file of subset(h1) is either whole in subset(h2) or truncated to a longer prefix
of itself. So "more data" always means "the same data plus more", as a data-scaling axis
needs.

Asking for more hours than the split holds is not an error: every train row is used, a
warning says so, and :func:`subset_hours` gives the hours actually used (runs record it as
``data_hours``).
"""

from __future__ import annotations

import warnings

import numpy as np

from audioscale.errors import DataError

MIN_TAIL_SECONDS = 1e-3  # a remainder shorter than this is float noise, not a file to read


def train_rows(rows: list[dict]) -> list[dict]:
    """Rows of the ``train`` split (rows without a ``split`` column count as train)."""
    return [r for r in rows if r.get("split", "train") == "train"]


def heldout_rows(rows: list[dict]) -> list[dict]:
    """Rows of the ``heldout`` split."""
    return [r for r in rows if r.get("split") == "heldout"]


def row_seconds(row: dict) -> float:
    """Seconds of audio a row stands for: its duration, capped by ``max_seconds`` if set."""
    d = row.get("duration")
    if d is None:
        raise DataError(f"{row.get('path')}: pool row has no duration")
    d = float(d)
    cap = row.get("max_seconds")
    return min(d, float(cap)) if cap is not None else d


def subset_hours(rows: list[dict]) -> float:
    """Total hours of audio in ``rows`` (``max_seconds`` respected)."""
    return sum(row_seconds(r) for r in rows) / 3600.0


def nested_subset(rows: list[dict], hours: float | None, seed: int = 0) -> list[dict]:
    """Seeded nested subset of the train rows adding up to ``hours`` (see module docstring).

    Returns copies of the rows (input untouched), in permutation order; the last one may
    carry ``max_seconds``. ``hours=None`` returns every train row (same order)."""
    pool = sorted(train_rows(rows), key=lambda r: str(r["path"]))
    if not pool:
        raise DataError("the pool has no train rows to take a subset from")
    order = np.random.default_rng(seed).permutation(len(pool))
    ordered = [dict(pool[i]) for i in order]
    if hours is None:
        return ordered
    if hours <= 0:
        raise DataError(f"subset hours must be positive, got {hours}")
    need = hours * 3600.0
    out: list[dict] = []
    for row in ordered:
        secs = row_seconds(row)
        if need - secs > MIN_TAIL_SECONDS:
            out.append(row)
            need -= secs
            continue
        if need > MIN_TAIL_SECONDS:
            row["max_seconds"] = min(secs, need)
            out.append(row)
        need = 0.0
        break
    if need > MIN_TAIL_SECONDS:
        have = subset_hours(out)
        warnings.warn(
            f"asked for {hours:g} h of training audio but the pool's train split holds "
            f"{have:.4g} h; using all of it",
            stacklevel=2,
        )
    return out


def crops_of(rows: list[dict], crop: float) -> list[dict]:
    """Every file cut into consecutive crops of ``crop`` seconds, in path order (a file
    shorter than one crop is one crop; a subset's ``max_seconds`` truncation is kept).
    The crops of the train and heldout slices (``evaluate.slices``) and of the log-mel
    baseline's standardisation set (``embed.baselines.reference_rows``)."""
    out = []
    for r in sorted(rows, key=lambda r: str(r["path"])):
        secs = row_seconds(r) if r.get("duration") is not None else crop
        base = float(r.get("offset_seconds") or 0.0)
        for k in range(max(1, int(secs // crop))):
            out.append({"path": r["path"], "offset_seconds": base + k * crop,
                        "max_seconds": min(crop, secs)})  # fmt: skip
    return out
