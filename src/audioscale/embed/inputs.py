"""Each good clip's encoder input, in row order: its waveform, or its log-mel.

- Decoding: ``audio.io.load_audio`` at the encoder's rate (honouring a row's
  ``max_seconds`` / ``offset_seconds``), ``DECODE_THREADS`` decoder threads ahead of the
  encoder. A clip that fails to decode (``BadAudioError`` and kin) is skipped; its row
  index and one-line reason land in ``ClipInputs.errors``.
- Log-mels (encoders with ``frames_from_mel``, i.e. ``has_mel_path``): the frontend's
  ``LogMel`` on the encoder's device, on the whole clip. With a ``cache_dir`` they are read
  through the float32 feature cache (:mod:`audioscale.data.featcache`) under
  ``<cache_dir>/mel``, computed once per frontend config and file list and shared by
  every encoder of a study that uses that frontend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from audioscale.embed.base import Encoder
from audioscale.errors import AudioscaleError
from audioscale.utils import ordered_map

DECODE_THREADS = 2


def load_row(row: dict, sr: int) -> np.ndarray:
    """The samples a manifest row names, at ``sr`` Hz."""
    from audioscale.audio.io import load_audio

    return load_audio(
        row["path"],
        sr=sr,
        max_seconds=row.get("max_seconds"),
        offset_seconds=row.get("offset_seconds") or 0.0,
    )


def _safe(fn: Callable, x) -> tuple[object | None, str | None]:
    """fn(x) → (value, None) or (None, one-line reason) for a per-file failure."""
    try:
        return fn(x), None
    except (AudioscaleError, OSError, ValueError, RuntimeError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, msg


def _prefetch(fn: Callable, items: list, ahead: int = 16) -> Iterator[tuple[object, str | None]]:
    """Ordered ``_safe(fn, item)`` for each item, decoded on threads a bounded way ahead."""
    return ordered_map(lambda x: _safe(fn, x), items, DECODE_THREADS, ahead)


class ClipInputs:
    """Iterating yields ``(row index, input)`` for each good clip: a waveform ``(S,)`` or a
    log-mel ``(n_mels, T)``, float32 (see the module doc)."""

    def __init__(self, encoder: Encoder, rows: list[dict], use_mel: bool, cache_dir, device):
        self.enc, self.rows, self.device = encoder, rows, device
        self.mel = bool(use_mel and encoder.has_mel_path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.errors: dict[int, str] = {}
        self._frontend = None

    def frontend(self):
        if self._frontend is None:
            from audioscale.audio.frontend import LogMel

            self._frontend = LogMel(self.enc.frontend_config).to(self.device).eval()
        return self._frontend

    def _wave_to_mel(self, x: np.ndarray) -> torch.Tensor:
        from audioscale.data.featcache import logmel_long

        mel = logmel_long(x, self.frontend(), self.enc.frontend_config, None)
        return torch.from_numpy(mel.T)

    def _decoded(self) -> Iterator[tuple[int, np.ndarray]]:
        sr = self.enc.sample_rate
        for i, (x, err) in enumerate(_prefetch(lambda r: load_row(r, sr), self.rows)):
            if err is not None:
                self.errors[i] = err
                continue
            yield i, x

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        if not self.mel:
            for i, x in self._decoded():
                yield i, torch.from_numpy(x)
        elif self.cache_dir is None:
            for i, x in self._decoded():
                yield i, self._wave_to_mel(x)
        else:
            yield from self._cached_mels()

    def _cached_mels(self) -> Iterator[tuple[int, torch.Tensor]]:
        from audioscale.data.featcache import FeatureCache

        cache = FeatureCache.build(
            self.rows,
            self.enc.frontend_config,
            self.cache_dir / "mel",
            progress=False,
            workers=DECODE_THREADS,
            dtype="float32",
            device=self.device,
        )
        self.errors.update(cache.problems())
        for j, i in enumerate(cache.row_index):
            yield int(i), torch.from_numpy(np.array(cache.item(j)).T)
