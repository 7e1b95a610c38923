"""The X-ARES export (audioscale.export.xares) on a tiny trained run, checked by the real
``xares.audio_encoder_checker`` (xares==0.1.3, installed with --no-deps plus loguru by
the Makefile: its checker module imports only torch and loguru)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_helpers import tiny_run

from audioscale.export import hear
from audioscale.export.xares import AudioscaleEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("xares"))


def test_xares_checker_accepts_the_export(run):
    checker = pytest.importorskip(
        "xares.audio_encoder_checker", reason="xares not installed (make venv installs it)"
    )
    assert checker.check_audio_encoder(AudioscaleEncoder(run)) is True


def test_contract_and_equality_with_hear(run):
    enc = AudioscaleEncoder(run)
    assert type(enc).__name__.endswith("Encoder") and isinstance(enc, torch.nn.Module)
    assert (enc.sampling_rate, enc.output_dim, enc.hop_size_in_ms) == (16000, 64, 40.0)
    audio = torch.randn(2, 50000, generator=torch.Generator().manual_seed(0))
    out = enc(audio)
    assert out.shape == (2, 50000 // 640, 64) and out.dtype == torch.float32
    assert not out.requires_grad
    scene = hear.get_scene_embeddings(audio, hear.load_model(str(run)))
    torch.testing.assert_close(out.mean(1), scene)
    with pytest.raises(ValueError, match="2-D tensor"):
        enc(audio[:, None])
