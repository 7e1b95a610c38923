"""What a run's evaluation depends on besides its weights (``eval_key``), and which
finished results were evaluated under another one (stale: evaluated again from their
checkpoints, never retrained)."""

from __future__ import annotations

from pathlib import Path

from audioscale.config import config_hash
from audioscale.evaluate.context import EvalContext
from audioscale.evaluate.markers import read_marker

# 2: equal-N RankMe gap, held-out loss at the reference mask, standardised log-mel baseline
# 3: probe features (eval.probe_features) in the key, standardised by default
# 4: per-clip test outcomes in every probe row (store table outcomes) and suite_se
EVAL_VERSION = 4


def eval_key(ctx: EvalContext) -> str:
    """What a run's evaluation depends on besides its weights: the pool (its name hashes its
    file list), the RankMe options and the probe setup. A run evaluated under another key
    (the pool's manifest or the task folders changed since) is stale and is evaluated again.

    This is the study-level half of a run's identity: ``RunConfig.run_hash`` leaves every
    ``eval.*`` key out, and each one reaches this key: ``tasks`` (folders, and their clips
    through the pool name), ``rankme_pool``, ``rankme_samples`` and ``rankme_seed`` (the
    pool's file list), ``rankme_level / layer / centred``, ``rankme_seed`` (again),
    ``protocols`` and ``probe_features``; so do the study's ``eval_pool / eval_split /
    eval_include_tasks``. A change re-evaluates finished runs from their checkpoints and
    never retrains them.
    Execution settings of the evaluation (cache folder, device, batch size) are not in it.
    ``EVAL_VERSION`` is in it too: bump it when the evaluation code changes what it
    measures, so that finished studies are re-evaluated (never retrained)."""
    return config_hash(
        {"version": EVAL_VERSION, "pool": ctx.pool_name, "level": ctx.level,
         "layer": ctx.layer, "centred": ctx.centred, "seed": ctx.seed,
         "tasks": list(ctx.task_dirs), "protocols": list(ctx.protocols),
         "probe_features": ctx.probe_features}
        | ({"suite": [ctx.suite_name, ctx.suite_weights]} if ctx.suite_weights else {}),
        16,
    )  # fmt: skip


def is_current(result: dict, ctx: EvalContext) -> bool:
    """Whether a finished result was evaluated under ``ctx`` (results written before
    ``eval_key`` existed are compared by their pool name, when they name one)."""
    if result.get("eval_key") is not None:
        return result["eval_key"] == eval_key(ctx)
    pool = (result.get("info") or {}).get("rankme_pool")
    return pool is None or pool == ctx.pool_name


def stale_runs(run_ids: list[str], runs_dir: str | Path, ctx: EvalContext) -> list[str]:
    """Those of ``run_ids`` whose run folder holds a result evaluated under another
    ``eval_key`` than ``ctx``'s."""
    out = []
    for rid in run_ids:
        result = read_marker(Path(runs_dir) / rid / "result.json")
        if result is not None and not is_current(result, ctx):
            out.append(rid)
    return out
