"""What a sweep's training costs, and the order its jobs run in (torch-free).

- ``job_steps``: a trained job's updates from its budget as the trainer reads it
  (``TrainConfig.budget().steps``) with ``models.accounting.cost_estimate_flops_per_example``
  for a FLOPs budget (an estimate there: the trainer's exact count lives in
  ``train.plan``); ``job_cost`` the rough training FLOPs (steps × batch × FLOPs/example).
- ``sweep_cost``: the updates the sweep trains, with WSD trunks shared (``train.trunk``):
  each trunk trains to the largest decay start of its branches once, and each branch
  trains its cooldown; runs from scratch (cosine, or a WSD run alone in its trunk) train
  all their updates. Beside it, the updates every run from scratch would cost. An
  estimate for the whole spec: trunks and runs finished by an earlier sweep count too.
- ``order_jobs``: trained jobs first, by cost, largest first (longest-processing-time
  packing keeps the workers busy to the end), baselines last. The branches of one trunk
  go together, at the cost of the whole trunk group, shortest budget first: each extends
  the trunk only to its own decay start and starts its cooldown while the next extends
  it further (``sweep.local`` gives a free worker a job of another trunk while one is
  being extended).
"""

from __future__ import annotations

from audioscale.errors import AudioscaleError
from audioscale.models.accounting import cost_estimate_flops_per_example
from audioscale.sweep.spec import TRAINED_KINDS, Job, trunk_name
from audioscale.train.schedule import cooldown_steps


def _fpe(job: Job) -> float | None:
    cfg = job.config
    try:
        return cost_estimate_flops_per_example(cfg.model, cfg.frontend, cfg.data.clip_seconds)
    except (AudioscaleError, ValueError):
        return None  # a config the model layer refuses: its run fails alone


def _steps_and_fpe(job: Job) -> tuple[int, float]:
    """Updates and FLOPs per example of a trained job ((0, 0.0) for baselines and
    refused configs)."""
    fpe = _fpe(job) if job.kind in TRAINED_KINDS else None
    if fpe is None:
        return 0, 0.0
    cfg = job.config
    return cfg.train.budget().steps(cfg.train.batch_size, cfg.data.clip_seconds, fpe), fpe


def job_steps(job: Job) -> int:
    """Updates of a trained job (0 for baselines and refused configs)."""
    return _steps_and_fpe(job)[0]


def job_cost(job: Job) -> float:
    """Rough training FLOPs of a job (for ordering only; baselines 0)."""
    steps, fpe = _steps_and_fpe(job)
    return steps * job.config.train.batch_size * fpe


def decay_start(job: Job, steps: int) -> int:
    """The step a WSD branch of ``steps`` updates leaves its trunk."""
    return steps - cooldown_steps(steps, job.config.train.cooldown_fraction)


def sweep_cost(jobs: list[Job]) -> dict[str, int | float]:
    """``{scratch_steps, trunk_steps, branch_steps, steps, ratio}`` of the trained jobs:
    ``steps = trunk_steps + branch_steps + steps of runs from scratch``; ``ratio`` =
    ``steps / scratch_steps``."""
    scratch = own = branch = 0
    trunks: dict[str, int] = {}
    for j in jobs:
        steps = job_steps(j)
        scratch += steps
        if j.branches:
            name, start = trunk_name(j.config), decay_start(j, steps)
            trunks[name] = max(trunks.get(name, 0), start)
            branch += steps - start
        else:
            own += steps
    trunk = sum(trunks.values())
    total = trunk + branch + own
    return {"scratch_steps": scratch, "trunk_steps": trunk, "branch_steps": branch,
            "steps": total, "ratio": total / scratch if scratch else 1.0}  # fmt: skip


def describe_cost(c: dict) -> str:
    """One line: what the sweep trains, and what the runs from scratch would."""
    if not c["trunk_steps"]:
        return f"training {c['steps']:,} steps"
    own = c["steps"] - c["trunk_steps"] - c["branch_steps"]
    rest = f" + {own:,} from scratch" if own else ""
    return (f"training {c['steps']:,} steps (trunks {c['trunk_steps']:,} + branches "
            f"{c['branch_steps']:,}{rest}) instead of {c['scratch_steps']:,} from scratch "
            f"({c['ratio']:.2f}x)")  # fmt: skip


def short_cost(c: dict) -> str:
    """The progress bar's note: ``13,800 of 21,000 steps`` (with trunks), else ""."""
    return f"{c['steps']:,} of {c['scratch_steps']:,} steps" if c["trunk_steps"] else ""


def order_jobs(jobs: list[Job]) -> list[Job]:
    """The execution order (module docstring)."""
    group_cost: dict[str, float] = {}
    for j in jobs:
        if j.branches:
            name = trunk_name(j.config)
            group_cost[name] = group_cost.get(name, 0.0) + job_cost(j)

    def key(j: Job) -> tuple:
        if j.kind not in TRAINED_KINDS:
            return (1, 0.0, 0)
        if j.branches:
            return (0, -group_cost[trunk_name(j.config)], job_steps(j))
        return (0, -job_cost(j), 0)

    return sorted(jobs, key=key)


def trunk_of(job: Job) -> str | None:
    """The trunk a job branches off (None: it trains from scratch)."""
    return trunk_name(job.config) if job.branches else None
