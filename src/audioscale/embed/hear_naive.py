"""HEAR 2021's naive baseline (Turian et al. 2022, "HEAR: Holistic Evaluation of Audio
Representations", PMLR 176; package ``hearbaseline`` 2021.1.1, ``hearbaseline/naive.py``,
Apache-2.0), reimplemented exactly behind the ``Encoder`` interface.

The package itself is not used at run time: it declares numpy==1.19.2 and tensorflow,
and its ``librosa.filters.mel(44100, ...)`` call passes the sample rate positionally,
which librosa >= 0.10 refuses. ``tests/test_external_encoders.py`` checks this file
against ``hearbaseline.naive`` (installed with ``--no-deps``, that one call shimmed).

The definition (``RandomProjectionMelEmbedding``):

- 44.1 kHz input. Extraction decodes every clip at the encoder's rate, so a 16 kHz file
  is resampled 16 k → 44.1 k by ``scipy.signal.resample_poly`` with the exact ratio
  441/160 (``audio.io.resample``).
- Frames: 4096-sample windows (92.9 ms), centred: the clip is zero-padded by 2048 samples
  on each side (``hearbaseline.util.frame_audio``), hop 50 ms = 2205 samples (HEAR's
  timestamp hop), so ``n_frames(n) = 1 + n // 2205``.
- Each frame: periodic Hann window, ``rfft``, power ``|X|²``, 256-band mel matrix of
  ``librosa.filters.mel(sr=44100, n_fft=4096, n_mels=256)`` (Slaney), ``log(x + 1e-4)``,
  then the random projection ``torch.rand(256, 4096) / sqrt(256)`` drawn after
  ``torch.random.manual_seed(0)`` (drawn here from a private generator seeded 0, which
  gives the same matrix without reseeding torch's global generator). 4096-d, one layer.
- Clip embedding: the mean of the frames (HEAR's scene embedding is the same mean, at a
  250 ms hop). Frames are local, so padded batches are exact (``pads_exactly``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from audioscale.config import config_hash
from audioscale.embed.base import Encoder, sha256_state

SAMPLE_RATE = 44100
N_FFT = 4096
HOP = 2205  # 50 ms
N_MELS = 256
DIM = 4096
EPSILON = 1e-4
SEED = 0
CHUNK_FRAMES = 512  # hearbaseline's BATCH_SIZE


class NaiveNet(torch.nn.Module):
    """hearbaseline's RandomProjectionMelEmbedding (same buffers and parameter)."""

    def __init__(self):
        import librosa

        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT))
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel_scale", torch.tensor(mel))
        gen = torch.Generator().manual_seed(SEED)
        proj = torch.rand(N_MELS, DIM, generator=gen) / math.sqrt(N_MELS)
        self.projection = torch.nn.Parameter(proj, requires_grad=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 4096) windows → (N, 4096) embeddings."""
        x = torch.abs(torch.fft.rfft(frames * self.window)) ** 2.0
        x = torch.log(torch.matmul(x, self.mel_scale.transpose(0, 1)) + EPSILON)
        return x.matmul(self.projection)


class HearNaiveEncoder(Encoder):
    """HEAR 2021 naive baseline (see module docstring)."""

    kind = "external"
    name = "hear-naive"
    sample_rate = SAMPLE_RATE
    dim = DIM
    hop_seconds = HOP / SAMPLE_RATE
    n_layers = 1
    max_seconds = None
    min_samples = 1
    pads_exactly = True

    def __init__(self):
        self.net = NaiveNet().eval()
        self.device = torch.device("cpu")
        self._identity = "hear-naive-" + config_hash(
            {"state": sha256_state(self.net), "hop": HOP}, 24
        )

    def identity(self) -> str:
        return self._identity

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // HOP

    def frames(self, wave, layers, lengths=None):
        for layer in layers:
            self.layer_index(layer)
        x = F.pad(wave.float(), (N_FFT // 2, N_FFT - N_FFT // 2))
        windows = x.unfold(-1, N_FFT, HOP)  # (B, T, 4096), a view: no copy
        t = windows.shape[1]
        chunks = [[self.net(w[s : s + CHUNK_FRAMES]) for s in range(0, t, CHUNK_FRAMES)]
                  for w in windows]  # fmt: skip
        out = torch.stack([torch.cat(c) for c in chunks])
        return [out for _ in layers]
