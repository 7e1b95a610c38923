"""Encoders, extraction, cache and checker on synthetic clips with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audioscale.audio.frontend import logmel
from audioscale.config import FrontendConfig, ModelConfig, RunConfig, TrainConfig, dump_yaml
from audioscale.embed.base import Encoder
from audioscale.embed.baselines import LogMelStats
from audioscale.embed.checker import check_encoder
from audioscale.embed.extract import embed_clips, extract, iter_frames
from audioscale.embed.ours import RandomInitEncoder, RunEncoder
from audioscale.embed.registry import get_encoder
from audioscale.errors import AudioscaleError

SR = 16000
ATTO = ModelConfig(preset="atto", max_seconds=1.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def tone(f, seconds, amp=0.3, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (amp * np.sin(2 * np.pi * f * t) + noise).astype(np.float32)


@pytest.fixture()
def clips(tmp_path):
    """Rows of wav files: varied lengths, one long (2.7 s > 1 s max), one bad, one empty."""
    rows = []
    for i, (f, s) in enumerate([(300, 0.5), (900, 0.73), (2000, 2.7), (500, 0.5), (4000, 1.0)]):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, tone(f, s, seed=i), SR)
        rows.append({"path": str(p)})
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    rows.insert(1, {"path": str(tmp_path / "bad.wav")})
    rows.append({"path": str(tmp_path / "empty.wav")})
    return rows


def make_run(run_dir, seed=0):
    from audioscale.models.mae import build_mae
    from audioscale.train.checkpoint import save_checkpoint

    cfg = RunConfig(name="r", model=ATTO, train=TrainConfig(steps=1))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    torch.manual_seed(seed)
    mae = build_mae(cfg.model, cfg.frontend)
    save_checkpoint(mae, run_dir, "final", {"step": 1, "fraction": 1.0})
    return run_dir


# ----------------------------------------------------------------------------- encoders


def test_logmel_stats_is_mean_and_std_of_the_logmel():
    enc = LogMelStats()
    x = tone(1000, 1.0)
    mel = logmel(x).astype(np.float64)  # (64, T)
    with torch.inference_mode():
        f = enc.frames_long(torch.from_numpy(x)[None], [-1])[0][0]
    emb = enc.pool(f).numpy()
    assert emb.shape == (128,)
    np.testing.assert_allclose(emb[:64], mel.mean(1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(emb[64:], mel.std(1), rtol=1e-4, atol=1e-4)
    # the loudest band is the one holding 1 kHz
    from audioscale.audio.frontend import hz_to_mel

    edges = np.linspace(hz_to_mel(0), hz_to_mel(8000), 66)
    assert abs(int(emb[:64].argmax()) - int(np.searchsorted(edges, hz_to_mel(1000)) - 1)) <= 1


@pytest.mark.parametrize("spec", ["logmel-stats", "random:atto"])
def test_builtin_encoders_pass_the_checker(spec):
    assert check_encoder(get_encoder(spec)) == []


class Broken(Encoder):
    """A configurable faulty encoder for the checker."""

    name, sample_rate, dim, hop_seconds, n_layers = "broken", SR, 8, 0.02, 2

    def __init__(self, fault):
        self.fault = fault

    def identity(self):
        return "broken"

    def n_frames(self, n):
        return n // 320

    def frames(self, wave, layers, lengths=None):
        b, n = wave.shape
        t = n // 320
        base = wave[:, : t * 320].reshape(b, t, 320)[..., :8] * 10
        outs = [base + i for i in range(len(layers))]
        if self.fault == "dim":
            outs = [o[..., :4] for o in outs]
        if self.fault == "nan":
            outs[0][0, 0, 0] = float("nan")
        if self.fault == "random":
            outs = [o + torch.rand_like(o) for o in outs]
        if self.fault == "hop":
            outs = [o[:, : t // 2] for o in outs]
        return outs


@pytest.mark.parametrize(
    "fault,message",
    [
        ("dim", "output shape"),
        ("nan", "NaN"),
        ("random", "not deterministic"),
        ("hop", "frames for 2 s"),
        ("layers", "layer -1 differs"),
    ],
)
def test_checker_catches_faults(fault, message):
    problems = check_encoder(Broken(fault))
    assert any(message in p for p in problems), problems


# ----------------------------------------------------------------------------- extraction


def test_bad_clips_are_skipped_and_reported(clips):
    ex = extract(LogMelStats(), clips, progress=False)
    assert ex.ok.tolist() == [True, False, True, True, True, True, False]
    assert set(ex.errors) == {1, 6}
    assert "not an audio file" in ex.errors[1] or "bad.wav" in ex.errors[1]
    assert ex.emb.shape == (5, 128) and ex.emb.dtype == np.float32
    full = ex.full()
    assert np.isnan(full[1]).all() and np.array_equal(full[0], ex.emb[0])
    assert embed_clips(LogMelStats(), clips, progress=False).shape == (5, 128)


def test_all_bad_clips_give_an_empty_aligned_result(clips, tmp_path):
    bad = [clips[1], clips[6]]
    for _ in range(2):  # computed, then read back from the cache
        ex = extract(LogMelStats(), bad, cache_dir=tmp_path / "c", progress=False)
        assert ex.emb.shape == (0, 128) and not ex.ok.any() and set(ex.errors) == {0, 1}
    assert list(iter_frames(LogMelStats(), bad, cache_dir=tmp_path / "c", progress=False)) == []


def test_clip_embedding_is_masked_mean_of_frames_with_chunking(clips):
    enc = RandomInitEncoder(ATTO, seed=1)  # max 1 s: the 2.7 s clip is cut in 3 pieces
    assert enc.max_seconds == pytest.approx(1.0, abs=0.011)
    fr = extract(enc, clips, level="frame", progress=False, batch_size=4)
    cl = extract(enc, clips, level="clip", progress=False, batch_size=4)
    counts = np.diff(fr.offsets)
    # 0.5 s → 51 mel frames → 12 tokens; 2.7 s → 25 + 25 + 17 tokens (stitched)
    assert counts.tolist() == [12, 18, 25 + 25 + 17, 12, 25]
    for j in range(5):
        seg = fr.emb[fr.offsets[j] : fr.offsets[j + 1]]
        np.testing.assert_allclose(cl.emb[j], seg.mean(0), rtol=1e-5, atol=1e-6)
    streamed = list(iter_frames(enc, clips, progress=False))  # batches of 16, not 4
    assert len(streamed) == 5
    # Two routes: other batch compositions pad differently, so BLAS sums in another order.
    # float32 (eps 1.2e-7) through atto's width-64 layers: a few eps * sqrt(64) * |x| of
    # drift (7.2e-7 seen on one machine); 1e-5 keeps a 10x margin over that.
    np.testing.assert_allclose(np.concatenate(streamed), fr.emb, rtol=1e-5, atol=1e-5)
    again = list(iter_frames(enc, clips, progress=False))  # one route twice: bit for bit
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(streamed))


def test_padding_batching_and_input_path_do_not_change_embeddings(clips):
    enc = RandomInitEncoder(ATTO, seed=2)
    one = extract(enc, clips, batch_size=1, progress=False).emb
    many = extract(enc, clips, batch_size=8, progress=False).emb  # padded batches + lengths
    np.testing.assert_allclose(many, one, rtol=1e-4, atol=1e-5)
    wave = extract(enc, clips, batch_size=8, progress=False, use_mel=False).emb
    short = [0, 1, 3, 4]  # clips within max_seconds: waveform and mel paths agree exactly
    np.testing.assert_allclose(wave[short], one[short], rtol=1e-4, atol=1e-5)


class EqualLengthOnly(Encoder):
    """Frames that depend on the whole input (mean over time): batching must not pad."""

    name, sample_rate, dim, hop_seconds, n_layers = "global", SR, 2, 0.01, 1

    def identity(self):
        return "global-v1"

    def n_frames(self, n):
        return n // 160

    def frames(self, wave, layers, lengths=None):
        assert lengths is None
        t = wave.shape[1] // 160
        g = torch.stack([wave.abs().mean(1), wave.pow(2).mean(1)], 1)  # (B, 2)
        return [g[:, None, :].expand(-1, t, -1) for _ in layers]


def test_encoders_without_exact_padding_get_equal_length_batches(clips):
    ex = extract(EqualLengthOnly(), clips, batch_size=8, progress=False)
    for j, i in enumerate(np.flatnonzero(ex.ok)):
        x = sf.read(clips[i]["path"], dtype="float32")[0]
        assert ex.emb[j][0] == pytest.approx(np.abs(x).mean(), rel=1e-5)


def test_cache_rerun_reads_and_changed_checkpoint_never_reads_stale(clips, tmp_path):
    run = make_run(tmp_path / "run", seed=0)
    cache = tmp_path / "cache"
    enc = get_encoder(str(run))
    assert isinstance(enc, RunEncoder) and enc.kind == "trained"
    a = extract(enc, clips, cache_dir=cache, progress=False)
    assert not a.from_cache
    b = extract(get_encoder(str(run)), clips, cache_dir=cache, progress=False)
    assert b.from_cache and np.array_equal(a.emb, b.emb) and b.errors == a.errors
    assert np.array_equal(b.ok, a.ok)
    make_run(run, seed=1)  # new weights under the same path
    enc2 = get_encoder(str(run))
    assert enc2.identity() != enc.identity()
    c = extract(enc2, clips, cache_dir=cache, progress=False)
    assert not c.from_cache and not np.allclose(c.emb, a.emb)
    fresh = extract(enc2, clips, cache_dir=None, progress=False)
    np.testing.assert_allclose(c.emb, fresh.emb, rtol=1e-5, atol=1e-6)
    # the log-mel cache was computed once and is shared by both checkpoints
    assert len(list((cache / "mel").glob("*/shard_*.f32"))) == 1
    # other layers have their own entries
    d = extract(enc2, clips, layer=0, cache_dir=cache, progress=False)
    assert not d.from_cache and not np.allclose(d.emb, c.emb)


def test_frame_cache_via_iter_frames(clips, tmp_path):
    enc = LogMelStats()
    first = list(iter_frames(enc, clips, cache_dir=tmp_path, progress=False))
    errors: dict = {}
    again = list(iter_frames(enc, clips, cache_dir=tmp_path, progress=False, errors=errors))
    assert set(errors) == {1, 6}
    assert len(first) == len(again) == 5
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert len(list(tmp_path.glob("logmel-stats-frame-*.json"))) == 1


def test_random_init_identity_follows_seed_and_architecture():
    a, b = RandomInitEncoder(ATTO, seed=0), RandomInitEncoder(ATTO, seed=0)
    assert a.identity() == b.identity()
    assert RandomInitEncoder(ATTO, seed=1).identity() != a.identity()
    other = RandomInitEncoder(ATTO, FrontendConfig(n_mels=32), seed=0)
    assert other.identity() != a.identity()


# ----------------------------------------------------------------------------- registry


def test_registry_specs(tmp_path):
    run = make_run(tmp_path / "run")
    assert get_encoder("logmel-stats").clip_dim == 128
    r = get_encoder("random:atto:3")
    assert r.kind == "random-init" and r.seed == 3 and r.dim == 64
    same_arch = get_encoder(f"random:{run}")
    assert same_arch.kind == "random-init"
    assert same_arch.max_seconds == pytest.approx(1.0, abs=0.011)
    assert get_encoder(f"{run}@final").identity() == get_encoder(str(run)).identity()
    for bad, msg in [
        ("nonsense", "unknown encoder"),
        ("random:gigantic", "neither a preset"),
        (str(tmp_path), "not a run folder"),
    ]:
        with pytest.raises(AudioscaleError, match=msg) as e:
            get_encoder(bad)
        assert "\n" not in str(e.value)


def test_cache_paths_keep_dotted_names_apart(tmp_path):
    """Regression: Path.with_suffix cut "atto-h0.5-..." at its dot, so every checkpoint and
    task of such a run shared one cache file."""
    from types import SimpleNamespace

    from audioscale.embed.embcache import cache_paths as _paths

    enc = SimpleNamespace(name="atto-h0.5-s250-abc")
    a = _paths(tmp_path, enc, "clip", -1, "key1")
    b = _paths(tmp_path, enc, "clip", -1, "key2")
    assert a[0] != b[0] and a[1] != b[1]
    assert a[0].name == "atto-h0.5-s250-abc-clip-L-1-key1.f32"


@pytest.mark.parametrize("device", ["cuda", "gpu"])
def test_unusable_device_is_a_one_line_error(clips, monkeypatch, device):
    """--device cuda on a machine without CUDA (or a typo) is a user mistake, not a
    traceback from torch's lazy CUDA init."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AudioscaleError, match="device"):
        extract(LogMelStats(), clips[:1], device=device, progress=False)


def test_run_checkpoint_spec_by_step_or_file_name(tmp_path):
    """``RUN@3`` and ``RUN@step_000003`` (the name the "no checkpoint" message lists) pick
    the same checkpoint; anything else after ``@`` is a one-line error."""
    from audioscale.models.mae import build_mae
    from audioscale.train.checkpoint import checkpoint_name, save_checkpoint

    run = make_run(tmp_path / "run")
    mae = build_mae(ATTO, FrontendConfig())
    save_checkpoint(mae, run, checkpoint_name(3), {"step": 3, "fraction": 0.5})
    by_step = get_encoder(f"{run}@3")
    assert get_encoder(f"{run}@step_000003").identity() == by_step.identity()
    assert by_step.identity() != get_encoder(str(run)).identity()
    with pytest.raises(AudioscaleError, match="@step_NNNNNN") as e:
        get_encoder(f"{run}@latest")
    assert "\n" not in str(e.value)


def _median_offdiag_cosine(z):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    c = u @ u.T
    return float(np.median(c[~np.eye(len(z), dtype=bool)]))


def test_standardised_logmel_stats_remove_the_shared_db_offset(tmp_path):
    """Raw dB statistics share an offset that makes every pair of clips look alike under
    cosine; standardised with a reference set (disjoint from the scored clips) they
    don't, and the reference's own features come out with mean 0 and std 1."""
    rng = np.random.default_rng(0)

    def write(name, i):
        f, amp = rng.uniform(200, 6000), rng.uniform(0.02, 0.5)
        p = tmp_path / f"{name}{i}.wav"
        sf.write(p, tone(f, 0.5, amp=amp, seed=i), SR)
        return {"path": str(p)}

    ref = [write("ref", i) for i in range(24)]
    test = [write("test", i) for i in range(16)]
    raw = LogMelStats()
    std = LogMelStats.standardised_on(ref, name="reference")
    assert std.standardised and not raw.standardised and std.identity() != raw.identity()
    z_raw = extract(raw, test, progress=False).emb
    z_std = extract(std, test, progress=False).emb
    assert _median_offdiag_cosine(z_raw) > 0.8
    assert abs(_median_offdiag_cosine(z_std)) < 0.5
    z_ref = extract(std, ref, progress=False).emb
    np.testing.assert_allclose(z_ref.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z_ref.std(0)[z_raw.std(0) > 1e-3], 1.0, atol=1e-3)
    # frames are standardised per band too, and pool() still gives the clip features
    with torch.inference_mode():
        f = std.frames_long(torch.from_numpy(tone(1000, 0.5))[None], [-1])[0][0]
        f_raw = raw.frames_long(torch.from_numpy(tone(1000, 0.5))[None], [-1])[0][0]
    assert abs(float(f.mean())) < abs(float(f_raw.mean())) / 5
    mu, sd = std._ref["clip"]
    expect = (raw.pool(f_raw).double() - mu) / sd
    np.testing.assert_allclose(std.pool(f).numpy(), expect.numpy(), rtol=1e-3, atol=1e-3)
