"""Log-mel frontend: torch.stft + our own Slaney mel filterbank, in dB.

Defaults (``FrontendConfig``) follow Dasheng (Dinkel et al., 2024): 16 kHz, n_fft 512,
hop 160 (10 ms), 64 mel bands over 0–8 kHz, power spectrum, 10·log10.

Conventions, chosen to equal librosa's defaults so that ``librosa.power_to_db(
librosa.feature.melspectrogram(y, sr, n_fft, hop_length, n_mels, fmin, fmax, power=2,
center=True, pad_mode="constant"), ref=1.0, amin, top_db)`` is the reference:

- Window: periodic Hann of length ``n_fft`` (``torch.hann_window(periodic=True)``, as
  ``scipy.signal.get_window("hann", n_fft)``), ``win_length = n_fft``.
- Padding: centred frames. ``n_fft // 2`` samples are added on each side, with zeros
  (``pad_mode="constant"``, librosa ≥ 0.10's default) or by reflection (``"reflect"``,
  torch.stft's default). Frame ``t`` is centred on sample ``t * hop``; so
  ``frames = 1 + samples // hop``. The two modes differ only in the first and last
  ``n_fft / (2 hop)`` ≈ 2 frames (by up to ~30 % in power).
- Filterbank: Slaney mel scale (linear below 1 kHz, logarithmic above; ``htk=False``),
  triangles normalised to unit area (``norm="slaney"``), as ``librosa.filters.mel``.
- dB: ``10 * log10(max(mel, amin))`` with ``ref = 1.0``; with ``top_db`` set, values are
  floored at ``max - top_db`` per clip (librosa floors at the max of the array it is given;
  here each batch item is its own array).
- Computation follows the input dtype (float32 by default; float64 for reference checks);
  buffers move with ``.to(device)``, so the module runs on CPU and CUDA alike.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from audioscale.audio.frames import frames_for, frames_for_seconds  # noqa: F401  (re-exported)
from audioscale.config import FrontendConfig


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (Auditory Toolbox): linear to 1 kHz, log above; as librosa htk=False."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = f / f_sp
    log = f >= min_log_hz
    return np.where(
        log, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mel
    )


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, n_fft // 2 + 1), float64.

    Same construction as ``librosa.filters.mel(htk=False, norm="slaney")``: band edges
    equally spaced on the Slaney mel scale, triangles on the linear FFT grid, each scaled
    by ``2 / (f_{i+2} - f_i)`` so that every filter has unit area."""
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def floor_db(cfg: FrontendConfig) -> float:
    """The smallest value ``LogMel`` emits, what silence maps to: ``10 * log10(amin)`` dB
    (the pad value of caches, crops and too-short clips)."""
    return 10.0 * math.log10(cfg.amin)


class LogMel(nn.Module):
    """``(B, samples)`` or ``(samples,)`` waveform → ``(B, n_mels, frames)`` log-mel in dB."""

    def __init__(self, cfg: FrontendConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FrontendConfig()
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        window = torch.hann_window(cfg.n_fft, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window, persistent=False)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram (before the log), ``(B, n_mels, frames)``."""
        c = self.cfg
        if wave.dim() == 1:
            wave = wave[None]
        if not wave.is_floating_point():
            wave = wave.float()
        spec = torch.stft(
            wave,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.n_fft,
            window=self.window.to(wave.dtype),
            center=True,
            pad_mode=c.pad_mode,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_fft//2+1, frames)
        return torch.matmul(self.fb.to(power.dtype), power)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(self.power_mel(wave).clamp_min(self.cfg.amin))
        if self.cfg.top_db is not None:
            floor = db.amax(dim=(-2, -1), keepdim=True) - self.cfg.top_db
            db = torch.maximum(db, floor)
        return db

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}, "
            f"f=[{c.f_min:g}, {c.f_max:g}], pad={c.pad_mode}, top_db={c.top_db}"
        )


@lru_cache(maxsize=8)
def _cached_logmel(cfg_json: str) -> LogMel:
    return LogMel(FrontendConfig.model_validate_json(cfg_json)).eval()


def logmel(wave: np.ndarray, cfg: FrontendConfig | None = None) -> np.ndarray:
    """NumPy convenience: ``(samples,)`` → ``(n_mels, frames)``; ``(B, samples)`` →
    ``(B, n_mels, frames)``. float32 in, float32 out (float64 stays float64)."""
    cfg = cfg or FrontendConfig()
    module = _cached_logmel(json.dumps(cfg.model_dump(mode="json"), sort_keys=True))
    x = np.asarray(wave)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return out[0] if x.ndim == 1 else out
