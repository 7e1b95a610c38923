"""Hand-crafted reference embedding: log-mel statistics.

``LogMelStats`` is the classic "bag of frames" baseline (e.g. the mel-statistics
baselines of HEAR, Turian et al. 2022, and of many audio-tagging papers): frames are the
log-mel dB vectors of our frontend (hop 10 ms, ``n_mels`` bands); the clip embedding is
the per-band mean and standard deviation over the clip's frames (``clip_dim = 2 n_mels``;
population std, ddof 0). It has no learnt parameters, so it is the floor any learnt
encoder should beat on the suite; it reports one "layer".

Standardisation (the fair comparison). Raw dB statistics share a large offset (every
band's mean sits near −47 dB), which dominates cosine kNN (median off-diagonal cosine
≈ 0.9, against ≈ 0.3 for a random-init MAE, whose input is normalised and whose output
is layer-normed) and the uncentred RankMe (one direction carries the offset). So a
study measures ``LogMelStats.standardised_on(reference_rows)``: every clip feature
(and every frame, at frame level) is standardised per dimension with a mean and std
fixed once from a reference set of unlabeled clips, never from the clips being scored.
The study's reference is crops of its pool's *train* split (the unlabeled audio every
trained arm learns from; no task clip, no test split), the same for every run
(``reference_rows``: at most 512 seeded crops, of the eval pool's median clip length).
Frame statistics come from the reference clips' means and stds by the law of total
variance (exact for equal-length crops). Built
without a reference (``LogMelStats()``, spec ``logmel-stats``) it gives raw dB; spec
``logmel-stats:<pool>`` standardises on that pool's train split.
"""

from __future__ import annotations

import numpy as np
import torch

from audioscale.audio.frames import frames_for
from audioscale.config import FrontendConfig, config_hash
from audioscale.embed.base import Encoder


class LogMelStats(Encoder):
    """Mean + std per mel band of the log-mel (dB). Frames: the log-mel frames themselves."""

    kind = "baseline"
    pads_exactly = True  # frames are local: zero padding only adds frames, which are trimmed
    n_layers = 1

    def __init__(
        self,
        frontend_cfg: FrontendConfig | None = None,
        reference: tuple[np.ndarray, np.ndarray] | None = None,
        reference_name: str | None = None,
    ):
        """``reference``: (mean, std) of the raw clip features (length ``2 n_mels``) to
        standardise with; None keeps raw dB. ``reference_name`` names the set."""
        from audioscale.audio.frontend import LogMel

        cfg = frontend_cfg or FrontendConfig()
        self.name = "logmel-stats" if reference is None else "logmel-stats-std"
        self.reference_name = reference_name
        self._ref = None
        if reference is not None:
            mu, sd = (np.asarray(v, np.float64).reshape(-1) for v in reference)
            if mu.shape != (2 * cfg.n_mels,) or sd.shape != mu.shape:
                raise ValueError(f"reference must be two arrays of {2 * cfg.n_mels} values")
            frame_mu = mu[: cfg.n_mels]  # the mean of the clip means
            frame_sd = np.sqrt(np.maximum(reference_frame_var(mu, sd, cfg.n_mels), 1e-12))
            sd = np.where(sd > 1e-6, sd, 1.0)
            self._ref = {
                "clip": (torch.from_numpy(mu), torch.from_numpy(sd)),
                "frame": (torch.from_numpy(frame_mu), torch.from_numpy(frame_sd)),
            }
            self._ref_hash = config_hash([np.round(mu, 6).tolist(), np.round(sd, 6).tolist()], 12)
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
        base = "logmel-stats-" + config_hash(self.frontend_config.model_dump(mode="json"), 16)
        return base if self._ref is None else f"{base}-std{self._ref_hash}"

    @property
    def standardised(self) -> bool:
        return self._ref is not None

    @classmethod
    def standardised_on(
        cls,
        rows: list[dict],
        frontend_cfg: FrontendConfig | None = None,
        name: str | None = None,
        **extract_kw,
    ) -> LogMelStats:
        """A standardised baseline whose mean/std are the raw clip features of ``rows``
        (extracted by ``embed.extract.extract``; ``extract_kw`` passed on)."""
        from audioscale.embed.extract import extract

        raw = cls(frontend_cfg)
        z = extract(raw, rows, progress=False, **extract_kw).emb.astype(np.float64)
        if len(z) < 2:
            raise ValueError(f"{len(z)} decodable reference clips: need at least 2")
        return cls(frontend_cfg, (z.mean(0), z.std(0)), name)

    @property
    def clip_dim(self) -> int:
        return 2 * self.dim

    def n_frames(self, n_samples: int) -> int:
        return frames_for(n_samples, self.frontend_config)

    def n_frames_from_mel(self, n_mel_frames: int) -> int:
        return n_mel_frames

    def frames(self, wave, layers, lengths=None):
        return self.frames_from_mel(self.logmel(wave.float()), layers)

    def frames_from_mel(self, mel, layers, lengths=None):
        for layer in layers:
            self.layer_index(layer)
        f = mel.transpose(1, 2).float()  # (B, T, n_mels)
        if self._ref is not None:
            mu, sd = self._ref["frame"]
            f = ((f.double() - mu.to(f.device)) / sd.to(f.device)).float()
        return [f for _ in layers]

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """Raw mean + std per band of the dB frames (undoing the frame standardisation
        first), then standardised with the reference's clip statistics when set."""
        f = frames.double()
        if self._ref is not None:
            mu, sd = self._ref["frame"]
            f = f * sd.to(f.device) + mu.to(f.device)
        z = torch.cat([f.mean(0), f.std(0, correction=0)])
        if self._ref is not None:
            mu, sd = self._ref["clip"]
            z = (z - mu.to(z.device)) / sd.to(z.device)
        return z.float()


def reference_frame_var(mu: np.ndarray, sd: np.ndarray, n_mels: int) -> np.ndarray:
    """Per-band frame variance of a reference set from its clip-feature mean/std:
    E[var within clip] + var of clip means = E[s²] + Var[m], with E[s²] = Var[s] + E[s]²
    (law of total variance; exact when every reference clip has the same length)."""
    var_m = sd[:n_mels] ** 2
    e_s2 = sd[n_mels:] ** 2 + mu[n_mels:] ** 2
    return e_s2 + var_m


REFERENCE_CLIPS = 512


def reference_rows(
    pool: str, crop: float = 4.0, seed: int = 0, n: int = REFERENCE_CLIPS
) -> list[dict]:
    """The standardisation set: at most ``n`` crops of ``crop`` seconds of the pool's
    train split (``data.subsets.crops_of``, then the seeded ``"choice"`` subsample of
    ``sampling.subsample``, kept in order). Unlabeled audio every trained arm learns
    from; never a task clip, so never a test split."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import crops_of, train_rows
    from audioscale.sampling import subsample

    return subsample(crops_of(train_rows(load_pool(pool)), crop), n, seed, "choice")
