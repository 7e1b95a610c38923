"""The architecture of a run: everything that determines its untrained network and its input.

One key, used wherever runs are grouped by architecture: the sweep's random-init jobs
(``sweep.spec.baseline_jobs``: one per architecture and init seed), the learning checks
that pair each trained run with its architecture's random-init mean (the results column
``arch``, ``scaling.learning``) and the exact match of a tuned learning rate
(``train.tune.load_tuned_lr``).

``architecture(model, frontend)`` is ``{"model": ..., "frontend": ...}``: the model as
``ladder.resolve`` fills it (so a preset and the same sizes spelt out are one
architecture), without the preset's name and without ``TRAINING_ONLY`` (keys that change
how the network is trained, not the network), and the whole frontend (the input: sample
rate, STFT, mel bands). Two runs that differ in ``mlp_ratio`` or ``n_mels`` are two
architectures. The init seed is not part of it: a random-init group holds one encoder
per seed. ``arch_id`` is its 12-hex hash. Torch-free.
"""

from __future__ import annotations

from typing import Any

from audioscale.config import FrontendConfig, ModelConfig, config_hash
from audioscale.models.ladder import resolve

# model keys that change training only: the network built from a config is the same
TRAINING_ONLY = ("mask_ratio", "norm_pix_loss")


def model_architecture(model: ModelConfig) -> dict[str, Any]:
    """The resolved model fields of the architecture (JSON types)."""
    return resolve(model).model_dump(mode="json", exclude={"preset", *TRAINING_ONLY})


def architecture(model: ModelConfig, frontend: FrontendConfig | None = None) -> dict[str, Any]:
    """``{"model": model_architecture(model), "frontend": the frontend's fields}``."""
    fe = frontend or FrontendConfig()
    return {"model": model_architecture(model), "frontend": fe.model_dump(mode="json")}


def arch_id(model: ModelConfig, frontend: FrontendConfig | None = None) -> str:
    """12-hex hash of ``architecture``: equal exactly when the architectures are."""
    return config_hash(architecture(model, frontend))
