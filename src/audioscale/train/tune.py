"""Learning-rate tuning across the size ladder: short runs over a small lr grid per size,
picked by held-out reconstruction loss, and a power law fitted through the picks.

``tune(base_cfg, sizes, lr_multipliers, steps, out_dir)`` checks that the recipe
transfers across the ladder. For every size and every multiplier ``m`` it pretrains
``base_cfg`` with that model for ``steps`` updates at ``train.lr = m × rule_lr``, where
``rule_lr`` is the recipe rule's lr for the size (``recipe.lr_for`` with ``train.lr``
unset, so a fixed lr in the base config does not collapse the grids). Then:

- Pick, per size, the lr with the lowest ``heldout_loss`` of its ``done.json`` (masked
  patch loss on the pool's ``heldout`` split with fixed clips and masks, trainer.py):
  labels are never used. Ties (exactly equal losses) go to the smaller lr. A run whose
  held-out or final training loss is not finite (NaN/inf) counts as diverged; a run
  without a held-out loss (no readable held-out clip) as ``no-heldout``; both are
  excluded from the pick and listed. A pick at either end of the grid is flagged
  (``at_grid_edge``): the optimum may lie outside the grid.
- Fit ``lr*(width) = c · width^-k`` by least squares of ``log lr*`` on ``log width`` over
  the sizes that have a pick (at least two distinct widths). The recipe's width exponent
  is 1 (µP, recipe.py), but the rule also scales lr by ``sqrt(4 / depth)`` and ladder
  depth grows with width, so the apples-to-apples comparison for the raw ``k`` is
  ``rule_effective_exponent``: the same fit through the rule's own lrs at these sizes.
  ``fit_depth_adjusted`` fits ``lr* · sqrt(depth / 4)`` instead (the rule's depth factor
  divided out), whose exponent compares with 1 directly.
- Write ``out_dir/tune.json`` atomically (layout in :meth:`TuneResult.to_dict`).

Run folders are ``out_dir/<size>-lr<lr:.4g>/``, each an ordinary pretrain run folder, so
a rerun finds ``done.json`` and trains nothing, and an interrupted tune resumes each run
where it stopped (trainer.pretrain). Choices for the short runs: the budget is exactly
``steps`` updates (any examples/hours/flops budget of the base config is dropped), no
intermediate checkpoints (``checkpoint_fractions = []``: only the final one), and every
run of a size shares ``train.seed``, so all lrs see the same batches and masks and the
comparison is paired. Warm-up follows the recipe (recipe.warmup_steps) as in a real run.

Sizes are ladder preset names (``atto`` … ``large``, ladder.SIZE_PRESETS) or custom
``w<width>d<depth>[h<heads>]`` (e.g. ``w48d2h2``; heads default to ``max(1, width //
32)``, head width 32 as the small rungs; the decoder follows the ladder's rule). The
other model fields (family, patch, mask ratio, MLP ratio, max_seconds) come from the base
config.

``load_tuned_lr(tune_json, model_cfg, batch_size=None, frontend=None)`` gives the sweep
an lr: the tuned pick when the architecture (``models.arch``: resolved model and
frontend) is a tuned size's, otherwise the fitted rule at the model's width, ``None``
when there is neither (or the family / patch differs from what was tuned).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioscale.config import (
    BUDGET_KINDS,
    FrontendConfig,
    ModelConfig,
    RunConfig,
    config_hash,
    validate,
)
from audioscale.errors import ConfigError, DataError
from audioscale.models.arch import architecture, model_architecture
from audioscale.models.ladder import SIZE_KEYS, SIZE_PRESETS, resolve
from audioscale.numerics import loglog_line
from audioscale.train import recipe
from audioscale.utils import atomic_save_json, nan_to_none

DEFAULT_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
TUNE_STEPS = 100  # updates of each short run of the grid (not config.DEFAULT_STEPS)
TUNE_FILE = "tune.json"
TUNE_VERSION = 1
CUSTOM_SIZE = re.compile(r"^w(\d+)d(\d+)(?:h(\d+))?$")


@dataclass
class TunePoint:
    """One short run of the grid."""

    multiplier: float
    lr: float
    run: str  # folder name under out_dir
    heldout_loss: float | None
    final_loss: float | None
    status: str  # ok | diverged | no-heldout


@dataclass
class SizeResult:
    """The grid of one size and its pick."""

    size: str
    model: dict  # the resolved architecture (models.arch.model_architecture)
    params_nonembed: int | None
    rule_lr: float
    points: list[TunePoint]
    best_lr: float | None
    best_multiplier: float | None
    best_heldout_loss: float | None
    at_grid_edge: bool
    excluded: list[dict] = field(default_factory=list)  # {"lr", "multiplier", "status", ...}


@dataclass
class PowerFit:
    """``lr = c · width^-k`` fitted in log-log space."""

    c: float
    k: float
    n: int
    r2: float | None  # None with two points (an exact fit)
    widths: list[int]
    lrs: list[float]

    def predict(self, width: float) -> float:
        return self.c * width ** (-self.k)


@dataclass
class TuneResult:
    out_dir: str
    steps: int
    batch_size: int
    grid: list[float]
    seed: int
    family: str
    patch: str
    pool: str
    frontend: dict  # the base config's frontend: the input of every tuned architecture
    base_lr: float
    config_hash: str
    sizes: list[SizeResult]
    fit: PowerFit | None
    fit_depth_adjusted: PowerFit | None
    rule_effective_exponent: float | None

    def to_dict(self) -> dict:
        """The content of tune.json::

        version, steps, batch_size, grid (multipliers), seed, family, patch, pool,
        frontend, base_lr, config_hash (base run identity minus model, lr, budget, checkpoints),
        rule (recipe text), rule_exponent (1.0), rule_effective_exponent,
        sizes: [{size, model, params_nonembed, rule_lr, points: [{multiplier, lr, run,
                 heldout_loss, final_loss, status}], best_lr, best_multiplier,
                 best_heldout_loss, at_grid_edge, excluded, fit_lr}],
        fit: {c, k, n, r2, widths, lrs} | null, fit_depth_adjusted: same | null,
        predictions: {size: {"rule": lr, "tuned": lr | null, "fit": lr | null}}

        Non-finite numbers (a diverged run's loss) are written as null, so the file is
        strict JSON; the point's ``status`` says why.
        """
        d = nan_to_none(asdict(self))
        d.pop("out_dir")
        d["version"] = TUNE_VERSION
        d["rule"] = recipe.RULE_TEXT
        d["rule_exponent"] = 1.0
        preds = {}
        for s, sd in zip(self.sizes, d["sizes"], strict=True):
            fit_lr = self.fit.predict(s.model["width"]) if self.fit else None
            sd["fit_lr"] = fit_lr
            preds[s.size] = {"rule": s.rule_lr, "tuned": s.best_lr, "fit": fit_lr}
        d["predictions"] = preds
        return d


# ----------------------------------------------------------------------------- sizes


def size_model(base: ModelConfig, size: str) -> ModelConfig:
    """The base model with the size applied: a ladder preset or ``w<W>d<D>[h<H>]``."""
    arch = dict.fromkeys(SIZE_KEYS)
    if size in SIZE_PRESETS:
        m = base.model_copy(update={**arch, "preset": size})
    else:
        hit = CUSTOM_SIZE.match(size)
        if not hit:
            names = ", ".join(SIZE_PRESETS)
            raise ConfigError(
                "sizes", f"{size!r} is neither a preset ({names}) nor w<width>d<depth>[h<heads>]"
            )
        w, d = int(hit.group(1)), int(hit.group(2))
        h = int(hit.group(3)) if hit.group(3) else max(1, w // 32)
        if w == 0 or d == 0 or h == 0:
            raise ConfigError("sizes", f"{size!r}: width, depth and heads must be positive")
        m = base.model_copy(update={**arch, "preset": None, "width": w, "depth": d, "heads": h})
    try:
        return resolve(m)
    except ConfigError as e:
        raise ConfigError("sizes", f"{size!r}: {e.key} {e.reason}") from None


def run_name(size: str, lr: float) -> str:
    return f"{size}-lr{lr:.4g}"


def rule_lr(model_cfg: ModelConfig, base: RunConfig) -> float:
    """The recipe rule's lr for this model under the base config (train.lr ignored)."""
    return recipe.lr_for(model_cfg, base.train.model_copy(update={"lr": None}))


def point_config(base: RunConfig, model_cfg: ModelConfig, lr: float, steps: int, size: str):
    """The RunConfig of one grid point (module docstring: budget, checkpoints, name)."""
    d = base.model_dump(mode="json")
    d["name"] = f"tune-{run_name(size, lr)}"
    d["model"] = model_cfg.model_dump(mode="json")
    d["train"].update(
        lr=lr, steps=steps, examples=None, hours=None, flops=None, checkpoint_fractions=[]
    )
    return validate(RunConfig, d)


# ----------------------------------------------------------------------------- picking


def classify(heldout: float | None, final: float | None) -> str:
    """``ok``, ``diverged`` (a non-finite loss) or ``no-heldout``."""
    for v in (heldout, final):
        if v is not None and not math.isfinite(v):
            return "diverged"
    return "no-heldout" if heldout is None else "ok"


def pick_best(points: list[TunePoint]) -> TunePoint | None:
    """The ``ok`` point of lowest held-out loss; exact ties go to the smaller lr."""
    ok = [p for p in points if p.status == "ok"]
    return min(ok, key=lambda p: (p.heldout_loss, p.lr)) if ok else None


def fit_power_law(widths: list[float], lrs: list[float]) -> PowerFit | None:
    """Least squares of ``log lr = log c - k log width``; None with < 2 distinct widths.

    Several picks at one width (e.g. two depths) all enter the fit as separate points."""
    if len(set(widths)) < 2:
        return None
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in lrs]
    n = len(xs)
    icpt_, slope_ = loglog_line(np.array(xs), np.array(ys), sequential=True)
    icpt, slope = float(icpt_), float(slope_)
    r2 = None
    if n > 2:
        my = sum(ys) / n
        ss_tot = sum((y - my) ** 2 for y in ys)
        ss_res = sum((y - icpt - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerFit(
        c=math.exp(icpt), k=-slope, n=n, r2=r2, widths=[int(w) for w in widths], lrs=list(lrs)
    )


# ----------------------------------------------------------------------------- tuning


def _parse_grid(grid) -> list[float]:
    vals = [float(g) for g in grid]
    if not vals:
        raise ConfigError("grid", "needs at least one lr multiplier")
    if any(not math.isfinite(v) or v <= 0 for v in vals):
        raise ConfigError("grid", f"multipliers must be positive numbers, got {vals}")
    if len(set(vals)) != len(vals):
        raise ConfigError("grid", f"multipliers repeat: {vals}")
    return sorted(vals)


def _check_pool(cfg: RunConfig) -> None:
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import heldout_rows

    if not heldout_rows(load_pool(cfg.data.pool)):
        raise DataError(
            f"{cfg.data.pool}: the pool has no heldout split; tune picks by held-out loss"
        )


def _read_done(run_dir: Path) -> dict:
    return json.loads((run_dir / "done.json").read_text(encoding="utf-8"))


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"tune: {msg}", file=sys.stderr, flush=True)


def tune(
    base_cfg: RunConfig,
    sizes: list[str],
    lr_multipliers: list[float] | tuple[float, ...] = DEFAULT_GRID,
    steps: int = TUNE_STEPS,
    out_dir: str | Path = "studies/tune",
    progress: bool = True,
) -> TuneResult:
    """Short pretraining runs over an lr grid per size; writes ``out_dir/tune.json``.

    See the module docstring for the grid, the pick, the fit and idempotence. Raises
    ConfigError for a bad size, grid or step count, DataError for a pool without a
    held-out split, before any training."""
    _check_sizes(sizes, steps)
    grid = _parse_grid(lr_multipliers)
    out = Path(out_dir)
    models = {s: size_model(base_cfg.model, s) for s in sizes}
    plans = _plans(base_cfg, models, grid, steps)
    _check_pool(base_cfg)
    points, params = _train(plans, out, progress)
    results = [
        _size_result(s, models[s], base_cfg, points[s], params[s], grid, progress) for s in sizes
    ]
    picked = [r for r in results if r.best_lr is not None]
    widths = [r.model["width"] for r in picked]
    fit = fit_power_law(widths, [r.best_lr for r in picked])
    fit_adj = fit_power_law(
        widths,
        [r.best_lr / math.sqrt(recipe.REF_DEPTH / r.model["depth"]) for r in picked],
    )
    rule_fit = fit_power_law([r.model["width"] for r in results], [r.rule_lr for r in results])
    res = TuneResult(
        out_dir=str(out),
        steps=steps,
        batch_size=base_cfg.train.batch_size,
        grid=grid,
        seed=base_cfg.train.seed,
        family=base_cfg.model.family,
        patch=base_cfg.model.patch,
        pool=base_cfg.data.pool,
        frontend=base_cfg.frontend.model_dump(mode="json"),
        base_lr=base_cfg.train.base_lr,
        config_hash=_base_hash(base_cfg),
        sizes=results,
        fit=fit,
        fit_depth_adjusted=fit_adj,
        rule_effective_exponent=rule_fit.k if rule_fit else None,
    )
    atomic_save_json(out / TUNE_FILE, res.to_dict())
    return res


def _check_sizes(sizes: list[str], steps: int) -> None:
    if not sizes:
        raise ConfigError("sizes", "name at least one size")
    if len(set(sizes)) != len(sizes):
        raise ConfigError("sizes", f"sizes repeat: {', '.join(sizes)}")
    if steps <= 0:
        raise ConfigError("steps", f"must be positive, got {steps}")


def _plans(base_cfg: RunConfig, models: dict[str, ModelConfig], grid: list[float], steps: int):
    """``(size, multiplier, lr, RunConfig)`` of every grid point, sizes in order."""
    plans = []
    for s, m in models.items():
        r = rule_lr(m, base_cfg)
        names = set()
        for mult in grid:
            lr = mult * r
            name = run_name(s, lr)
            if name in names:
                raise ConfigError("grid", f"multipliers too close: two runs named {name}")
            names.add(name)
            plans.append((s, mult, lr, point_config(base_cfg, m, lr, steps, s)))
    return plans


def _train(plans, out: Path, progress: bool):
    """Train (or find finished) every grid point: its TunePoint per size, and the size's
    non-embedding parameter count."""
    from audioscale.train.trainer import pretrain

    points: dict[str, list[TunePoint]] = {s: [] for s, *_ in plans}
    params: dict[str, int | None] = dict.fromkeys(points)
    for i, (s, mult, lr, cfg) in enumerate(plans, 1):
        name = run_name(s, lr)
        run_dir = out / name
        _log(progress, f"[{i}/{len(plans)}] {name} (x{mult:g} of the rule's lr)")
        try:
            pretrain(cfg, run_dir, progress=progress, resume=True)
        except ConfigError as e:
            if e.key == "out":
                raise ConfigError(
                    "out", f"{run_dir} holds a run with another config; use a new --out folder"
                ) from None
            raise
        d = _read_done(run_dir)
        held, final = d.get("heldout_loss"), d.get("final_loss")
        points[s].append(TunePoint(mult, lr, name, held, final, classify(held, final)))
        params[s] = (d.get("params") or {}).get("encoder_nonembed")
    return points, params


def _size_result(
    size: str,
    model: ModelConfig,
    base_cfg: RunConfig,
    pts: list[TunePoint],
    params: int | None,
    grid: list[float],
    progress: bool,
) -> SizeResult:
    """One size's grid, its pick (``pick_best``) and the points excluded from it."""
    best = pick_best(pts)
    excluded = [
        {"lr": p.lr, "multiplier": p.multiplier, "status": p.status, "run": p.run}
        for p in pts
        if p.status != "ok"
    ]
    for e in excluded:
        _log(progress, f"{size}: excluded {e['run']} ({e['status']})")
    return SizeResult(
        size=size,
        model=model_architecture(model),
        params_nonembed=params,
        rule_lr=rule_lr(model, base_cfg),
        points=pts,
        best_lr=best.lr if best else None,
        best_multiplier=best.multiplier if best else None,
        best_heldout_loss=best.heldout_loss if best else None,
        at_grid_edge=bool(best) and len(grid) > 1 and best.multiplier in (grid[0], grid[-1]),
        excluded=excluded,
    )


def _base_hash(cfg: RunConfig) -> str:
    """Hash of the base config's run identity (``RunConfig.identity``: no name, eval or
    execution keys) minus what tune sets itself (model, lr, budget, checkpoints)."""
    d = cfg.identity()
    d.pop("model")
    for k in ("lr", *BUDGET_KINDS, "checkpoint_fractions"):
        d["train"].pop(k, None)
    return config_hash(d)


# ----------------------------------------------------------------------------- reading


def read_tune(tune_json: str | Path) -> dict:
    """tune.json as a dict (a folder holding tune.json works too); DataError if unreadable."""
    p = Path(tune_json)
    if p.is_dir():
        p = p / TUNE_FILE
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: no tune result (run `audioscale tune` first)") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable tune result ({e.__class__.__name__})") from None
    if not isinstance(d, dict) or d.get("version") != TUNE_VERSION or "sizes" not in d:
        raise DataError(f"{p}: not a tune.json of version {TUNE_VERSION}")
    return d


def load_tuned_lr(
    tune_json: str | Path | dict,
    model_cfg: ModelConfig,
    batch_size: int | None = None,
    frontend: FrontendConfig | None = None,
) -> float | None:
    """The tuned lr for ``model_cfg`` on ``frontend`` (module docstring), or None.

    Exact match: the architecture (``models.arch.architecture``) is a tuned size's (its
    recorded ``model`` and tune.json's ``frontend``; a tune.json written before these
    were recorded in full is matched on the fields it holds) and that size has a pick →
    its best lr. Otherwise, when tune.json has a fit and the family and patch geometry
    are the tuned ones → ``c · width^-k``. ``batch_size``, when given and different from
    the tune's batch, scales the result by ``sqrt(batch_size / tune_batch)``, the
    recipe's batch rule (recipe.py)."""
    d = tune_json if isinstance(tune_json, dict) else read_tune(tune_json)
    arch = architecture(model_cfg, frontend)
    m = arch["model"]
    same_input = d.get("frontend", arch["frontend"]) == arch["frontend"]
    lr = None
    for s in d["sizes"]:
        same = same_input and bool(s["model"])
        same = same and all(m.get(k) == v for k, v in s["model"].items())
        if s.get("best_lr") is not None and same:
            lr = float(s["best_lr"])
            break
    if lr is None:
        fit = d.get("fit")
        if not fit or m["family"] != d.get("family") or m["patch"] != d.get("patch"):
            return None
        lr = float(fit["c"]) * m["width"] ** (-float(fit["k"]))
    tb = d.get("batch_size")
    if batch_size is not None and tb and batch_size != tb:
        lr *= math.sqrt(batch_size / tb)
    return lr
