"""Typed configs (pydantic), YAML loading and ``--set a.b=c`` overrides.

Every config model forbids unknown keys, so a typo fails before any work with one line
naming the key. ``RunConfig`` is the full description of one pretraining run;
``RunConfig.identity()`` is the part of it that determines the run's weights, and its
hash (``run_hash``) is the run's identity everywhere (sweep run ids, the store, resume
checks, model cards). ``TrainConfig.budget()`` is the one reading of the training budget.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from audioscale.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FrontendConfig(Strict):
    """Log-mel frontend (Dasheng-like defaults). See audioscale.audio.frontend."""

    sample_rate: int = Field(16000, gt=0)
    n_fft: int = Field(512, gt=0)
    hop_length: int = Field(160, gt=0)
    n_mels: int = Field(64, gt=0)
    f_min: float = Field(0.0, ge=0)
    f_max: float = Field(8000.0, gt=0)
    # librosa's convention: centred frames, zero ("constant") padding of n_fft // 2 each side.
    pad_mode: Literal["constant", "reflect"] = "constant"
    amin: float = Field(1e-10, gt=0)
    top_db: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FrontendConfig:
        if self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max={self.f_max} is above Nyquist ({self.sample_rate / 2})")
        if self.f_min >= self.f_max:
            raise ValueError("f_min must be below f_max")
        return self


class DataConfig(Strict):
    """Which audio a run pretrains on."""

    pool: str = "data/demo/pool"  # pool folder (manifest.csv) or a manifest path
    hours: float | None = Field(None, gt=0)  # nested data-volume subset; None = all train split
    subset_seed: int = 0
    clip_seconds: float = Field(2.0, gt=0)  # training crop length (the clip-length axis)
    cache_dir: str = "cache/features"
    num_workers: int = Field(0, ge=0)


class ModelConfig(Strict):
    """Encoder + MAE. ``preset`` fills width/depth/heads/decoder; explicit values win."""

    family: Literal["vit", "conformer"] = "vit"
    preset: str | None = "pico"
    width: int | None = Field(None, gt=0)
    depth: int | None = Field(None, gt=0)
    heads: int | None = Field(None, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    decoder_width: int | None = Field(None, gt=0)
    decoder_depth: int | None = Field(None, gt=0)
    decoder_heads: int | None = Field(None, gt=0)
    patch: Literal["time", "square"] = "time"  # time: n_mels x 4 frames; square: 16 x 16
    mask_ratio: float = Field(0.75, ge=0.0, lt=1.0)
    max_seconds: float = Field(10.24, gt=0)  # longest clip the positional table serves
    norm_pix_loss: bool = True
    conv_kernel: int = Field(31, gt=0)  # conformer family: depthwise conv kernel in time tokens
    # input normalisation after the fixed dB affine (patch.py): "fixed" = none more;
    # "batchnorm" = learnable per-mel-bin BatchNorm (Dasheng), running stats at eval
    input_norm: Literal["fixed", "batchnorm"] = "fixed"


DEFAULT_STEPS = 200  # the budget of a run that sets none


@dataclass(frozen=True)
class Budget:
    """A run's training budget as given: ``kind`` (steps | examples | hours | flops) and its
    ``value``. ``TrainConfig.budget()`` makes it; the trainer (``steps``), the run name
    (sweep.spec.budget_tag) and the sweep's cost estimate (sweep.cost.job_cost) all read it,
    so a run budgeted by FLOPs is named and costed by its FLOPs."""

    kind: Literal["steps", "examples", "hours", "flops"]
    value: float

    def steps(self, batch_size: int, clip_seconds: float, flops_per_example: float) -> int:
        """Optimiser updates for this budget: ``examples`` → ``ceil(examples / batch)``;
        ``hours`` of audio seen → ``ceil(hours * 3600 / clip_seconds / batch)``; ``flops`` →
        ``ceil(flops / (flops_per_example * batch))``; at least 1. ``clip_seconds`` and
        ``flops_per_example`` are the trainer's (clip cut to whole patches,
        models.accounting); estimates serve for a cost."""
        b = batch_size
        if self.kind == "steps":
            return int(self.value)
        if self.kind == "examples":
            return max(1, math.ceil(self.value / b))
        if self.kind == "hours":
            return max(1, math.ceil(self.value * 3600.0 / clip_seconds / b))
        return max(1, math.ceil(self.value / (flops_per_example * b)))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}


class TrainConfig(Strict):
    """Optimiser, schedule and budget. The budget is the one of ``steps``, ``examples``,
    ``hours`` (of audio seen) or ``flops`` that is set, ``steps = DEFAULT_STEPS`` (200) when
    none is; setting two is an error. Read it with :meth:`budget`, never from the fields."""

    steps: int | None = Field(None, gt=0)  # None: DEFAULT_STEPS unless another budget is set
    examples: int | None = Field(None, gt=0)
    hours: float | None = Field(None, gt=0)  # hours of audio seen
    flops: float | None = Field(None, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float | None = Field(None, gt=0)  # None: the recipe rule (audioscale.train.recipe)
    base_lr: float = Field(1e-3, gt=0)  # the rule's lr at its reference width
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    # a fixed warm-up length; None: the recipe rule (cosine) or 2 / (1 - beta2) (wsd)
    warmup_steps: int | None = Field(None, ge=0)
    # cosine decay over the run, or warmup-stable-decay (train/schedule.py)
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float = Field(0.2, gt=0, le=1)  # wsd: the decaying share of the run
    cooldown_shape: Literal["linear", "1-sqrt"] = "1-sqrt"  # wsd: the decay's shape
    min_lr_frac: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile; on CPU pays only for long runs (bench/RESULTS.md)
    threads: int | None = Field(None, gt=0)
    checkpoint_fractions: list[float] = Field(
        default_factory=lambda: [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]
    )
    log_every: int = Field(10, gt=0)
    # also write train_state.pt this often (seconds; at the next log line) besides checkpoints
    state_every_s: float | None = Field(600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _legacy_default_steps(cls, data: Any) -> Any:
        """Run folders written before ``steps`` defaulted to None carry ``steps: 200`` (the
        old default) beside their real budget: that 200 was never a choice, so drop it."""
        if isinstance(data, dict) and data.get("steps") == DEFAULT_STEPS:
            if any(data.get(k) is not None for k in BUDGET_KINDS if k != "steps"):
                data = {k: v for k, v in data.items() if k != "steps"}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        budgets = [k for k in BUDGET_KINDS if getattr(self, k) is not None]
        if len(budgets) > 1:
            raise ValueError(f"set one budget, not {' and '.join(budgets)}")
        for f in self.checkpoint_fractions:
            if not 0 < f < 1:
                raise ValueError(f"checkpoint fraction {f} is not in (0, 1)")
        return self

    def budget(self) -> Budget:
        """The run's budget (kind and value); ``steps = DEFAULT_STEPS`` when none is set."""
        for kind in BUDGET_KINDS:
            value = getattr(self, kind)
            if value is not None:
                return Budget(kind, value)
        return Budget("steps", DEFAULT_STEPS)


BUDGET_KINDS = ("steps", "examples", "hours", "flops")


class EvalConfig(Strict):
    """What a run is measured on after training. Study-level: not part of a run's
    identity (RunConfig.run_hash); a change re-evaluates finished runs
    (evaluate.keys.eval_key)."""

    tasks: list[str] = Field(default_factory=list)  # task folders
    suite: str | None = None  # a suite file (data.suitefile): more tasks, and their weights
    rankme_pool: str | None = None  # unlabeled pool manifest; None = the data pool's heldout split
    rankme_samples: int = Field(25600, gt=0)
    rankme_level: Literal["clip", "frame"] = "clip"
    rankme_layer: int = -1
    rankme_centred: bool = False
    rankme_seed: int = 0
    protocols: list[Literal["linear", "knn"]] = Field(default_factory=lambda: ["linear", "knn"])
    # probe input: z-scored per dimension on each task's train split, or as extracted
    probe_features: Literal["standardised", "raw"] = "standardised"


class RunConfig(Strict):
    """One pretraining run, end to end. Its ``run_hash`` (of ``identity()``) names the run."""

    name: str = "run"
    data: DataConfig = Field(default_factory=DataConfig)
    frontend: FrontendConfig = Field(default_factory=FrontendConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.model.patch == "square" and self.frontend.n_mels % 16:
            raise ValueError(
                "model.patch=square needs frontend.n_mels divisible by 16, "
                f"got {self.frontend.n_mels}"
            )
        return self

    def identity(self) -> dict:
        """What determines the run's weights: the config minus ``name``, the study-level
        ``eval`` section and the execution keys (``EXECUTION_KEYS``). See ``run_hash``."""
        d = self.model_dump(mode="json", exclude={"name", *STUDY_SECTIONS})
        for section, keys in EXECUTION_KEYS.items():
            for k in keys:
                d[section].pop(k, None)
        for k, default in LATE_DEFAULTS.items():  # older run ids stay what they were
            if d["train"].get(k, default) == default:
                d["train"].pop(k, None)
        if self.train.schedule == "cosine":
            for k in WSD_KEYS:
                d["train"].pop(k, None)
        return d

    def trunk_identity(self) -> dict:
        """What determines a WSD run's weights up to its decay start: :meth:`identity`
        without the budget and the keys that act only after it (``TRUNK_FREE_KEYS``).
        WSD runs with one trunk identity share the constant-lr trunk (``train.trunk``)."""
        if self.train.schedule != "wsd":
            raise ConfigError("train.schedule", "only wsd runs share a trunk")
        d = self.identity()
        for k in (*BUDGET_KINDS, *TRUNK_FREE_KEYS):
            d["train"].pop(k, None)
        return {"trunk": d}

    def trunk_hash(self) -> str:
        """The trunk's identity: 12 hex of sha256 over :meth:`trunk_identity`."""
        return config_hash(self.trunk_identity())

    def run_hash(self) -> str:
        """The run's identity: 12 hex of sha256 over :meth:`identity` (sorted-key JSON).

        In it: ``data`` (pool, hours, subset_seed, clip_seconds), all of ``frontend``,
        ``model`` (as written: ``preset: pico`` and the same sizes spelt out hash apart),
        and the training recipe, budget and seed (``train`` minus the execution keys,
        ``precision`` and ``checkpoint_fractions`` included). Two configs with one hash
        train the same weights; on CPU with the same seed, bit for bit.

        Left out, and why:
        - ``eval.*``: how a finished run is measured is a study setting; when it changes,
          runs are evaluated again (evaluate.keys.eval_key), never trained again.
        - execution (``EXECUTION_KEYS``): ``data.cache_dir``, ``data.num_workers`` (the
          batch of step k is a function of (seed, k) whoever loads it), ``train.log_every``,
          ``train.state_every_s`` (what is logged and saved, not what is computed: only the
          window that the logged and final training loss average over), and
          ``train.device``, ``train.threads``, ``train.compile``: where and how fast the same
          computation runs. These change at most floating-point rounding (kernel choice,
          reduction order, fusion) and, on CUDA, which masks are drawn (same distribution),
          not the experiment; a finished run is never retrained because a study moved to
          another machine. Bitwise equality is promised on CPU only (same seed).
        - ``name``: a label.
        ``train.precision`` stays in: fp32 vs bf16 is a numeric recipe choice that can change
        results beyond rounding. ``auto`` (bf16 autocast on CUDA, fp32 on CPU) is hashed as
        written, so pin ``fp32`` or ``bf16`` when a study's runs must share one number
        format across devices; the trainer's model card records what a run used."""
        return config_hash(self.identity())


#: Execution settings: how and where a run is computed, never what (RunConfig.run_hash).
#: Any other key of ``data``, ``frontend``, ``model`` and ``train`` is part of the identity.
EXECUTION_KEYS: dict[str, frozenset[str]] = {
    "data": frozenset({"cache_dir", "num_workers"}),
    "train": frozenset({"device", "threads", "compile", "log_every", "state_every_s"}),
}
#: Keys added after run ids were first published, left out of the identity at their
#: defaults so that the runs of older studies keep their ids.
LATE_DEFAULTS: dict[str, Any] = {"warmup_steps": None, "schedule": "cosine"}
#: ``train`` keys that act only under ``schedule: wsd`` (left out of a cosine run's identity).
WSD_KEYS = ("cooldown_fraction", "cooldown_shape")
#: ``train`` keys a WSD trunk does not depend on: the cooldown, where it ends, and which
#: checkpoints the branches keep.
TRUNK_FREE_KEYS = (*WSD_KEYS, "min_lr_frac", "checkpoint_fractions")
#: Study-level sections: how finished runs are measured (never part of a run's identity).
STUDY_SECTIONS = frozenset({"eval"})


def config_hash(obj: Any, length: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------- loading


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → (["a", "b"], 3); the value is parsed as YAML ("1e-3", "[1,2]", "null")."""
    if "=" not in item:
        raise ConfigError(item, "override must look like key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(key or item, "empty key in override")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value) if value.strip().lower() not in ("nan", "inf") else value
            except ValueError:
                pass
    except yaml.YAMLError as e:
        raise ConfigError(key, f"value {raw!r} is not valid YAML ({e.__class__.__name__})") from e
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Return a copy of ``data`` with each ``a.b=c`` override set (nested dicts created)."""
    out = json.loads(json.dumps(data))
    for item in overrides or []:
        path, value = parse_override(item)
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(path[: i + 1]), "is not a section; cannot set a sub-key")
            node = nxt
        node[path[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(path), "config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "top level must be a mapping")
    return data


def validate(cls: type[BaseModel], data: dict) -> Any:
    """Validate ``data`` into ``cls``; the first error becomes one ConfigError line."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise ConfigError(key, msg) from None


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, cls: type[BaseModel] = RunConfig
) -> Any:
    """Load YAML (or start from defaults when ``path`` is None), apply overrides, validate."""
    data = load_yaml(path) if path else {}
    return validate(cls, apply_overrides(data, overrides))


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
