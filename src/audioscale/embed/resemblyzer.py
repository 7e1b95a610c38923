"""Resemblyzer's GE2E speaker encoder (Wan et al. 2018, "Generalized End-to-End Loss for
Speaker Verification", ICASSP) with the weights that the ``Resemblyzer`` wheel ships
(0.1.4, Apache-2.0; ``resemblyzer/pretrained.pt``, 17 MB), behind the ``Encoder``
interface.

Choices:

- Loading: the package is never imported (its ``__init__`` imports ``webrtcvad``, used
  only for silence trimming); ``pretrained.pt`` is found with ``importlib.util.find_spec``
  and read with ``torch.load(..., weights_only=True)`` (it holds plain tensors, an int
  step and the optimiser state). Its ``model_state`` goes strictly into ``VoiceNet``,
  built here as ``resemblyzer.VoiceEncoder`` builds it (3-layer LSTM 40 → 256, linear
  256 → 256, ReLU, L2 norm); GE2E's ``similarity_weight`` / ``similarity_bias`` (training
  only) are dropped.
- Front end, as ``resemblyzer.audio``: 16 kHz; ``normalize_volume(wav, -30 dBFS,
  increase_only=True)`` per clip (RMS over the clip's valid samples); the *power* mel
  spectrogram of ``librosa.feature.melspectrogram`` (not log: what the network was
  trained on) with 25 ms Hann windows (n_fft 400), 10 ms hop, 40 Slaney mel bands,
  centred frames with zero padding (librosa >= 0.10's default, which Resemblyzer 0.1.4
  gets from the librosa it accepts), computed here with ``torch.stft`` and librosa's mel
  matrix. Not applied: ``trim_long_silences`` (webrtcvad voice activity detection): it
  is for speech only and drops audio, which would change a clip's frame timing.
- Frames are Resemblyzer's *partial utterances*: 160 mel frames (1.6 s) every 77 mel
  frames (0.77 s hop; ``embed_utterance``'s default rate 1.3 partials/s), the last
  kept when it covers at least 75 % of its window, the clip zero-padded to the last
  partial's end (``compute_partial_slices``); a clip shorter than 1.6 s is one padded
  partial. ``n_frames`` follows the same rule.
- Layers (``n_layers = 4``, all 256-d): 0-2 = the final hidden state of LSTM layer 1-3
  after a partial's 160 frames; 3 = -1 = the d-vector (linear, ReLU, L2-normalised), what
  ``VoiceEncoder.forward`` returns. The clip embedding is the L2-normalised mean of the
  frames, as ``embed_utterance`` forms the utterance embedding. Norms are clamped at
  1e-12 so a silent clip gives zeros, not NaN.
- Padded batches are exact (``pads_exactly``): the gain uses each clip's valid samples,
  mel frames are local and every partial is encoded alone.
- Speed: the LSTM is 3 x 160 sequential small matmuls per batch of partials; on a busy
  CPU extra torch threads mostly wait at every step (on a loaded 2-core machine, 2
  threads extracted at 2.7 audio-s/s, 1 thread at 119), so run it with one thread there
  (a study's workers do: ``study.threads_per_worker`` defaults to 1).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from audioscale.config import config_hash
from audioscale.embed.base import Encoder
from audioscale.external_specs import load_weights, weights_path
from audioscale.utils import sha256_file

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL = 160  # mel frames per partial utterance (1.6 s)
STEP = 77  # round(16000 / 1.3 / 160): partials every 0.77 s
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
HIDDEN = 256


def partial_starts(n_samples: int) -> list[int]:
    """First mel frame of every partial of an ``n_samples`` clip
    (``VoiceEncoder.compute_partial_slices`` at rate 1.3, min_coverage 0.75)."""
    n_mel = int(np.ceil((n_samples + 1) / HOP))
    steps = max(1, n_mel - PARTIAL + STEP + 1)
    starts = list(range(0, steps, STEP))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


def volume_gain(wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) gains of ``normalize_volume(wav, -30, increase_only=True)`` per clip."""
    mask = torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None]
    power = ((wave.double() * INT16_MAX) ** 2 * mask).sum(1) / lengths.clamp_min(1)
    rms = power.sqrt()
    change = TARGET_DBFS - 20 * torch.log10(rms / INT16_MAX)
    gain = 10 ** (change / 20)
    return torch.where((rms > 0) & (change > 0), gain, torch.ones_like(gain)).float()


class VoiceNet(torch.nn.Module):
    """resemblyzer.VoiceEncoder's network (same state-dict keys)."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, HIDDEN, 3, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)

    def layers(self, mels: torch.Tensor) -> list[torch.Tensor]:
        """(P, 160, 40) partial mels → 4 tensors (P, 256): final hidden state of each
        LSTM layer, then the L2-normalised d-vector."""
        _, (hidden, _) = self.lstm(mels)
        raw = F.relu(self.linear(hidden[-1]))
        return [*hidden, raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)]


class ResemblyzerEncoder(Encoder):
    """GE2E d-vectors per 1.6 s partial (see module docstring)."""

    kind = "external"
    name = "resemblyzer"
    sample_rate = SAMPLE_RATE
    dim = HIDDEN
    hop_seconds = STEP * HOP / SAMPLE_RATE
    n_layers = 4
    max_seconds = None
    min_samples = 1
    pads_exactly = True

    def __init__(self):
        import librosa

        path = weights_path("resemblyzer")
        ckpt = load_weights("resemblyzer")
        state = {k: v for k, v in ckpt["model_state"].items() if not k.startswith("similarity")}
        self.net = VoiceNet()
        self.net.load_state_dict(state)
        self.net.eval()
        basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.mel_basis = torch.from_numpy(basis).float()
        self.window = torch.hann_window(N_FFT)
        self.device = torch.device("cpu")
        self._identity = "resemblyzer-" + config_hash(
            {
                "weights": sha256_file(path),
                "mel": hashlib.sha256(basis.tobytes()).hexdigest(),
                "step": STEP,
                "partial": PARTIAL,
                "gain": TARGET_DBFS,
            },
            24,
        )

    def identity(self) -> str:
        return self._identity

    def to(self, device):
        super().to(device)
        self.mel_basis = self.mel_basis.to(self.device)
        self.window = self.window.to(self.device)
        return self

    def n_frames(self, n_samples: int) -> int:
        return len(partial_starts(n_samples))

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, T, 40) power mel, as ``resemblyzer.audio.wav_to_mel_spectrogram``."""
        spec = torch.stft(wave, N_FFT, HOP, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # fmt: skip
        return (self.mel_basis @ spec.abs() ** 2).transpose(1, 2)

    def frames(self, wave, layers, lengths=None):
        idx = [self.layer_index(i) for i in layers]
        b, n = wave.shape
        lens = torch.full((b,), n, device=wave.device) if lengths is None else lengths
        starts = partial_starts(int(lens.max()))
        for m in lens.tolist():  # the longest clip need not have the most partials
            starts = max(starts, partial_starts(int(m)), key=len)
        end = (starts[-1] + PARTIAL) * HOP
        x = wave.float() * volume_gain(wave, lens)[:, None]
        x = F.pad(x, (0, max(0, end - n)))  # zeros up to the last partial's end
        mel = self.mel(x)
        parts = torch.stack([mel[:, s : s + PARTIAL] for s in starts], 1)  # (B, P, 160, 40)
        outs = self.net.layers(parts.reshape(-1, PARTIAL, N_MELS))
        return [outs[i].reshape(b, len(starts), HIDDEN) for i in idx]

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """The L2-normalised mean of the partials (``embed_utterance``)."""
        m = frames.mean(0)
        return m / m.norm().clamp_min(1e-12)
