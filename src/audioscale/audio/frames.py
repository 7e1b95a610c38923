"""Frame counts of the centred log-mel frontend, without torch.

The STFT pads ``n_fft // 2`` samples on each side (centred framing), so ``samples``
input samples give ``1 + samples // hop`` frames. This module is the one place that
formula lives; ``audioscale.audio.frontend`` re-exports ``frames_for`` beside ``LogMel``,
and torch-free callers (the sweep's parent process ordering jobs) import it from here.
"""

from __future__ import annotations

from typing import Any

from audioscale.config import FrontendConfig


def frames_for(samples: Any, cfg: FrontendConfig) -> Any:
    """Log-mel frames for ``samples`` input samples: an int for a number, elementwise for
    an integer numpy array or torch tensor (e.g. a batch of valid lengths)."""
    if getattr(samples, "ndim", 0):
        return 1 + samples // cfg.hop_length
    return 1 + int(samples) // cfg.hop_length


def frames_for_seconds(seconds: float, cfg: FrontendConfig) -> int:
    """Log-mel frames of ``seconds`` of audio (``round(seconds * sample_rate)`` samples)."""
    return frames_for(round(seconds * cfg.sample_rate), cfg)
