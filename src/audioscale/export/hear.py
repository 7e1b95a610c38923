"""Our trained runs through the HEAR 2021 common API (Turian et al., 2022, "HEAR:
Holistic Evaluation of Audio Representations", PMLR 176:125-145; API at
https://hearbenchmark.com/hear-api.html). This module *is* the export: pass its name to
the HEAR tools with a run folder as the model file::

    hear-validator audioscale.export.hear -m runs/femto     # or RUN_DIR@<step>, a .safetensors
    python -m heareval.embeddings.runner audioscale.export.hear --model runs/femto

API (exactly HEAR's):

- ``load_model(model_file_path="", layer=None) -> HearModel`` (a ``torch.nn.Module``
  with ``sample_rate``, ``scene_embedding_size``, ``timestamp_embedding_size``).
  ``model_file_path``: see ``export.common.load_encoder``; it is required (we ship no
  default weights). ``layer``: the encoder block, default ``$AUDIOSCALE_HEAR_LAYER`` or
  -1, the default of our own extraction (``export.common.resolve_layer``).
- ``get_timestamp_embeddings(audio, model) -> (embeddings, timestamps)``: ``audio``
  (n_sounds, n_samples) float in [-1, 1] at ``model.sample_rate`` (16 kHz for our runs,
  one of HEAR's accepted 16000/22050/44100/48000); embeddings (n_sounds, n_timestamps,
  dim) are the chosen layer's time tokens (40 ms apart for 64 × 4 patches, within HEAR's
  suggested 50 ms); timestamps (n_sounds, n_timestamps) are each token's centre in ms.
- ``get_scene_embeddings(audio, model) -> (n_sounds, dim)``: the encoder's ``pool`` (the
  mean over time) of the same frames, i.e. the clip embedding that ``audioscale probe``
  and ``audioscale rankme`` compute for the same clip and layer.

Clips longer than the encoder's ``max_seconds`` are encoded in pieces exactly as
extraction does (``export.common.encode``). Outputs are float32 on the model's device.
"""

from __future__ import annotations

import torch

from audioscale.embed.ours import MAEEncoder
from audioscale.export.common import encode, load_encoder, resolve_layer

HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)


class HearModel(torch.nn.Module):
    """An audioscale encoder as a HEAR model. Its submodules are the encoder's network and
    log-mel frontend, so ``.to(device)`` (as hear-validator does) moves both."""

    def __init__(self, encoder: MAEEncoder, layer: int | None = None):
        super().__init__()
        if encoder.sample_rate not in HEAR_SAMPLE_RATES:
            raise ValueError(
                f"{encoder.name}: sample rate {encoder.sample_rate} Hz is not one HEAR "
                f"accepts {HEAR_SAMPLE_RATES}"
            )
        self.net = encoder.net
        self.logmel = encoder.logmel
        self.encoder = encoder
        self.layer = resolve_layer(encoder, layer)
        self.sample_rate: int = encoder.sample_rate
        self.scene_embedding_size: int = int(encoder.clip_dim)
        self.timestamp_embedding_size: int = int(encoder.dim)

    def frames(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_sounds, n_samples) → frames (n_sounds, T, dim), timestamps (n_sounds, T) ms."""
        frames, centres = encode(self.encoder, audio, self.layer)
        ms = (centres * 1000.0).to(torch.float32).to(frames.device)
        return frames, ms.expand(frames.shape[0], -1).contiguous()

    def extra_repr(self) -> str:
        return f"name={self.encoder.name!r}, layer={self.layer}, dim={self.encoder.dim}"


def load_model(model_file_path: str = "", layer: int | None = None) -> HearModel:
    """HEAR ``load_model``: our encoder from a run folder / checkpoint (module docstring)."""
    return HearModel(load_encoder(model_file_path), layer)


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR ``get_timestamp_embeddings``: (n_sounds, n_timestamps, dim) embeddings and
    (n_sounds, n_timestamps) frame centres in milliseconds."""
    return model.frames(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """HEAR ``get_scene_embeddings``: (n_sounds, scene_embedding_size), the encoder's pool
    (mean over time) of each sound's frames."""
    frames, _ = model.frames(audio)
    with torch.no_grad():
        return torch.stack([model.encoder.pool(f) for f in frames]).float()
