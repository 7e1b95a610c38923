"""Our trained runs under the X-ARES encoder contract (Zhang et al., 2025, "X-ARES: A
Comprehensive Framework for Assessing Audio Encoder Performance", Interspeech;
https://github.com/jimbozhang/xares), checked by its
``xares.audio_encoder_checker.check_audio_encoder``::

    from audioscale.export.xares import AudioscaleEncoder
    encoder = AudioscaleEncoder("runs/femto")          # or RUN_DIR@<step>, a .safetensors

The contract: a ``torch.nn.Module`` whose class name ends in ``Encoder``, with
``sampling_rate`` (Hz), ``output_dim`` (D) and ``hop_size_in_ms``, whose ``forward``
maps a (B, T) waveform to (B, T', D) frames. Ours are the chosen layer's time tokens
(``export.common.encode``: pieces and layer as our extraction, default layer -1 or
``$AUDIOSCALE_HEAR_LAYER``), so X-ARES's mean-pooled embedding of a clip equals
``audioscale probe``'s. ``hop_size_in_ms`` is the token hop (40 ms for 64 × 4 patches).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audioscale.export.common import encode, load_encoder, resolve_layer


class AudioscaleEncoder(torch.nn.Module):
    """An audioscale run (or ``random:...`` reference) as an X-ARES encoder."""

    def __init__(self, model: str | Path, layer: int | None = None):
        super().__init__()
        enc = load_encoder(model)
        self.net = enc.net  # registered, so .to(device) moves the network and the frontend
        self.logmel = enc.logmel
        self.encoder = enc
        self.layer = resolve_layer(enc, layer)
        self.sampling_rate: int = enc.sample_rate
        self.output_dim: int = int(enc.dim)
        self.hop_size_in_ms: float = enc.hop_seconds * 1000.0

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform at ``sampling_rate`` → (B, T', output_dim) float32 frames."""
        return encode(self.encoder, audio, self.layer)[0]
