"""Checkpoints of a run folder: safetensors weights + JSON sidecars, and the resume state.

- ``checkpoints/step_000123.safetensors`` and ``checkpoints/final.safetensors``: the MAE's
  weights (the unwrapped module: no ``module.`` / ``_orig_mod.`` prefixes), written to a
  temporary name and renamed, so a reader never sees half a file. Loading them never
  unpickles anything.
- ``checkpoints/<name>.json``: sidecar ``{step, fraction, loss_window, loss_window_steps,
  loss_batch, heldout_loss, ...}`` (the trainer's ``save_checkpoint``: ``loss_window`` is
  the mean training loss of the ``loss_window_steps`` steps since the log line before,
  ``loss_batch`` the loss of the checkpoint step's batch; folders written before these
  keys have one ``loss``), written after the weights; a checkpoint counts as present only
  when its sidecar is.
- ``train_state.pt``: everything a resume needs (weights, optimizer state, step, loss
  window, RNG states) as plain tensors, numbers, lists and dicts, so that
  ``torch.load(weights_only=True)`` reads it; written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from audioscale.config import RunConfig, load_config
from audioscale.errors import DataError
from audioscale.utils import atomic_path, atomic_save_json, atomic_write_bytes

CKPT_DIR = "checkpoints"
STATE_FILE = "train_state.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def checkpoint_name(step: int | str) -> str:
    return "final" if step == "final" else f"step_{int(step):06d}"


def save_checkpoint(model: torch.nn.Module, run_dir: str | Path, name: str, meta: dict) -> Path:
    """Write ``checkpoints/<name>.safetensors`` then its ``.json`` sidecar, both atomically."""
    d = Path(run_dir) / CKPT_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_model(unwrap(model), str(tmp), metadata={"format": "pt"})
    atomic_save_json(d / f"{name}.json", meta)
    return path


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, float, Path]]:
    """``[(step, fraction, path)]`` of the run's complete checkpoints, by step; ``final``
    (fraction 1.0) last."""
    d = Path(run_dir) / CKPT_DIR
    out = []
    for side in sorted(d.glob("*.json")):
        weights = side.with_suffix(".safetensors")
        if not weights.is_file():
            continue
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append((int(meta["step"]), float(meta["fraction"]), weights))
    return sorted(out, key=lambda t: (t[0], t[1]))


def read_sidecar(path: str | Path) -> dict:
    return json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))


def load_mae(
    run_dir: str | Path, which: str | int = "final", device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild the run's MAE from ``config.yaml`` and load checkpoint ``which`` ("final" or
    a step number) from safetensors. Returns ``(mae in eval mode, RunConfig)``."""
    from audioscale.models.mae import build_mae

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_config(cfg_path)
    path = run_dir / CKPT_DIR / f"{checkpoint_name(which)}.safetensors"
    if not path.is_file():
        have = ", ".join(p.stem for _, _, p in list_checkpoints(run_dir)) or "none"
        raise DataError(f"{run_dir}: no checkpoint {which!r} (available: {have})")
    model = build_mae(cfg.model, cfg.frontend)
    load_model(model, str(path), strict=True, device=str(device))
    return model.to(device).eval(), cfg


load_encoder = load_mae  # the name ARCHITECTURE.md used first


def save_state(run_dir: str | Path, state: dict) -> None:
    """Write ``train_state.pt`` atomically (plain containers and tensors only)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(run_dir) / STATE_FILE, buf.getvalue())


def load_state(run_dir: str | Path, device: str | torch.device = "cpu") -> dict | None:
    """``train_state.pt`` read with ``weights_only=True``, or None when there is none."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=True)
