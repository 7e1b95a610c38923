"""The one small interface every encoder offers to extraction, RankMe and probes.

An ``Encoder`` maps a batch of waveforms ``(B, samples)`` at ``sample_rate`` to frame
embeddings, one ``(B, T, D)`` tensor per requested layer. Extraction (``extract.py``)
handles everything around it: decoding, chunking long clips to ``max_seconds`` and
stitching, batching, padding, pooling, caching, devices.

Conventions:

- ``layers`` index the encoder's blocks: ``i`` is the output of block ``i`` (0-based),
  negative values count from the end, ``-1`` is the last block (the encoder output).
- ``n_frames(n_samples)`` is how many output frames an *unpadded* input of ``n_samples``
  yields; extraction trims every output to it, so padding never leaks into a clip mean
  ("masked mean" over the valid frames only).
- ``pads_exactly``: when True, ``frames(wave, layers, lengths)`` on a zero-padded batch
  gives, for the first ``n_frames(length)`` frames of each item, the same result as the
  unpadded item alone (attention masks or frame-local computation). When False,
  extraction batches only pieces of identical length, so every clip's embedding is
  independent of what it was batched with.
- ``pool(frames (T, D)) -> (clip_dim,)``: clip embedding of one clip's valid frames;
  the mean over time by default (``clip_dim == dim``). ``LogMelStats`` overrides it.
- Optional mel fast path: an encoder whose input is our own log-mel (``frontend_config``
  set) may implement ``frames_from_mel(mel (B, n_mels, T), layers, lengths)`` with
  ``n_frames_from_mel`` and ``max_mel_frames``; extraction then computes each clip's
  log-mel once (cached, shared by every encoder of a study with the same frontend).
- ``identity()`` is a stable hash of everything that determines the output (weights,
  config, seed); embedding caches are keyed by it, so a changed checkpoint never reads
  a stale cache.
"""

from __future__ import annotations

import hashlib

import torch

from audioscale.config import FrontendConfig


def sha256_state(module: torch.nn.Module) -> str:
    """sha256 over a module's state_dict (names, dtypes, shapes and bytes), sorted by name."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def piece_spans(n: int, max_len: int | None, min_len: int = 0) -> list[tuple[int, int]]:
    """How a clip of ``n`` steps (samples or mel frames) is cut for an encoder that takes
    at most ``max_len`` (None: any length) and at least ``min_len``: ``(start, length)``
    of consecutive pieces of ``max_len``. A trailing piece shorter than ``min_len`` is
    dropped; a clip shorter than ``min_len`` is one piece, to be padded up to ``min_len``
    (``cut_pieces`` does). Extraction, ``Encoder.frames_long`` and the checker all cut
    here, so they agree on every clip length."""
    step = max_len or max(n, 1)
    spans = []
    for s in range(0, max(n, 1), step):
        length = min(step, n - s)
        if length < min_len and s > 0:
            break
        spans.append((s, length))
    return spans


def cut_pieces(
    x: torch.Tensor, max_len: int | None, min_len: int = 0, pad_value: float = 0.0
) -> list[torch.Tensor]:
    """``x`` (time on the last axis) cut at ``piece_spans``; a piece shorter than
    ``min_len`` (only ever the first) is right-padded with ``pad_value``."""
    out = []
    for s, length in piece_spans(x.shape[-1], max_len, min_len):
        p = x[..., s : s + length]
        if length < min_len:
            p = torch.nn.functional.pad(p, (0, min_len - length), value=pad_value)
        out.append(p)
    return out


class Encoder:
    """Base class. Subclasses set the attributes and implement ``frames`` and ``identity``."""

    name: str = "encoder"
    kind: str = "external"  # trained | random-init | baseline | external (the store's `kind`)
    sample_rate: int = 16000
    dim: int = 0
    hop_seconds: float = 0.0
    n_layers: int = 1
    max_seconds: float | None = None  # longest input one forward pass takes; None: any
    min_samples: int = 1  # shorter inputs are zero-padded to this length
    pads_exactly: bool = False
    frontend_config: FrontendConfig | None = None  # set only with a frames_from_mel fast path
    device: torch.device = torch.device("cpu")

    # ----------------------------------------------------------------- to implement
    def identity(self) -> str:
        raise NotImplementedError

    def frames(
        self, wave: torch.Tensor, layers: list[int], lengths: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """``wave`` (B, samples) float on ``self.device`` → one (B, T, D) tensor per layer."""
        raise NotImplementedError

    def n_frames(self, n_samples: int) -> int:
        """Valid output frames for an unpadded input of ``n_samples`` samples."""
        raise NotImplementedError

    # ----------------------------------------------------------------- defaults
    @property
    def clip_dim(self) -> int:
        return self.dim

    @property
    def has_mel_path(self) -> bool:
        return self.frontend_config is not None and hasattr(self, "frames_from_mel")

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """Clip embedding from one clip's valid frames (T, D): the mean over time."""
        return frames.mean(0)

    def to(self, device: str | torch.device) -> Encoder:
        """Move every ``nn.Module`` attribute to ``device``; returns self."""
        self.device = torch.device(device)
        for v in vars(self).values():
            if isinstance(v, torch.nn.Module):
                v.to(self.device)
        return self

    def max_samples(self) -> int | None:
        if self.max_seconds is None:
            return None
        return int(round(self.max_seconds * self.sample_rate))

    def layer_index(self, layer: int) -> int:
        """Normalise ``layer`` to 0..n_layers-1 or raise ValueError."""
        i = layer + self.n_layers if layer < 0 else layer
        if not 0 <= i < self.n_layers:
            raise ValueError(f"layer {layer} out of range for {self.n_layers} layers")
        return i

    def frames_long(self, wave: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """``frames`` for equal-length inputs of any length: chunks of ``max_seconds`` are
        encoded separately and their valid frames concatenated in time (as extraction
        does, see ``piece_spans``). A trailing chunk shorter than ``min_samples`` is
        dropped."""
        outs: list[list[torch.Tensor]] = [[] for _ in layers]
        for piece in cut_pieces(wave, self.max_samples(), self.min_samples):
            t = self.n_frames(piece.shape[-1])
            for k, f in enumerate(self.frames(piece, layers)):
                outs[k].append(f[:, :t])
        return [torch.cat(o, dim=1) for o in outs]

    def describe(self) -> dict:
        """Plain-data summary stored beside results and printed by the CLI."""
        return {
            "name": self.name,
            "kind": self.kind,
            "identity": self.identity(),
            "sample_rate": self.sample_rate,
            "dim": self.dim,
            "clip_dim": self.clip_dim,
            "hop_seconds": self.hop_seconds,
            "n_layers": self.n_layers,
            "max_seconds": self.max_seconds,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, layers={self.n_layers})"
