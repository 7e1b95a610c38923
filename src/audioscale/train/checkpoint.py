"""Checkpoints of a run folder: safetensors weights + JSON sidecars, and the resume state.

- ``checkpoints/step_000123.safetensors`` and ``checkpoints/final.safetensors``: the MAE's
  weights (the unwrapped module: no ``module.`` / ``_orig_mod.`` prefixes), written to a
  temporary name and renamed, so a reader never sees half a file. Loading them never
  unpickles anything.
- ``checkpoints/<name>.json``: sidecar ``{step, fraction, loss_window, loss_window_steps,
  loss_batch, heldout_loss, ...}`` (the trainer's ``save_checkpoint``: ``loss_window`` is
  the mean training loss of the ``loss_window_steps`` steps since the log line before,
  ``loss_batch`` the loss of the checkpoint step's batch; folders written before these
  keys have one ``loss``) and ``weights`` (the safetensors file's size and sha256,
  checked by ``load_mae``: a truncated or bit-flipped file is a one-line
  ``CorruptArtefactError``), written after the weights; a checkpoint counts as present
  only when its sidecar is.
- ``train_state.pt``: everything a resume needs (weights, optimizer state, step, loss
  window, RNG states) as plain tensors, numbers, lists and dicts, so that
  ``torch.load(weights_only=True)`` reads it; written atomically after its size and
  sha256 in ``train_state.json`` (checked on resume; the json also keeps the digests of
  the state it replaces, so a fault between the two writes leaves an accepted state).
- ``states/step_000123/train_state.{json,pt}`` (a WSD trunk, ``train.trunk``): copies of
  the training state at the steps where branches start (``keep_state``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from audioscale.config import RunConfig, load_config
from audioscale.errors import CorruptArtefactError, DataError
from audioscale.utils import atomic_path, atomic_save_json, atomic_write_bytes, digest, verify

CKPT_DIR = "checkpoints"
STATE_FILE = "train_state.pt"
STATE_DIGEST = "train_state.json"
STATES_DIR = "states"  # a trunk's kept training states (keep_state)


def redo(run_dir: str | Path) -> str:
    """What to do about a corrupt artefact of ``run_dir``."""
    return (
        f"rerun its sweep, or audioscale pretrain --config {run_dir}/config.yaml --out "
        f"{run_dir}: either retrains it from the last good state"
    )


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
        try:
            save_model(unwrap(model), str(tmp), metadata={"format": "pt"})
        except SafetensorError as e:  # its I/O errors (a full disk) as the OSError they are
            code = re.search(r"os error (\d+)|code: (\d+)", str(e))
            if code is None:
                raise
            n = int(code.group(1) or code.group(2))
            raise OSError(n, os.strerror(n), str(path)) from e
        weights = digest(tmp)
    atomic_save_json(d / f"{name}.json", {**meta, "weights": weights})
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
    try:
        expected = read_sidecar(path).get("weights")
    except (OSError, ValueError):
        expected = None  # no sidecar (a hand-copied file): the header check below decides
    verify(path, expected, "checkpoint", redo(run_dir))
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        reason = f"checkpoint unreadable ({' '.join(str(e).split())[:120]})"
        raise CorruptArtefactError(path, reason, redo(run_dir)) from e
    return model.to(device).eval(), cfg


def save_state(run_dir: str | Path, state: dict) -> None:
    """Write ``train_state.pt`` atomically (plain containers and tensors only), its size
    and sha256 to ``train_state.json`` first, with the digests of the state it replaces
    (``previous``): a fault or a kill between the two writes leaves the old, intact
    state, which ``load_state`` then accepts (it is never taken for a corrupt one)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    run_dir = Path(run_dir)
    previous = []
    if (run_dir / STATE_FILE).is_file():
        old = _state_digests(run_dir)
        if not old:  # a state without its digest (written before digests): hash it once
            try:
                old = [digest(run_dir / STATE_FILE)]
            except OSError:
                old = []
        previous = old[:2]
    atomic_save_json(run_dir / STATE_DIGEST, {**bytes_digest(data), "previous": previous})
    atomic_write_bytes(run_dir / STATE_FILE, data)


def kept_state_dir(run_dir: str | Path, step: int) -> Path:
    """Where a trunk keeps its training state of ``step`` (``states/step_000123/``)."""
    return Path(run_dir) / STATES_DIR / checkpoint_name(step)


def keep_state(run_dir: str | Path, step: int) -> None:
    """Keep a copy of the training state just written (a WSD trunk's branch point at
    ``step``): ``states/step_XXXXXX/train_state.{json,pt}``, the digest first."""
    data = (Path(run_dir) / STATE_FILE).read_bytes()
    dst = kept_state_dir(run_dir, step)
    dst.mkdir(parents=True, exist_ok=True)
    atomic_save_json(dst / STATE_DIGEST, {**bytes_digest(data), "previous": []})
    atomic_write_bytes(dst / STATE_FILE, data)


def kept_states(run_dir: str | Path) -> list[int]:
    """The steps whose training state ``run_dir`` keeps (both files present), ascending."""
    out = []
    for d in (Path(run_dir) / STATES_DIR).glob("step_*"):
        if (d / STATE_FILE).is_file() and (d / STATE_DIGEST).is_file():
            out.append(int(d.name.split("_")[1]))
    return sorted(out)


def _state_digests(run_dir: Path) -> list[dict]:
    """The digests ``train_state.json`` accepts: the state last written, then the ones
    it replaced (in case the last write never landed); [] when there is none."""
    try:
        side = json.loads((run_dir / STATE_DIGEST).read_text(encoding="utf-8"))
        out = [{"size": side["size"], "sha256": side["sha256"]}]
        return out + [d for d in side.get("previous") or [] if isinstance(d, dict)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def load_state(run_dir: str | Path, device: str | torch.device = "cpu") -> dict | None:
    """``train_state.pt`` read with ``weights_only=True``, or None when there is none;
    ``CorruptArtefactError`` when it fails its recorded digest or does not load."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    accepted = _state_digests(Path(run_dir))
    try:
        verify(path, accepted[0] if accepted else None, "training state", redo(run_dir))
    except CorruptArtefactError:  # a fault between the two writes: the previous state?
        if not any(_is_digest(path, d) for d in accepted[1:]):
            raise
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as e:
        reason = f"training state unreadable ({' '.join(str(e).split())[:120]})"
        raise CorruptArtefactError(path, reason, redo(run_dir)) from e


def _is_digest(path: Path, expected: dict) -> bool:
    try:
        verify(path, expected, "training state")
    except CorruptArtefactError:
        return False
    return True


def bytes_digest(data: bytes) -> dict:
    """``utils.digest`` of bytes in memory."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def final_intact(run_dir: str | Path) -> bool:
    """Whether the final checkpoint passes its recorded digest; a corrupt one is named
    on stderr and discarded (``discard_corrupt``), so a resume writes it again."""
    path = Path(run_dir) / CKPT_DIR / "final.safetensors"
    try:
        verify(path, read_sidecar(path).get("weights"), "checkpoint")
    except (OSError, ValueError):
        return True  # no sidecar: nothing recorded to check against
    except CorruptArtefactError as e:
        print(f"audioscale: {e.path}: {e.reason}; training it again", file=sys.stderr)
        discard_corrupt(run_dir, path)
        return False
    return True


def discard_corrupt(run_dir: str | Path, path: str | Path) -> None:
    """Drop a corrupt artefact of a run folder so that resuming redoes its work: a
    ``final`` checkpoint (and ``done.json``) is written again from ``train_state.pt``;
    an intermediate checkpoint or the training state itself means training again from
    the start (the other checkpoints come out byte-identical: CPU runs are seeded)."""
    run_dir, path = Path(run_dir), Path(path)
    (run_dir / "done.json").unlink(missing_ok=True)
    if path.suffix == ".safetensors":
        path.with_suffix(".json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    if path.stem != "final":
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        (run_dir / STATE_DIGEST).unlink(missing_ok=True)
