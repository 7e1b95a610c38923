"""Typed configs (pydantic), YAML loading and ``--set a.b=c`` overrides.

Every config model forbids unknown keys, so a typo fails before any work with one line
naming the key. ``RunConfig`` is the full description of one pretraining run; its hash
is the run's identity in a sweep.
"""

from __future__ import annotations

import hashlib
import json
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


class TrainConfig(Strict):
    """Optimiser, schedule and budget. The budget is ``examples``, ``hours`` (of audio seen)
    or ``flops`` when one of them is set, else ``steps`` (default 200). Setting two is an error."""

    steps: int = Field(200, gt=0)
    examples: int | None = Field(None, gt=0)
    hours: float | None = Field(None, gt=0)  # hours of audio seen
    flops: float | None = Field(None, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float | None = Field(None, gt=0)  # None: the recipe rule (audioscale.train.recipe)
    base_lr: float = Field(1e-3, gt=0)  # the rule's lr at its reference width
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    min_lr_frac: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    threads: int | None = Field(None, gt=0)
    checkpoint_fractions: list[float] = Field(
        default_factory=lambda: [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]
    )
    log_every: int = Field(10, gt=0)
    # also write train_state.pt this often (seconds; at the next log line) besides checkpoints
    state_every_s: float | None = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        budgets = [k for k in ("examples", "hours", "flops") if getattr(self, k) is not None]
        if "steps" in self.model_fields_set:
            budgets.append("steps")
        if len(budgets) > 1:
            raise ValueError(f"set one budget, not {' and '.join(budgets)}")
        for f in self.checkpoint_fractions:
            if not 0 < f < 1:
                raise ValueError(f"checkpoint fraction {f} is not in (0, 1)")
        return self


class EvalConfig(Strict):
    """What a run is measured on after training."""

    tasks: list[str] = Field(default_factory=list)  # task folders
    rankme_pool: str | None = None  # unlabeled pool manifest; None = the data pool's heldout split
    rankme_samples: int = Field(25600, gt=0)
    rankme_level: Literal["clip", "frame"] = "clip"
    rankme_layer: int = -1
    rankme_centred: bool = False
    rankme_seed: int = 0
    protocols: list[Literal["linear", "knn"]] = Field(default_factory=lambda: ["linear", "knn"])


class RunConfig(Strict):
    """One pretraining run, end to end. Its hash names the run."""

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

    def run_hash(self) -> str:
        """Identity of the run: hash of the full resolved config, name excluded."""
        return config_hash(self.model_dump(mode="json", exclude={"name"}))


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
