"""Validate any encoder before use: ``check_encoder(enc) -> list[str]`` of problems.

Checks, on a deterministic 2 s test signal (two tones + seeded noise, a batch of two
different clips) run through ``frames_long`` (chunked like extraction):
- attributes: sample_rate a positive int, dim / n_layers positive, hop_seconds > 0;
- output: one (B, T, dim) tensor per requested layer, finite (no NaN/Inf);
- hop: T within 1 frame of 2 s / hop_seconds, and ``n_frames`` agrees with T;
- layers: 0, n_layers-1 and -1 all work, and -1 equals n_layers-1;
- determinism: the same input twice gives the same output (atol 1e-5);
- batch independence: clip 0 alone equals clip 0 in the batch (rtol 1e-3), when padding
  is not involved;
- pooling: ``pool`` of the frames has ``clip_dim`` entries.
An empty list means the encoder may be used.
"""

from __future__ import annotations

import numpy as np
import torch

from audioscale.embed.base import Encoder, piece_spans


def check_signal(sample_rate: int, seconds: float = 2.0, batch: int = 2) -> torch.Tensor:
    """(batch, samples) float32: a tone pair plus seeded noise, different per row."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(1234)
    rows = []
    for b in range(batch):
        f0 = 220.0 * (b + 1)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 3.1 * f0 * t)
        x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)) + 0.05 * rng.standard_normal(n)
        rows.append(x)
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def _attributes(enc: Encoder) -> list[str]:
    out = []
    if not isinstance(enc.sample_rate, int) or enc.sample_rate <= 0:
        out.append(f"sample_rate must be a positive int, got {enc.sample_rate!r}")
    if not (isinstance(enc.dim, int) and enc.dim > 0):
        out.append(f"dim must be a positive int, got {enc.dim!r}")
    if not (isinstance(enc.n_layers, int) and enc.n_layers > 0):
        out.append(f"n_layers must be a positive int, got {enc.n_layers!r}")
    if not (enc.hop_seconds and enc.hop_seconds > 0):
        out.append(f"hop_seconds must be positive, got {enc.hop_seconds!r}")
    return out


def check_encoder(enc: Encoder, seconds: float = 2.0) -> list[str]:
    """Problems found (empty when the encoder passes)."""
    problems = _attributes(enc)
    if problems:
        return problems
    wave = check_signal(enc.sample_rate, seconds).to(enc.device)
    last = enc.n_layers - 1
    try:
        with torch.inference_mode():
            outs = enc.frames_long(wave, [0, last, -1])
            again = enc.frames_long(wave, [-1])[0]
            alone = enc.frames_long(wave[:1], [-1])[0]
    except Exception as e:  # the checker reports, it does not crash
        return [f"frames() failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
    if len(outs) != 3:
        return [f"frames() returned {len(outs)} tensors for 3 requested layers"]
    f = outs[2].float()
    if f.dim() != 3 or f.shape[0] != 2 or f.shape[2] != enc.dim:
        problems.append(f"output shape {tuple(f.shape)}, expected (2, T, {enc.dim})")
        return problems
    if not torch.isfinite(f).all() or not all(torch.isfinite(o).all() for o in outs):
        problems.append("output has NaN/Inf")
    expected = seconds / enc.hop_seconds
    if abs(f.shape[1] - expected) > 1 + 1e-9:
        problems.append(
            f"{f.shape[1]} frames for {seconds:g} s, but hop {enc.hop_seconds:g} s implies "
            f"{expected:.1f}"
        )
    n_expected = _stitched_frames(enc, wave.shape[-1])
    if n_expected != f.shape[1]:
        problems.append(f"n_frames() says {n_expected} frames, the encoder gave {f.shape[1]}")
    if not torch.equal(outs[1], outs[2]):
        problems.append(f"layer -1 differs from layer {last}")
    if outs[0].shape[-1] != enc.dim:
        problems.append(f"layer 0 has width {outs[0].shape[-1]}, expected {enc.dim}")
    if again.shape != f.shape or not torch.allclose(again.float(), f, atol=1e-5, rtol=1e-5):
        problems.append("not deterministic: the same input twice gave different outputs")
    a = alone.float()
    if a.shape != f[:1].shape or not torch.allclose(a, f[:1], atol=1e-4, rtol=1e-3):
        problems.append("output of a clip depends on its batch mates")
    pooled = enc.pool(f[0].cpu())
    if tuple(pooled.shape) != (enc.clip_dim,):
        problems.append(f"pool() gave shape {tuple(pooled.shape)}, expected ({enc.clip_dim},)")
    return problems


def _stitched_frames(enc: Encoder, n: int) -> int:
    """Frames ``frames_long`` returns for ``n`` samples (pieces cut as extraction does)."""
    spans = piece_spans(n, enc.max_samples(), enc.min_samples)
    return sum(enc.n_frames(max(length, enc.min_samples)) for _, length in spans)


def assert_ok(enc: Encoder) -> None:
    """Raise AudioscaleError with the first problems when the checker fails."""
    from audioscale.errors import AudioscaleError

    problems = check_encoder(enc)
    if problems:
        shown = "; ".join(problems[:3])
        raise AudioscaleError(f"encoder {enc.name!r} failed the checker: {shown}")
