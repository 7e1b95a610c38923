"""Hand-crafted reference embedding: log-mel statistics.

``LogMelStats`` is the classic "bag of frames" baseline (e.g. the mel-statistics
baselines of HEAR, Turian et al. 2022, and of many audio-tagging papers): frames are the
log-mel dB vectors of our frontend (hop 10 ms, ``n_mels`` bands); the clip embedding is
the per-band mean and standard deviation over the clip's frames (``clip_dim = 2 n_mels``;
population std, ddof 0). It has no parameters, so it is the floor any learnt encoder
should beat on the suite; it reports one "layer".
"""

from __future__ import annotations

import torch

from audioscale.config import FrontendConfig, config_hash
from audioscale.embed.base import Encoder


class LogMelStats(Encoder):
    """Mean + std per mel band of the log-mel (dB). Frames: the log-mel frames themselves."""

    kind = "baseline"
    pads_exactly = True  # frames are local: zero padding only adds frames, which are trimmed
    n_layers = 1

    def __init__(self, frontend_cfg: FrontendConfig | None = None):
        from audioscale.audio.frontend import LogMel

        cfg = frontend_cfg or FrontendConfig()
        self.name = "logmel-stats"
        self.frontend_config = cfg
        self.sample_rate = cfg.sample_rate
        self.dim = cfg.n_mels
        self.hop_seconds = cfg.hop_length / cfg.sample_rate
        self.max_seconds = None
        self.max_mel_frames = None
        self.min_mel_frames = 1
        self.logmel = LogMel(cfg).eval()
        self.device = torch.device("cpu")

    def identity(self) -> str:
        return "logmel-stats-" + config_hash(self.frontend_config.model_dump(mode="json"), 16)

    @property
    def clip_dim(self) -> int:
        return 2 * self.dim

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.frontend_config.hop_length

    def n_frames_from_mel(self, n_mel_frames: int) -> int:
        return n_mel_frames

    def frames(self, wave, layers, lengths=None):
        return self.frames_from_mel(self.logmel(wave.float()), layers)

    def frames_from_mel(self, mel, layers, lengths=None):
        for layer in layers:
            self.layer_index(layer)
        f = mel.transpose(1, 2).float()  # (B, T, n_mels)
        return [f for _ in layers]

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        f = frames.double()
        return torch.cat([f.mean(0), f.std(0, correction=0)]).float()
