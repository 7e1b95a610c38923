"""Sweep specs: a base RunConfig plus axes, expanded into validated jobs.

A sweep YAML looks like::

    name: demo
    base: {data: {pool: data/demo/pool}, train: {steps: 300}}   # a RunConfig dict
    axes: {size: [atto, pico], data_hours: [0.1, 0.5]}          # grid product
    zip:                                                        # varied together
      - {model.width: [64, 128], model.heads: [2, 4]}
    runs: [{size: nano, steps: 600}]                            # explicit extra runs
    baselines: {random_init: true, logmel_stats: true, external: [crepe:tiny, hear-naive]}
    study: {workers: 2}

Choices:
- The grid is the product of every axis and every zip group (a zip group counts as one
  axis whose i-th point sets all its keys' i-th values). ``runs`` are appended after
  the grid, each applied on top of ``base`` alone. Axes in file order; the last axis
  varies fastest.
- Keys are dotted RunConfig paths or the named shorthands in ``SHORTHANDS``.
- Every expanded run is validated as a RunConfig before any work; a bad key or value
  raises one ConfigError line naming the key and the run index.
- ``eval`` settings may not vary across a sweep: every run is measured on the same pool
  with the same options, so its numbers are comparable.
- Run id = readable slug + 12-hex hash (``pico-h0p5-s300-3f9a2c1b7e01``): the slug says
  what is inside (the budget by its kind: ``s``/``e``/``th``/``f``), the hash
  (RunConfig.run_hash: what determines the weights; no eval or execution keys) is the
  identity. Changing ``eval`` or an execution key (device, log_every, cache_dir, …) of a
  finished study keeps every run id, so nothing is trained again.
- Baselines (on by default): random-init encoders of every distinct architecture
  (``models.arch``: the resolved model and the frontend, training-only keys such as
  mask_ratio excluded), one per init seed (``baselines.random_init_seeds``, from the
  seed of the first run using the architecture; names of the extra seeds end in
  ``-seed<N>``), and one log-mel-statistics baseline per distinct frontend.
  They are measured and probed like trained runs, with ``kind`` naming them.
- ``baselines.external`` (off by default): pretrained reference encoders by their
  ``get_encoder`` spec (``audioscale.external_specs``: crepe:full, crepe:tiny,
  resemblyzer, hear-naive, or hf:<dir>), one job each of kind ``external``, measured and
  probed on the same pool and tasks at the encoder's own last layer (``eval.rankme_layer``
  indexes our blocks) and never fitted: RankMe compares runs of one method. A name that
  is unknown or whose package is missing fails the spec at load with one line naming the
  key.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from audioscale.config import RunConfig, Strict, apply_overrides, config_hash, load_yaml, validate
from audioscale.errors import ConfigError
from audioscale.models.arch import TRAINING_ONLY, arch_id

SHORTHANDS = {
    "size": "model.preset",
    "width": "model.width",
    "depth": "model.depth",
    "heads": "model.heads",
    "data_hours": "data.hours",
    "steps": "train.steps",
    "examples": "train.examples",
    "flops": "train.flops",
    "clip": "data.clip_seconds",
    "mask": "model.mask_ratio",
    "patch": "model.patch",
    "family": "model.family",
    "seed": "train.seed",
    "lr": "train.lr",
}

# kinds that are pretrained (a verification run is trained like any run, and kept out of
# the fits so that it tests them: scaling.verify)
TRAINED_KINDS = ("trained", "verify")


class Baselines(Strict):
    """Reference encoders measured beside the trained runs (DESIGN: name the random-init value)."""

    random_init: bool = True
    # init seeds per architecture (the first run's seed, +1, ...): the learning checks
    # compare each trained run with the mean of its architecture's random-init scores
    random_init_seeds: int = Field(1, ge=1, le=16)
    logmel_stats: bool = True
    external: list[str] = Field(default_factory=list)  # get_encoder specs: reference rows

    @field_validator("external")
    @classmethod
    def _known(cls, specs: list[str]) -> list[str]:
        from audioscale.external_specs import external_problem

        for i, spec in enumerate(specs):
            problem = external_problem(spec)
            if problem:
                raise ValueError(f"item {i}: {problem}")
        return [str(spec).strip() for spec in specs]


class StudySettings(Strict):
    """How a sweep is executed and what its shared evaluation pool is."""

    workers: int = Field(1, gt=0)
    executor: Literal["local", "ray", "inline"] = "local"
    threads_per_worker: int = Field(1, gt=0)  # torch threads per worker process on CPU
    gpus_per_run: float = Field(0.0, ge=0)  # Ray only; local workers get one GPU each if any
    max_retries: int = Field(2, ge=0)  # Ray: retries of a run whose worker was lost
    eval_pool: str | None = None  # pool folder/manifest for RankMe; None: base data.pool
    eval_split: str = "heldout"  # the pool split that joins the eval pool
    eval_include_tasks: bool = True  # all task clips (labels unused) join the eval pool
    demo: Literal["small", "full", "large"] | None = None  # build the demo corpus first (study)
    demo_dir: str = "data/demo"
    verify: bool = True  # study: train the allocated configuration and check its prediction


class SweepFile(Strict):
    name: str = "sweep"
    base: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    baselines: Baselines = Field(default_factory=Baselines)
    study: StudySettings = Field(default_factory=StudySettings)
    description: str = ""


@dataclass(frozen=True)
class Job:
    """One unit of work: a trained run or a baseline encoder, with its id and config."""

    run_id: str
    kind: str  # trained | random-init | baseline | external | verify
    config: RunConfig
    encoder: str | None = None  # kind external: the get_encoder spec
    # a WSD run: the configs of the runs that share its trunk (attach_trunks), itself too
    branches: tuple[RunConfig, ...] = ()

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class Sweep:
    name: str
    base: RunConfig
    jobs: list[Job]
    settings: StudySettings
    baselines: Baselines
    source: str = ""
    description: str = ""
    overrides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trained(self) -> list[Job]:
        return [j for j in self.jobs if j.kind == "trained"]

    def spec_hash(self) -> str:
        return config_hash([[j.run_id, j.kind] for j in self.jobs])


# --------------------------------------------------------------------------- expansion


def canonical_key(key: str) -> str:
    return SHORTHANDS.get(key, key)


def grid_points(spec: SweepFile) -> list[dict[str, Any]]:
    """Override dicts (dotted keys) of the grid: product of axes and zip groups."""
    dims: list[list[dict[str, Any]]] = []
    for key, values in spec.axes.items():
        if not values:
            raise ConfigError(f"axes.{key}", "axis has no values")
        dims.append([{canonical_key(key): v} for v in values])
    for gi, group in enumerate(spec.zip):
        lengths = {k: len(v) for k, v in group.items()}
        if not group or len(set(lengths.values())) != 1:
            raise ConfigError(f"zip[{gi}]", f"lists must have one equal length, got {lengths}")
        n = next(iter(lengths.values()))
        dims.append([{canonical_key(k): v[i] for k, v in group.items()} for i in range(n)])
    if not dims:
        return [] if spec.runs else [{}]
    return [_merge(point) for point in itertools.product(*dims)]


def _merge(parts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


def _apply(base: dict, overrides: dict[str, Any]) -> dict:
    items = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return apply_overrides(base, items)


def run_config(base: dict, overrides: dict[str, Any], index: int) -> RunConfig:
    """Validate base + overrides; errors name the run index and the key."""
    try:
        return validate(RunConfig, _apply(base, overrides))
    except ConfigError as e:
        raise ConfigError(f"run {index}: {e.key}", e.reason) from None


# --------------------------------------------------------------------------- names


def _num(v: Any) -> str:
    """Numbers in names: ``0.5`` → ``0p5`` (no dots: tools that treat the text after a dot
    as a file suffix, e.g. ``Path.with_suffix``, would cut the name)."""
    return (f"{v:g}" if isinstance(v, float) else str(v)).replace(".", "p")


def size_tag(cfg: RunConfig) -> str:
    m = cfg.model
    if m.width is None and m.depth is None and m.preset:
        return m.preset
    tag = (f"w{m.width}" if m.width else "") + (f"d{m.depth}" if m.depth else "")
    return f"{m.preset}-{tag}" if m.preset else tag


def budget_tag(cfg: RunConfig) -> str:
    """The budget in a run name (``TrainConfig.budget()``): ``s<steps>``, ``e<examples>``,
    ``th<hours seen>`` or ``f<flops>`` (3 significant digits: ``f1p5e12``)."""
    b = cfg.train.budget()
    if b.kind == "steps":
        return f"s{b.value}"
    if b.kind == "examples":
        return f"e{b.value}"
    if b.kind == "hours":
        return f"th{_num(b.value)}"
    return "f" + f"{float(b.value):.3g}".replace("+", "").replace(".", "p")


_SHORT = {
    "data.clip_seconds": "c",
    "model.mask_ratio": "m",
    "train.seed": "seed",
    "train.lr": "lr",
    "model.heads": "hd",
}
_ALWAYS = {"model.preset", "model.width", "model.depth", "data.hours"}
_ALWAYS |= {"train.steps", "train.examples", "train.hours", "train.flops"}


def slug(cfg: RunConfig, varied: list[str]) -> str:
    """Readable name: size, data hours, budget, then every other key the sweep varies."""
    hours = cfg.data.hours
    parts = [size_tag(cfg), f"h{_num(hours)}" if hours is not None else "hall", budget_tag(cfg)]
    for key in varied:
        if key in _ALWAYS:
            continue
        value = _get(cfg.model_dump(mode="json"), key)
        if value is None:  # unset here (the preset's value), named by the size tag
            continue
        if key in ("model.patch", "model.family"):
            parts.append(str(value))
        else:
            parts.append(f"{_SHORT.get(key, key.split('.')[-1])}{_num(value)}")
    text = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:80]


def _get(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def run_id(cfg: RunConfig) -> str:
    return f"{cfg.name}-{cfg.run_hash()}"


def trunk_name(cfg: RunConfig) -> str:
    """The folder name of a WSD run's trunk: ``trunk-<size>-<trunk hash>``."""
    return f"trunk-{size_tag(cfg)}-{cfg.trunk_hash()}"


def attach_trunks(jobs: list[Job]) -> list[Job]:
    """Trained WSD jobs that share a trunk identity learn each other's configs
    (``Job.branches``), so each branch's trunk keeps what all of them need; a WSD run
    alone in its trunk trains from scratch (nothing to share)."""
    groups: dict[str, list[RunConfig]] = {}
    for j in jobs:
        if j.kind in TRAINED_KINDS and j.config.train.schedule == "wsd":
            groups.setdefault(trunk_name(j.config), []).append(j.config)
    out = []
    for j in jobs:
        cfgs = groups.get(trunk_name(j.config), []) if j.config.train.schedule == "wsd" else []
        share = j.kind in TRAINED_KINDS and len(cfgs) > 1
        out.append(dataclasses.replace(j, branches=tuple(cfgs) if share else ()))
    return out


# --------------------------------------------------------------------------- baselines


def _written_architecture(cfg: RunConfig) -> dict:
    """The architecture as the config writes it (a preset unresolved): what a random-init
    job's id hashes, unchanged since ids were first written, so that the baselines of an
    existing study keep their ids. Which jobs exist is decided by ``models.arch.arch_id``."""
    model = cfg.model.model_dump(mode="json", exclude=set(TRAINING_ONLY))
    return {"model": model, "frontend": cfg.frontend.model_dump(mode="json")}


def random_init_name(cfg: RunConfig) -> str:
    """``random-<size>``, plus the family and patch shape where they are not the defaults
    (ViT, time patches), so that random-init encoders of different architectures of one
    size have different names."""
    m = cfg.model
    extra = [v for v, default in ((m.family, "vit"), (m.patch, "time")) if v != default]
    return "-".join(["random", size_tag(cfg), *extra])


def baseline_jobs(trained: list[Job], baselines: Baselines) -> list[Job]:
    jobs: list[Job] = []
    if baselines.random_init:
        jobs += random_init_jobs(trained, baselines.random_init_seeds)
    if baselines.logmel_stats:
        seen: set[str] = set()
        for job in trained:
            cfg = job.config
            key = config_hash(
                {"kind": "logmel-stats", "frontend": cfg.frontend.model_dump(mode="json")}
            )
            if key in seen:
                continue
            seen.add(key)
            bcfg = cfg.model_copy(update={"name": "logmel-stats"})
            jobs.append(Job(f"logmel-stats-{key}", "baseline", bcfg))
    for spec in dict.fromkeys(baselines.external):
        jobs.append(external_job(trained[0].config, spec))
    return jobs


def _arch_key(cfg: RunConfig) -> str:
    """``arch_id``; a model the ladder refuses is keyed as written (its runs fail alone)."""
    try:
        return arch_id(cfg.model, cfg.frontend)
    except ConfigError:
        return config_hash(_written_architecture(cfg))


def random_init_jobs(trained: list[Job], seeds: int) -> list[Job]:
    """``seeds`` random-init jobs per architecture (``models.arch.arch_id``), from the seed
    of the first trained run that has it; a seed another run already holds is skipped."""
    jobs: list[Job] = []
    seen: set[tuple[str, int]] = set()
    for job in trained:
        cfg = job.config
        arch = _arch_key(cfg)
        first = cfg.train.seed
        for seed in range(first, first + seeds):
            if (arch, seed) in seen:  # another run's seeds (a seed axis) already hold it
                continue
            seen.add((arch, seed))
            key = config_hash({"kind": "random-init", **_written_architecture(cfg), "seed": seed})
            name = random_init_name(cfg) + ("" if seed == first else f"-seed{seed}")
            train = cfg.train.model_copy(update={"seed": seed})
            bcfg = cfg.model_copy(update={"name": name, "train": train})
            jobs.append(Job(f"{name}-{key}", "random-init", bcfg))
    return jobs


def external_job(base: RunConfig, spec: str) -> Job:
    """A pretrained reference encoder (``get_encoder(spec)``): run id from the spec, the
    version of the wheel holding its weights and their fingerprint
    (``external_specs.fingerprint``: other weights are another row); the config
    only carries the study's data and eval settings."""
    from audioscale.external_specs import fingerprint, package_version

    name = re.sub(r"[^A-Za-z0-9_-]+", "-", spec.removeprefix("hf:")).strip("-")[:40]
    key = config_hash({"kind": "external", "encoder": spec, "version": package_version(spec),
                       "weights": fingerprint(spec)})  # fmt: skip
    return Job(f"ext-{name}-{key}", "external", base.model_copy(update={"name": name}), spec)


def verification_job(sweep: Sweep, preset: str, steps: int) -> Job:
    """The run that checks a compute allocation: the sweep's base config at ladder rung
    ``preset`` (its width, depth and decoder), trained for ``steps`` steps."""
    model = {"model.preset": preset, "model.width": None, "model.depth": None,
             "model.heads": None, "model.decoder_width": None, "model.decoder_depth": None,
             "model.decoder_heads": None}  # fmt: skip
    budget = {"train.steps": int(steps), "train.examples": None, "train.hours": None,
              "train.flops": None}  # fmt: skip
    base = sweep.base.model_dump(mode="json")
    cfg = run_config(base, {**model, **budget}, -1)
    cfg = cfg.model_copy(update={"name": "verify-" + slug(cfg, [])})
    return Job(run_id(cfg), "verify", cfg)


# --------------------------------------------------------------------------- entry points


def load_sweep(source: str | Path | dict) -> Sweep:
    """Parse, expand and validate a sweep (YAML path or dict) into jobs; no work is done."""
    raw = source if isinstance(source, dict) else load_yaml(source)
    spec: SweepFile = validate(SweepFile, raw)
    base = validate(RunConfig, spec.base)
    points = grid_points(spec) + [
        {canonical_key(k): v for k, v in run.items()} for run in spec.runs
    ]
    varied = _varied_keys(points)
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for i, overrides in enumerate(points):
        cfg = run_config(spec.base, overrides, i)
        if cfg.eval != base.eval:
            raise ConfigError(f"run {i}: eval", "eval settings cannot vary within a sweep")
        cfg = cfg.model_copy(update={"name": slug(cfg, varied)})
        rid = run_id(cfg)
        if rid in seen:  # the same config twice (e.g. an explicit run equal to a grid point)
            continue
        seen[rid] = i
        jobs.append(Job(rid, "trained", cfg))
    if not jobs:
        raise ConfigError("axes", "the sweep expands to no runs")
    jobs = attach_trunks(jobs + baseline_jobs(jobs, spec.baselines))
    return Sweep(
        name=spec.name,
        base=base,
        jobs=jobs,
        settings=spec.study,
        baselines=spec.baselines,
        source=str(source) if not isinstance(source, dict) else "<dict>",
        description=spec.description,
        overrides=points,
    )


def _varied_keys(points: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for p in points:
        for k in p:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in points}) > 1]


def expand(sweep_yaml: str | Path | dict) -> list[RunConfig]:
    """The trained runs of a sweep as validated RunConfigs (names = readable slugs)."""
    return [j.config for j in load_sweep(sweep_yaml).trained]
