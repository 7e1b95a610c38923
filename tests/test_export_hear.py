"""The HEAR 2021 export (audioscale.export.hear) on a tiny trained run: the API's shapes,
timestamps, equality with our own extraction, and the real ``hear-validator``.

The validator needs TensorFlow, which lives in its own venv (``make test-hear`` builds
``.venv-hear``; ``AUDIOSCALE_HEAR_VENV`` points elsewhere); without it that test skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import tiny_run

from audioscale.audio.io import load_audio
from audioscale.data.manifest import load_task
from audioscale.embed.extract import extract
from audioscale.embed.ours import RunEncoder
from audioscale.export import hear
from audioscale.export.common import LAYER_ENV

REPO = Path(__file__).resolve().parents[1]
HEAR_VENV = Path(os.environ.get("AUDIOSCALE_HEAR_VENV", REPO / ".venv-hear"))
SR = 16000
# float32 throughout, same pieces and layer as extraction; what differs is only the batch
# (and so the summation order inside the matmuls). Measured on the demo tasks: at most
# 2.4e-7 = 1 ulp at |x| ~ 2; 1e-5 leaves room for other BLAS kernels and is far below what
# a real mismatch gives (another layer, pooling or piece cut differs by > 1e-2).
ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("hear"))


@pytest.fixture(scope="module")
def model(run) -> hear.HearModel:
    return hear.load_model(str(run))


def noise(n_sounds: int, seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_sounds, int(seconds * SR), generator=g) * 2 - 1


def test_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == SR
    assert isinstance(model.scene_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size == model.encoder.dim
    assert model.layer == model.encoder.n_layers - 1  # extraction's default, -1


# tokens: 0.5 s = 51 mel frames -> 12; 2 s and 3.74 s are longer than max_seconds (1 s =
# 100 mel frames = 25 tokens a piece): 201 frames -> 25 + 25 (+ 1 frame dropped), 375 -> 93
@pytest.mark.parametrize("seconds,tokens", [(0.5, 12), (2.0, 50), (3.74, 93)])
def test_timestamp_shapes_and_spacing(model, seconds, tokens):
    audio = noise(3, seconds)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    t = tokens
    assert emb.shape == (3, t, model.timestamp_embedding_size) and ts.shape == (3, t)
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    hop_ms = model.encoder.hop_seconds * 1000  # 40 ms
    np.testing.assert_allclose(torch.diff(ts).numpy(), hop_ms, atol=1e-3)
    assert ts[0, 0].item() == pytest.approx(15.0)  # centre of mel frames 0..3 at 10 ms hop
    assert torch.equal(ts[0], ts[2])


def test_scene_is_the_mean_of_the_timestamp_embeddings(model):
    audio = noise(4, 3.74)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (4, model.scene_embedding_size) and scene.dtype == torch.float32
    torch.testing.assert_close(scene, emb.mean(1))


def test_equals_our_extraction_on_demo_clips(run, demo_small):
    """Scene embeddings == ``extract``'s clip embeddings (what ``probe``/``rankme`` use), and
    timestamp embeddings == its frame embeddings, for real demo clips at layers -1 and 0."""
    rows = load_task(demo_small / "tasks" / "pitch").rows[:3]
    enc = RunEncoder(run)
    for layer in (-1, 0):
        m = hear.load_model(str(run), layer=layer)
        clip = extract(enc, rows, layer=layer, progress=False, device="cpu")
        frame = extract(enc, rows, layer=layer, level="frame", progress=False, device="cpu")
        for i, row in enumerate(rows):
            audio = torch.from_numpy(load_audio(row["path"], sr=SR))[None]
            scene = hear.get_scene_embeddings(audio, m)[0].numpy()
            np.testing.assert_allclose(scene, clip.emb[i], rtol=0, atol=ATOL)
            emb, _ = hear.get_timestamp_embeddings(audio, m)
            ref = frame.emb[frame.offsets[i] : frame.offsets[i + 1]]
            np.testing.assert_allclose(emb[0].numpy(), ref, rtol=0, atol=ATOL)


def test_deterministic_and_batch_independent(model):
    audio = noise(5, 2.0, seed=3)
    a = hear.get_scene_embeddings(audio, model)
    assert torch.equal(a, hear.get_scene_embeddings(audio, model))
    alone = hear.get_scene_embeddings(audio[2:3], model)
    torch.testing.assert_close(alone[0], a[2], rtol=0, atol=ATOL)


def test_rejects_bad_input(model):
    with pytest.raises(ValueError, match="2-D tensor"):
        hear.get_scene_embeddings(noise(2, 1.0)[:, None], model)
    with pytest.raises(ValueError, match="2-D tensor"):
        hear.get_timestamp_embeddings(noise(1, 1.0)[0], model)
    with pytest.raises(ValueError, match="at least one sample"):
        hear.get_scene_embeddings(torch.zeros(2, 0), model)


def test_load_model_paths_and_layers(run, monkeypatch):
    from audioscale.errors import AudioscaleError

    ckpt = run / "checkpoints" / "final.safetensors"
    assert hear.load_model(str(ckpt)).encoder.identity() == RunEncoder(run).identity()
    step = run / "checkpoints" / "step_000002.safetensors"
    assert hear.load_model(str(step)).encoder.identity() == RunEncoder(run, 2).identity()
    assert hear.load_model(f"{run}@2").encoder.identity() == RunEncoder(run, 2).identity()
    assert hear.load_model("random:atto").encoder.kind == "random-init"
    with pytest.raises(ValueError, match="MAE encoders"):
        hear.load_model("logmel-stats")
    with pytest.raises(ValueError, match="no model given"):
        hear.load_model()
    with pytest.raises(AudioscaleError):
        hear.load_model(str(run / "nope"))
    monkeypatch.setenv(LAYER_ENV, "0")
    assert hear.load_model(str(run)).layer == 0
    assert hear.load_model(str(run), layer=-1).layer == 1  # an argument beats the variable
    monkeypatch.setenv(LAYER_ENV, "x")
    with pytest.raises(ValueError, match=LAYER_ENV):
        hear.load_model(str(run))
    monkeypatch.setenv(LAYER_ENV, "7")
    with pytest.raises(ValueError, match="out of range"):
        hear.load_model(str(run))


def test_hear_validator_accepts_the_export(run):
    """The real ``hearvalidator`` (2021.0.2; needs TensorFlow: run ``make test-hear``)."""
    exe = HEAR_VENV / "bin" / "hear-validator"
    if not exe.is_file():
        if "AUDIOSCALE_HEAR_VENV" in os.environ:  # asked for by `make test-hear`: must run
            pytest.fail(f"AUDIOSCALE_HEAR_VENV is set but {exe} is missing")
        pytest.skip(f"no {exe}: `make test-hear` builds the HEAR venv (TensorFlow, ~2.7 GB)")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(LAYER_ENV, None)
    res = subprocess.run(
        [str(exe), "audioscale.export.hear", "-m", str(run), "-d", "cpu"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    out = res.stdout + res.stderr
    sys.stdout.write(out[-2000:])
    assert res.returncode == 0, out[-3000:]
    assert "Looks good!" in res.stdout
    assert "Interval between timestamps is 40.0ms" in res.stdout
