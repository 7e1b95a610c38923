"""Encoders, the MAE wrapper, the named size ladder and parameter / FLOP accounting.

The names below are loaded on first use (PEP 562 module ``__getattr__``): importing
``audioscale.models`` or ``audioscale.models.ladder`` does not import torch, so code
that only needs the size ladder (the sweep's parent process ordering jobs, config
validation) stays light. ``from audioscale.models import MAE`` imports torch then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "MAE": "mae",
    "MAEOutput": "mae",
    "build_mae": "mae",
    "SIZE_PRESETS": "ladder",
    "resolve": "ladder",
    "count_params": "accounting",
    "forward_flops_per_example": "accounting",
    "train_flops_per_example": "accounting",
}

__all__ = [
    "MAE",
    "MAEOutput",
    "SIZE_PRESETS",
    "build_mae",
    "count_params",
    "forward_flops_per_example",
    "resolve",
    "train_flops_per_example",
]

if TYPE_CHECKING:
    from audioscale.models.accounting import (
        count_params,
        forward_flops_per_example,
        train_flops_per_example,
    )
    from audioscale.models.ladder import SIZE_PRESETS, resolve
    from audioscale.models.mae import MAE, MAEOutput, build_mae


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
