"""Our MAE encoders behind the ``Encoder`` interface: a trained run, or random init.

Both wrap ``MAE.encoder`` (an ``AudioEncoderNet``) with our log-mel frontend. Frames
are the encoder's time tokens (``frames_per_token`` mel frames each: 40 ms for the
default 64 × 4 patches); layer ``i`` is block ``i``'s output, ``-1`` the final
(LayerNorm-ed) encoder output. They expose the mel fast path, so extraction feeds them
cached log-mels. Padded batches are exact: ``forward_features`` masks padded tokens as
attention keys (``lengths``), and the constant-padded STFT of a zero-padded wave equals
the unpadded one on the valid frames. Long clips are cut at ``max_frames`` mel frames
(10.24 s by default), the longest input the positional table serves.

Identity: a run's is the sha256 of its checkpoint file (plus the frontend and model
configs that rebuild it); a random-init encoder's is the sha256 of its initial weights
(which follows from model config + seed) plus the frontend config.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audioscale.audio.frames import frames_for
from audioscale.config import FrontendConfig, ModelConfig, config_hash
from audioscale.embed.base import Encoder, sha256_state
from audioscale.utils import sha256_file


class MAEEncoder(Encoder):
    """Shared wrapper of an ``AudioEncoderNet`` + ``LogMel``."""

    def __init__(self, net: torch.nn.Module, frontend_cfg: FrontendConfig, model_cfg: ModelConfig):
        from audioscale.audio.frontend import LogMel

        self.net = net.eval()
        self.model_cfg = model_cfg
        self.frontend_config = frontend_cfg
        self.logmel = LogMel(frontend_cfg).eval()
        hop, sr = frontend_cfg.hop_length, frontend_cfg.sample_rate
        self.sample_rate = sr
        self.dim = net.dim
        self.n_layers = net.n_layers
        self.fpt = net.frames_per_token
        self.hop_seconds = self.fpt * hop / sr
        self.max_mel_frames = net.max_frames
        self.min_mel_frames = self.fpt
        self.max_seconds = net.max_frames * hop / sr
        self.min_samples = (self.fpt - 1) * hop
        self.pads_exactly = frontend_cfg.pad_mode == "constant"
        self.device = torch.device("cpu")

    def n_frames_from_mel(self, n_mel_frames: int) -> int:
        return n_mel_frames // self.fpt

    def n_frames(self, n_samples: int) -> int:
        return self.n_frames_from_mel(frames_for(n_samples, self.frontend_config))

    def frames_from_mel(self, mel, layers, lengths=None):
        return self.net.forward_features(mel.float(), list(layers), lengths)

    def frames(self, wave, layers, lengths=None):
        mel = self.logmel(wave.float())
        if lengths is not None:
            lengths = frames_for(lengths, self.frontend_config)
        return self.frames_from_mel(mel, layers, lengths)

    def _configs(self) -> dict:
        return {
            "frontend": self.frontend_config.model_dump(mode="json"),
            "model": self.model_cfg.model_dump(mode="json"),
        }


class RunEncoder(MAEEncoder):
    """The encoder of a run folder's checkpoint (``final`` or a step number)."""

    kind = "trained"

    def __init__(self, run_dir: str | Path, checkpoint: str | int = "final"):
        from audioscale.train.checkpoint import checkpoint_name, load_mae

        mae, cfg = load_mae(run_dir, checkpoint)
        super().__init__(mae.encoder, cfg.frontend, mae.cfg)
        self.run_dir = Path(run_dir)
        self.run_config = cfg
        self.checkpoint = checkpoint
        self.ckpt_path = self.run_dir / "checkpoints" / f"{checkpoint_name(checkpoint)}.safetensors"
        suffix = "" if checkpoint == "final" else f"@{checkpoint_name(checkpoint)}"
        self.name = f"{self.run_dir.name}{suffix}"
        # hashed now, at load time: a later overwrite of the file must not change the
        # identity of the weights this object holds
        self._identity = "run-" + config_hash(
            {"ckpt": sha256_file(self.ckpt_path), **self._configs()}, 24
        )

    def identity(self) -> str:
        return self._identity


class RandomInitEncoder(MAEEncoder):
    """The same architecture at random initialisation (``build_mae`` under ``seed``)."""

    kind = "random-init"

    def __init__(
        self,
        model_cfg: ModelConfig | None = None,
        frontend_cfg: FrontendConfig | None = None,
        seed: int = 0,
        name: str | None = None,
    ):
        from audioscale.models.mae import build_mae

        model_cfg = model_cfg or ModelConfig()
        frontend_cfg = frontend_cfg or FrontendConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mae = build_mae(model_cfg, frontend_cfg)
        super().__init__(mae.encoder, frontend_cfg, mae.cfg)
        self.seed = seed
        self.name = name or f"random-{model_cfg.preset or 'custom'}-s{seed}"
        self._identity = "random-" + config_hash(
            {"weights": sha256_state(self.net), "seed": seed, **self._configs()}, 24
        )

    def identity(self) -> str:
        return self._identity
