"""The batching engine: runs an encoder on clip inputs and yields each clip's frames.

- Long clips are cut into pieces of ``encoder.max_seconds`` (or ``max_mel_frames``),
  encoded separately and their frames concatenated. A trailing piece shorter than the
  encoder's minimum input is dropped; a clip shorter than it is zero-padded (waveform)
  or padded with the log-mel floor (mel path, ``audio.frontend.floor_db``).
- Batching: pieces are sorted by length. Encoders with ``pads_exactly`` get padded
  batches plus ``lengths``; the others get only equal-length batches, so an embedding
  never depends on its batch mates. Every output is trimmed to ``n_frames(length)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from audioscale.embed.base import Encoder, cut_pieces

BLOCK_CLIPS = 64  # clips decoded and batched together


def batches(lengths: list[int], batch_size: int, pads: bool) -> list[list[int]]:
    """Piece indices per batch: longest first; equal lengths only unless ``pads``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        last = out[-1] if out else None
        fits = last is not None and len(last) < batch_size
        if fits and (pads or lengths[last[0]] == lengths[i]):
            last.append(i)
        else:
            out.append([i])
    return out


class Engine:
    """Runs the encoder on blocks of clip inputs and yields (row index, frames (T, D))."""

    def __init__(self, enc: Encoder, layer: int, batch_size: int, mel: bool):
        self.enc, self.layer, self.bs, self.mel = enc, layer, batch_size, mel
        if mel:
            from audioscale.audio.frontend import floor_db

            floor = floor_db(enc.frontend_config)
            self.max_len, self.min_len, self.pad = enc.max_mel_frames, enc.min_mel_frames, floor
            self.run, self.valid = enc.frames_from_mel, enc.n_frames_from_mel
        else:
            self.max_len, self.min_len, self.pad = enc.max_samples(), enc.min_samples, 0.0
            self.run, self.valid = enc.frames, enc.n_frames
        self.audio_seconds = 0.0

    def seconds(self, x: torch.Tensor) -> float:
        if self.mel:
            return x.shape[-1] * self.enc.frontend_config.hop_length / self.enc.sample_rate
        return x.shape[-1] / self.enc.sample_rate

    def __call__(self, inputs: Iterable[tuple[int, torch.Tensor]]):
        block: list[tuple[int, torch.Tensor]] = []
        for item in inputs:
            block.append(item)
            if len(block) >= BLOCK_CLIPS:
                yield from self._block(block)
                block = []
        if block:
            yield from self._block(block)

    def _block(self, block: list[tuple[int, torch.Tensor]]):
        pieces, owner = [], []
        for c, (_, x) in enumerate(block):
            self.audio_seconds += self.seconds(x)
            for p in cut_pieces(x.float(), self.max_len, self.min_len, self.pad):
                pieces.append(p)
                owner.append(c)
        lengths = [p.shape[-1] for p in pieces]
        outs: list[np.ndarray | None] = [None] * len(pieces)
        for idx in batches(lengths, self.bs, self.enc.pads_exactly):
            for j, f in zip(idx, self._run([pieces[j] for j in idx]), strict=True):
                outs[j] = f
        per_clip: list[list[np.ndarray]] = [[] for _ in block]
        for j, c in enumerate(owner):
            per_clip[c].append(outs[j])
        for c, (i, _) in enumerate(block):
            yield i, np.concatenate(per_clip[c], axis=0)

    def _run(self, items: list[torch.Tensor]) -> list[np.ndarray]:
        lens = [p.shape[-1] for p in items]
        t = max(lens)
        batch = torch.stack(
            [torch.nn.functional.pad(p, (0, t - p.shape[-1]), value=self.pad) for p in items]
        ).to(self.enc.device)
        lengths = None
        if min(lens) != t:
            lengths = torch.tensor(lens, device=self.enc.device)
        with torch.inference_mode():
            f = self.run(batch, [self.layer], lengths)[0]
        f = f.float().cpu().numpy()
        return [f[k, : self.valid(n)] for k, n in enumerate(lens)]
