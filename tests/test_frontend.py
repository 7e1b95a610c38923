"""audio.frontend: Slaney filterbank and log-mel against librosa, tones in the right band."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioscale.audio.frontend import (
    LogMel,
    frames_for,
    hz_to_mel,
    logmel,
    mel_filterbank,
    mel_to_hz,
)
from audioscale.config import FrontendConfig

torch.set_num_threads(1)


def _librosa_db(x, cfg: FrontendConfig):
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(
        y=x, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
        fmin=cfg.f_min, fmax=cfg.f_max, power=2.0, center=True, pad_mode=cfg.pad_mode,
        window="hann", htk=False, norm="slaney",
    )  # fmt: skip
    return S, librosa.power_to_db(S, ref=1.0, amin=cfg.amin, top_db=cfg.top_db)


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax", [(16000, 512, 64, 0, 8000), (16000, 400, 128, 50, 7600)]
)
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64
    )
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_mel_scale_roundtrip_and_knee():
    f = np.array([0.0, 500.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: linear to 1 kHz (15 mel)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("top_db", [None, 80.0])
def test_logmel_matches_librosa_float64(pad_mode, top_db):
    cfg = FrontendConfig(pad_mode=pad_mode, top_db=top_db)
    x = np.random.default_rng(0).standard_normal(16000 + 77) * 0.1
    x[:4000] *= np.linspace(0, 1, 4000)  # quiet start so dB values span a wide range
    S, D = _librosa_db(x, cfg)
    ours = logmel(x, cfg)
    assert ours.dtype == np.float64 and ours.shape == D.shape == (64, frames_for(len(x), cfg))
    np.testing.assert_allclose(ours, D, atol=1e-5, rtol=0)
    power = LogMel(cfg).double().power_mel(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(power, S, rtol=1e-5, atol=1e-12)


def test_logmel_float32_close_to_librosa():
    cfg = FrontendConfig()
    x = (np.random.default_rng(1).standard_normal(32000) * 0.1).astype(np.float32)
    _, D = _librosa_db(x, cfg)
    ours = logmel(x, cfg)
    assert ours.dtype == np.float32
    # float32 STFTs round differently; 1e-4 dB is a 2.3e-5 relative power difference
    np.testing.assert_allclose(ours, D, atol=1e-4, rtol=0)


def test_padding_modes_differ_only_at_edges():
    x = np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    a = logmel(x, FrontendConfig(pad_mode="constant"))
    b = logmel(x, FrontendConfig(pad_mode="reflect"))
    edge = 512 // 2 // 160 + 1  # frames whose window reaches into the padding
    np.testing.assert_allclose(a[:, edge + 1 : -edge - 1], b[:, edge + 1 : -edge - 1], atol=1e-4)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 0.1


@pytest.mark.parametrize("freq", [200.0, 950.0, 2500.0, 6000.0])
def test_tone_lands_in_its_mel_band(freq):
    cfg = FrontendConfig()
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    m = logmel(x, cfg)[:, 10:-10].mean(axis=1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), cfg.n_mels + 2))
    centres = edges[1:-1]
    assert abs(centres[m.argmax()] - freq) <= np.diff(edges).max()  # peak band holds the tone
    lo, hi = edges[m.argmax()], edges[m.argmax() + 2]
    assert lo <= freq <= hi
    assert m.max() - np.median(m) > 40  # a pure tone stands far above the rest


def test_batched_equals_single_and_frames_formula():
    cfg = FrontendConfig()
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((3, 8000)).astype(np.float32)
    out = LogMel(cfg)(torch.from_numpy(batch))
    assert out.shape == (3, 64, 51) and frames_for(8000, cfg) == 51
    for i in range(3):
        np.testing.assert_allclose(out[i].numpy(), logmel(batch[i], cfg), atol=1e-5)
    for n in (1, 159, 160, 161, 16000):
        assert logmel(np.zeros(n, np.float32), cfg).shape[1] == frames_for(n, cfg) == 1 + n // 160


def test_silence_hits_amin_floor_and_module_state():
    cfg = FrontendConfig()
    m = LogMel(cfg)
    out = m(torch.zeros(2, 1600))
    assert torch.all(out == -100.0)  # 10 * log10(1e-10)
    assert len(m.state_dict()) == 0  # buffers are derived, not saved in checkpoints
    assert "n_mels=64" in repr(m)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randn(2, 16000)
    m = LogMel(FrontendConfig())
    cpu = m(x)
    gpu = m.to("cuda")(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=0)
