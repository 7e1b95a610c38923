"""Encoders, the MAE wrapper, the named size ladder and parameter / FLOP accounting."""

from audioscale.models.accounting import (
    count_params,
    forward_flops_per_example,
    train_flops_per_example,
)
from audioscale.models.ladder import PRESETS, resolve
from audioscale.models.mae import MAE, MAEOutput, build_mae

__all__ = [
    "MAE",
    "MAEOutput",
    "PRESETS",
    "build_mae",
    "count_params",
    "forward_flops_per_example",
    "resolve",
    "train_flops_per_example",
]
