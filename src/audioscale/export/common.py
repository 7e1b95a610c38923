"""What the HEAR and X-ARES exports share: loading one of our encoders, and encoding a
batch of equal-length waveforms the way extraction does.

Choices (each so that an exported embedding equals our own extraction's):

- Loading: ``spec`` is a run folder (its final checkpoint), ``RUN_DIR@<step>``, a
  checkpoint file ``RUN_DIR/checkpoints/<name>.safetensors``, or ``random:...`` (the
  random-init reference), resolved by ``embed.registry.get_encoder``. Only our MAE
  encoders (``embed.ours.MAEEncoder``) are served: the exports rely on their log-mel path.
- Layer: ``-1`` (the last block, LayerNorm-ed encoder output) unless the caller passes
  one or ``AUDIOSCALE_HEAR_LAYER`` is set; the same default as ``extract``,
  ``audioscale probe --layer`` and ``audioscale rankme --layer``. The environment
  variable exists because hear-eval-kit calls ``load_model(path)`` with no other argument.
- Encoding (``encode``) follows ``extract``'s mel fast path: the log-mel of the whole
  clip is computed once, cut into pieces of ``max_mel_frames`` at ``piece_spans``
  (a trailing piece shorter than one token is dropped, a clip shorter than one token is
  padded with the log-mel floor), each piece is encoded separately and its valid frames
  are concatenated in time. Gradients are off (``torch.no_grad``, not
  ``inference_mode``, so a caller may feed the outputs to a trainable head).
- Frame times: token ``k`` of a piece starting at mel frame ``s`` covers mel frames
  ``s + k·fpt … s + k·fpt + fpt − 1``; mel frame ``j`` is centred on sample ``j·hop``
  (centred STFT), so the token's centre is ``(s + k·fpt + (fpt − 1)/2)·hop / sr``
  seconds (15 ms, 55 ms, … for 4-frame tokens at a 10 ms hop).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from audioscale.audio.frontend import floor_db
from audioscale.embed.base import cut_pieces, piece_spans
from audioscale.embed.ours import MAEEncoder

LAYER_ENV = "AUDIOSCALE_HEAR_LAYER"


def load_encoder(spec: str | Path) -> MAEEncoder:
    """Our encoder named by ``spec`` (see module docstring); ValueError when it is none."""
    from audioscale.embed.ours import RunEncoder
    from audioscale.embed.registry import get_encoder

    spec = str(spec).strip()
    if not spec:
        raise ValueError(
            "no model given: pass a run folder, RUN_DIR@<step> or a checkpoint file "
            "(hear-validator: -m RUN_DIR)"
        )
    p = Path(spec)
    if p.is_file() and p.suffix == ".safetensors" and p.parent.name == "checkpoints":
        step = p.stem.removeprefix("step_")
        enc = RunEncoder(p.parent.parent, int(step) if step.isdigit() else p.stem)
    else:
        enc = get_encoder(spec)
    if not isinstance(enc, MAEEncoder):
        raise ValueError(f"{spec}: the exports serve audioscale MAE encoders, not {enc.name}")
    return enc


def resolve_layer(enc: MAEEncoder, layer: int | None) -> int:
    """``layer``, else ``$AUDIOSCALE_HEAR_LAYER``, else -1; normalised to 0..n_layers-1."""
    if layer is None:
        raw = os.environ.get(LAYER_ENV, "").strip() or "-1"
        try:
            layer = int(raw)
        except ValueError:
            raise ValueError(f"{LAYER_ENV}={raw!r}: expected an integer layer") from None
    return enc.layer_index(layer)


def encode(enc: MAEEncoder, audio: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``audio`` (n_sounds, n_samples) at ``enc.sample_rate`` → frames (n_sounds, T, dim)
    float32 on the encoder's device, and each frame's centre in seconds (T,) float64."""
    if not isinstance(audio, torch.Tensor) or audio.ndim != 2:
        shape = tuple(audio.shape) if hasattr(audio, "shape") else type(audio).__name__
        raise ValueError(f"audio must be a 2-D tensor (n_sounds, n_samples), got {shape}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio must hold at least one sample per sound, got {tuple(audio.shape)}")
    device = next(enc.net.parameters()).device
    enc.device = device
    cfg = enc.frontend_config
    floor = floor_db(cfg)  # extraction's pad value for too-short clips
    frames, starts = [], []
    with torch.no_grad():
        mel = enc.logmel(audio.to(device).float()).float()
        spans = piece_spans(mel.shape[-1], enc.max_mel_frames, enc.min_mel_frames)
        pieces = cut_pieces(mel, enc.max_mel_frames, enc.min_mel_frames, floor)
        for (s, _), piece in zip(spans, pieces, strict=True):
            t = enc.n_frames_from_mel(piece.shape[-1])
            frames.append(enc.frames_from_mel(piece, [layer])[0][:, :t].float())
            starts.append(s + enc.fpt * torch.arange(t, dtype=torch.float64))
    centres = (torch.cat(starts) + (enc.fpt - 1) / 2) * cfg.hop_length / enc.sample_rate
    return torch.cat(frames, dim=1), centres
