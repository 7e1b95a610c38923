"""Hugging Face ``transformers`` audio encoders behind the ``Encoder`` interface.

Loaded from a local folder only (``local_files_only=True``; ``HF_HUB_OFFLINE=1`` is set
before transformers is imported), so nothing is fetched at run time. Supported
``model_type``s and what a frame is:

- ``wav2vec2`` (Baevski et al. 2020), ``hubert`` (Hsu et al. 2021), ``wavlm`` (Chen et
  al. 2022): raw 16 kHz waveform, zero-mean/unit-variance per clip when the folder's
  feature extractor says ``do_normalize`` (default True without one), as
  ``Wav2Vec2FeatureExtractor``; frames are transformer outputs at the conv stack's
  stride (320 samples = 20 ms). Batches hold equal-length clips only (group-norm models
  must not see padding). Long clips are chunked at 30 s.
- ``whisper`` (Radford et al. 2023), encoder only: the folder's ``WhisperFeatureExtractor``
  makes the log-mel of each clip padded to its window (30 s for released models);
  frames at 20 ms, trimmed to the valid part of the window. Chunked at the window.
- ``audio-spectrogram-transformer`` (AST, Gong et al. 2021): the folder's
  ``ASTFeatureExtractor`` (Kaldi-style fbank, padded to ``max_length`` frames); the
  patch tokens (CLS and distillation tokens dropped) are averaged over frequency, so a
  frame is one time column of patches (``time_stride`` × 10 ms = 100 ms), trimmed to the
  columns that start inside the clip. Chunked at ``max_length`` frames.

Layers: ``i`` is transformer layer ``i``'s output (``hidden_states[i + 1]``; the
embedding output ``hidden_states[0]`` is not exposed); ``-1`` is the last, which for
Whisper includes its final LayerNorm. Identity: sha256 over every file in the folder.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from audioscale.embed.base import Encoder
from audioscale.errors import AudioscaleError
from audioscale.utils import sha256_file

W2V_TYPES = ("wav2vec2", "hubert", "wavlm")
SUPPORTED = (*W2V_TYPES, "whisper", "audio-spectrogram-transformer")
W2V_MAX_SECONDS = 30.0


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise AudioscaleError("hf: encoders need transformers (pip install transformers)") from None
    transformers.logging.set_verbosity_error()
    return transformers


def folder_hash(path: Path) -> str:
    """sha256 over (relative name, sha256) of every non-hidden file under ``path``."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


class HFEncoder(Encoder):
    """A local transformers audio encoder (see module docstring)."""

    kind = "external"

    def __init__(self, local_path: str | Path):
        path = Path(local_path).expanduser()
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise AudioscaleError(f"hf:{local_path}: no config.json (need a local model folder)")
        try:
            model_type = json.loads(cfg_file.read_text())["model_type"]
        except (ValueError, KeyError):
            raise AudioscaleError(f"hf:{local_path}: config.json has no model_type") from None
        if model_type not in SUPPORTED:
            raise AudioscaleError(
                f"hf:{local_path}: model_type {model_type!r} is not one of {', '.join(SUPPORTED)}"
            )
        self.path = path
        self.model_type = model_type
        self.name = f"hf-{path.name}"
        self.sample_rate = 16000
        self.device = torch.device("cpu")
        tf = _transformers()
        try:
            if model_type in W2V_TYPES:
                self._init_w2v(tf)
            elif model_type == "whisper":
                self._init_whisper(tf)
            else:
                self._init_ast(tf)
        except OSError as e:
            raise AudioscaleError(f"hf:{local_path}: {str(e).splitlines()[0]}") from None
        self.model.eval()
        self._hash = "hf-" + folder_hash(path)[:24]  # at load time, like RunEncoder

    # ------------------------------------------------------------------ wav2vec2 family
    def _init_w2v(self, tf) -> None:
        self.model = tf.AutoModel.from_pretrained(self.path, local_files_only=True)
        cfg = self.model.config
        self.do_normalize = True
        if (self.path / "preprocessor_config.json").is_file():
            fe = tf.Wav2Vec2FeatureExtractor.from_pretrained(self.path, local_files_only=True)
            self.do_normalize = bool(fe.do_normalize)
            self.sample_rate = int(fe.sampling_rate)
        self.convs = list(zip(cfg.conv_kernel, cfg.conv_stride, strict=True))
        self.dim = cfg.hidden_size
        self.n_layers = cfg.num_hidden_layers
        self.hop_seconds = math.prod(cfg.conv_stride) / self.sample_rate
        self.max_seconds = W2V_MAX_SECONDS
        n = 1
        while self.n_frames(n) < 1:
            n += 1
        self.min_samples = n
        self.pads_exactly = False

    # ------------------------------------------------------------------ whisper
    def _init_whisper(self, tf) -> None:
        self.fe = tf.WhisperFeatureExtractor.from_pretrained(self.path, local_files_only=True)
        self.model = tf.WhisperModel.from_pretrained(self.path, local_files_only=True).get_encoder()
        cfg = self.model.config
        need = 2 * cfg.max_source_positions
        if self.fe.nb_max_frames != need:
            raise AudioscaleError(
                f"hf:{self.path}: feature extractor gives {self.fe.nb_max_frames} frames, "
                f"encoder expects {need}"
            )
        self.sample_rate = int(self.fe.sampling_rate)
        self.dim = cfg.d_model
        self.n_layers = cfg.encoder_layers
        self.hop_seconds = 2 * self.fe.hop_length / self.sample_rate
        self.max_seconds = self.fe.n_samples / self.sample_rate
        self.min_samples = 2 * self.fe.hop_length
        self.pads_exactly = True  # every clip is padded to the window by the extractor

    # ------------------------------------------------------------------ AST
    def _init_ast(self, tf) -> None:
        self.fe = tf.ASTFeatureExtractor.from_pretrained(self.path, local_files_only=True)
        self.model = tf.ASTModel.from_pretrained(self.path, local_files_only=True)
        cfg = self.model.config
        if self.fe.num_mel_bins != cfg.num_mel_bins or self.fe.max_length != cfg.max_length:
            raise AudioscaleError(f"hf:{self.path}: feature extractor and model disagree on shape")
        self.f_dim, self.t_dim = self.model.embeddings.get_shape(cfg)
        self.time_stride = cfg.time_stride
        self.sample_rate = int(self.fe.sampling_rate)
        self.dim = cfg.hidden_size
        self.n_layers = cfg.num_hidden_layers
        self.hop_seconds = self.time_stride * 160 / self.sample_rate
        self.max_seconds = (400 + (cfg.max_length - 1) * 160) / self.sample_rate
        self.min_samples = 400
        self.pads_exactly = True  # every clip is padded to max_length by the extractor

    # ------------------------------------------------------------------ interface
    def identity(self) -> str:
        return self._hash

    def n_frames(self, n_samples: int) -> int:
        if self.model_type in W2V_TYPES:
            n = n_samples
            for k, s in self.convs:
                n = (n - k) // s + 1 if n >= k else 0
            return n
        if self.model_type == "whisper":
            mel = min(n_samples, self.fe.n_samples) // self.fe.hop_length
            return min(self.model.config.max_source_positions, (mel + 1) // 2)
        fb = 1 + (n_samples - 400) // 160 if n_samples >= 400 else 0
        return min(self.t_dim, math.ceil(fb / self.time_stride))

    def frames(self, wave, layers, lengths=None):
        idx = [self.layer_index(i) + 1 for i in layers]
        if self.model_type in W2V_TYPES:
            hs = self._w2v(wave)
        else:
            clips = self._clips(wave, lengths)
            hs = self._whisper(clips) if self.model_type == "whisper" else self._ast(clips)
        return [hs[i] for i in idx]

    def _clips(self, wave: torch.Tensor, lengths) -> list[np.ndarray]:
        w = wave.float().cpu().numpy()
        lens = [w.shape[1]] * len(w) if lengths is None else [int(n) for n in lengths]
        return [w[b, :n] for b, n in enumerate(lens)]

    def _w2v(self, wave: torch.Tensor):
        x = wave.float()
        if self.do_normalize:
            mean = x.mean(1, keepdim=True)
            var = x.var(1, keepdim=True, unbiased=False)
            x = (x - mean) / torch.sqrt(var + 1e-7)
        return self.model(input_values=x, output_hidden_states=True).hidden_states

    def _whisper(self, clips: list[np.ndarray]):
        feats = self.fe(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        x = feats["input_features"].to(self.device)
        return self.model(x, output_hidden_states=True).hidden_states

    def _ast(self, clips: list[np.ndarray]):
        feats = self.fe(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        x = feats["input_values"].to(self.device)
        hs = self.model(x, output_hidden_states=True).hidden_states
        out = []
        for h in hs:
            b, _, d = h.shape
            out.append(h[:, 2:].reshape(b, self.f_dim, self.t_dim, d).mean(1))
        return out
