"""alpha-ReQ, NESum, stable rank, participation ratio: definitions, analytic cases,
invariances (and where they must fail), monotonicity, route agreement; and ``measure``
of an encoder on a pool (a fake encoder with a known answer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from spectrum_helpers import with_spectrum

from audioscale.embed.base import Encoder
from audioscale.errors import EmbeddingError
from audioscale.metrics import (
    GramAccumulator,
    SpectralResult,
    measure,
    measure_embeddings,
    spectrum_metrics,
)
from audioscale.metrics.measure import subsample_indices, subsample_rows
from audioscale.metrics.spectral import alpha_req

METRICS = ("rankme", "nesum", "stable_rank", "participation_ratio")


def orthogonal(m, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((m, m)))
    return q * np.sign(np.diag(r))


def close(a: SpectralResult, b: SpectralResult, rtol: float, alpha_too: bool = True) -> None:
    for name in METRICS + (("alpha_req",) if alpha_too else ()):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rtol), name


def test_result_fields_and_json():
    r = spectrum_metrics(np.random.default_rng(0).standard_normal((300, 20)))
    d = r.to_dict()
    assert isinstance(r, SpectralResult)
    for key in (
        "rankme",
        "alpha_req",
        "alpha_req_range",
        "alpha_req_r2",
        "nesum",
        "stable_rank",
        "participation_ratio",
        "n",
        "k",
        "route",
        "centred",
        "eps",
    ):
        assert key in d
    assert "spectrum" not in d
    assert (d["n"], d["k"], d["route"], d["centred"], d["eps"]) == (300, 20, "gram", False, 1e-7)
    assert r.spectrum.shape == (20,)
    json.dumps(d)


def test_definitions_on_a_known_spectrum():
    s = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.25])
    r = spectrum_metrics(with_spectrum(s, 100, 10))
    lam = s**2
    assert r.nesum == pytest.approx(lam.sum() / lam.max(), rel=1e-12)
    assert r.stable_rank == pytest.approx(np.sum(s**2) / s.max() ** 2, rel=1e-12)
    assert r.participation_ratio == pytest.approx(lam.sum() ** 2 / np.sum(lam**2), rel=1e-12)
    p = np.r_[s, np.zeros(4)] / s.sum() + 1e-7
    assert r.rankme == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-10)
    np.testing.assert_allclose(r.spectrum[:6], s, rtol=1e-12)


def test_orthonormal_columns():
    r = spectrum_metrics(with_spectrum(np.ones(24), 300, 24))
    assert r.rankme == pytest.approx(24, abs=1e-3)
    for name in ("nesum", "stable_rank", "participation_ratio"):
        assert getattr(r, name) == pytest.approx(24, rel=1e-12)
    assert r.alpha_req == pytest.approx(0, abs=1e-9)
    assert r.alpha_req_range == (11, 24)
    assert r.alpha_req_r2 == 1.0


def test_rank_one():
    rng = np.random.default_rng(1)
    r = spectrum_metrics(np.outer(rng.standard_normal(200), rng.standard_normal(30)))
    assert r.rankme == pytest.approx(1, abs=1e-4)
    for name in ("nesum", "stable_rank", "participation_ratio"):
        assert getattr(r, name) == pytest.approx(1, rel=1e-12)
    assert (r.alpha_req, r.alpha_req_range, r.alpha_req_r2) == (None, None, None)


def test_zero_matrix_every_metric_zero():
    for route in ("svd", "gram"):
        r = spectrum_metrics(np.zeros((20, 5)), route=route)
        assert (r.rankme, r.nesum, r.stable_rank, r.participation_ratio) == (0, 0, 0, 0)
        assert r.alpha_req is None


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_recovers_an_exact_power_law(alpha):
    i = np.arange(1, 257)
    r = spectrum_metrics(with_spectrum(i ** (-alpha / 2), 600, 256))  # lambda = sigma^2
    assert r.alpha_req == pytest.approx(alpha, rel=1e-9)
    assert r.alpha_req_range == (11, 100)
    assert r.alpha_req_r2 == pytest.approx(1.0, abs=1e-9)


def test_alpha_ignores_ranks_outside_the_range():
    lam = np.arange(1, 201, dtype=float) ** -1.0
    lam[:10] *= 50  # a few dominant directions
    lam[100:] *= 1e-3  # a collapsed tail
    alpha, rng, r2 = alpha_req(lam)
    assert alpha == pytest.approx(1.0, rel=1e-9) and rng == (11, 100)


def test_alpha_fallbacks():
    alpha, rng, _ = alpha_req(np.arange(1, 9, dtype=float) ** -2.0)  # K = 8 < 11
    assert rng == (1, 8) and alpha == pytest.approx(2.0, rel=1e-9)
    alpha, rng, _ = alpha_req(np.r_[np.arange(1, 31, dtype=float) ** -1.0, np.zeros(70)])
    assert rng == (11, 30) and alpha == pytest.approx(1.0, rel=1e-9)
    assert alpha_req(np.r_[1.0, np.zeros(50)]) == (None, None, None)


# ----------------------------------------------------------------- invariances


def test_invariant_to_rotations_and_positive_scaling():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((120, 16)) @ np.diag(np.linspace(0.2, 3, 16)) + 0.7
    base = spectrum_metrics(z)
    close(spectrum_metrics(z @ orthogonal(16, 3)), base, 1e-9)
    close(spectrum_metrics(orthogonal(120, 4) @ z), base, 1e-9)
    close(spectrum_metrics(z * 37.5), base, 1e-9)
    close(spectrum_metrics(z * 1e200), base, 1e-9)
    close(spectrum_metrics(z * 1e-200, route="gram"), base, 1e-6)
    close(spectrum_metrics(z * 1e-3, route="gram"), base, 1e-6)


def test_not_invariant_to_an_offset():
    z = np.random.default_rng(5).standard_normal((200, 12))
    assert spectrum_metrics(z + 3.0).rankme < 0.7 * spectrum_metrics(z).rankme


def test_centring_changes_the_value_unless_the_mean_is_zero():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((300, 10)) * np.linspace(0.5, 2, 10)
    zero_mean = z - z.mean(0)
    close(spectrum_metrics(zero_mean, centred=True), spectrum_metrics(zero_mean), 1e-9)
    shifted = zero_mean + rng.standard_normal(10) * 2
    c, u = spectrum_metrics(shifted, centred=True), spectrum_metrics(shifted)
    assert c.centred and not u.centred
    assert c.rankme == pytest.approx(spectrum_metrics(zero_mean).rankme, rel=1e-9)
    assert abs(c.rankme - u.rankme) > 0.5
    # a constant matrix: rank 1 uncentred, nothing left once centred
    assert spectrum_metrics(np.full((9, 4), 3.0), centred=True).rankme == 0.0


def test_metrics_grow_as_singular_values_spread_evenly():
    values = []
    for t in np.linspace(0.05, 1.0, 8):  # s = (1, t, ..., t): t = 1 is perfectly even
        s = np.r_[1.0, np.full(15, t)]
        values.append(spectrum_metrics(with_spectrum(s, 100, 16)))
    for name in METRICS:
        seq = [getattr(v, name) for v in values]
        assert all(b > a for a, b in zip(seq, seq[1:], strict=False)), name
    decay = [
        spectrum_metrics(with_spectrum(np.arange(1.0, 65.0) ** -a, 200, 64)) for a in (2, 1, 0.5)
    ]
    assert decay[0].alpha_req > decay[1].alpha_req > decay[2].alpha_req
    assert decay[0].rankme < decay[1].rankme < decay[2].rankme


# ----------------------------------------------------------------- routes


@pytest.mark.parametrize("centred", [False, True])
def test_gram_route_matches_svd_for_every_metric(centred):
    s = np.r_[np.arange(1, 41) ** -0.8, np.zeros(24)]
    z = with_spectrum(s[:40], 3000, 64, seed=7) + 0.3
    svd = spectrum_metrics(z, centred=centred, route="svd")
    gram = spectrum_metrics(z, centred=centred, route="gram")
    assert (svd.route, gram.route) == ("svd", "gram")
    close(gram, svd, 1e-6)
    assert gram.alpha_req_range == svd.alpha_req_range


def test_accumulator_input_uses_its_centring():
    z = np.random.default_rng(8).standard_normal((500, 8)) + 1.0
    acc = GramAccumulator(8, centred=True)
    for i in range(0, 500, 64):
        acc.update(torch.from_numpy(z[i : i + 64]).float())
    r = spectrum_metrics(acc)
    assert (r.route, r.centred, r.n, r.k) == ("gram", True, 500, 8)
    ref = spectrum_metrics(torch.from_numpy(z).float(), centred=True)
    close(r, ref, 1e-9)
    assert spectrum_metrics(acc, centred=False).rankme == pytest.approx(
        spectrum_metrics(torch.from_numpy(z).float()).rankme, rel=1e-9
    )


# ----------------------------------------------------------------- measure


class ProjectionEncoder(Encoder):
    """A fake encoder with a known answer: 0.1 s frames, a fixed random projection
    (layer 0) and its square (layer 1)."""

    name = "projection"
    dim = 6
    n_layers = 2
    hop_seconds = 0.1
    min_samples = 1600

    def __init__(self):
        self.w = np.random.default_rng(0).standard_normal((1600, 6)).astype(np.float32)

    def identity(self) -> str:
        return "projection-v1"

    def n_frames(self, n_samples: int) -> int:
        return n_samples // 1600

    def frames(self, wave, layers, lengths=None):
        b, s = wave.shape
        x = wave[:, : s // 1600 * 1600].reshape(b, -1, 1600) @ torch.from_numpy(self.w)
        return [x if self.layer_index(i) == 0 else x**2 for i in layers]

    def expected(self, path, layer):
        x = sf.read(path, dtype="float32")[0]
        f = x[: len(x) // 1600 * 1600].reshape(-1, 1600).astype(np.float64) @ self.w
        return f if layer == 0 else f**2


@pytest.fixture(scope="module")
def pool_rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(2)
    rows = []
    for i in range(16):
        x = rng.standard_normal(16000 + 1600 * (i % 3)) * (0.1 + 0.05 * i)
        sf.write(d / f"n{i}.wav", x.astype(np.float32), 16000)
        rows.append({"path": str(d / f"n{i}.wav")})
    (d / "bad.wav").write_bytes(b"not audio at all")
    rows.insert(5, {"path": str(d / "bad.wav")})
    return rows


def test_subsample_is_deterministic_nested_and_ordered():
    a = subsample_indices(1000, 100, seed=3)
    assert np.array_equal(a, subsample_indices(1000, 100, seed=3))
    assert np.all(np.diff(a) > 0) and len(a) == 100
    assert set(subsample_indices(1000, 40, seed=3)) <= set(a)
    assert not np.array_equal(a, subsample_indices(1000, 100, seed=4))
    assert np.array_equal(subsample_indices(50, 100), np.arange(50))
    assert np.array_equal(subsample_indices(50, None), np.arange(50))


def test_measure_clip_level_matches_a_direct_computation(pool_rows):
    enc = ProjectionEncoder()
    r = measure(enc, pool_rows, samples=12, seed=3, pool_name="toy", progress=False)
    bad = pool_rows[5]["path"]
    chosen = [row for row in subsample_rows(pool_rows, 12, 3) if row["path"] != bad]
    z = np.stack([enc.expected(row["path"], 1).mean(0) for row in chosen])
    ref = spectrum_metrics(z)
    assert r["rankme"] == pytest.approx(ref.rankme, rel=1e-5)
    assert r["participation_ratio"] == pytest.approx(ref.participation_ratio, rel=1e-5)
    assert (r["n"], r["k"], r["level"], r["layer"], r["layer_index"]) == (
        len(chosen),
        6,
        "clip",
        -1,
        1,
    )
    assert (r["pool"], r["pool_rows"], r["samples"], r["seed"]) == ("toy", 17, 12, 3)
    assert r["clips"] == len(chosen) and r["clips_skipped"] == 12 - len(chosen)
    json.dumps(r)


def test_measure_frame_level_streams_every_frame(pool_rows):
    enc = ProjectionEncoder()
    r = measure(enc, pool_rows, level="frame", layer=0, centred=True)
    frames = np.concatenate([enc.expected(row["path"], 0) for row in pool_rows[:5] + pool_rows[6:]])
    ref = spectrum_metrics(frames, centred=True)
    assert (r["n"], r["k"], r["route"], r["centred"]) == (frames.shape[0], 6, "gram", True)
    assert r["rankme"] == pytest.approx(ref.rankme, rel=1e-5)
    assert r["clips_skipped"] == 1 and list(r["skipped"]) == [pool_rows[5]["path"]]
    assert r["pool"].startswith("pool-") and r["layer_index"] == 0


def test_measure_errors(pool_rows):
    enc = ProjectionEncoder()
    with pytest.raises(EmbeddingError, match="layer 2: out of range"):
        measure(enc, pool_rows, layer=2)
    with pytest.raises(EmbeddingError, match="level"):
        measure(enc, pool_rows, level="token")
    with pytest.raises(EmbeddingError, match="none of the 1 clips"):
        measure(enc, [pool_rows[5]])


def test_measure_embeddings_subsamples_and_names_options():
    z = np.random.default_rng(9).standard_normal((300, 10))
    r = measure_embeddings(z, samples=100, seed=1, level="frame", layer=3, pool_name="p")
    ref = spectrum_metrics(z[subsample_indices(300, 100, 1)])
    assert r["rankme"] == pytest.approx(ref.rankme, rel=1e-12)
    assert (r["n"], r["pool_rows"], r["level"], r["layer"], r["pool"]) == (
        100,
        300,
        "frame",
        3,
        "p",
    )


def test_measure_frame_level_streams_in_bounded_batches(pool_rows, monkeypatch):
    import importlib

    m = importlib.import_module("audioscale.metrics.measure")  # the module, not the function

    seen: list[int] = []
    update = GramAccumulator.update

    def spy(self, batch):
        seen.append(len(batch))
        update(self, batch)

    monkeypatch.setattr(m, "GRAM_BATCH_ROWS", 25)
    monkeypatch.setattr(GramAccumulator, "update", spy)
    r = measure(ProjectionEncoder(), pool_rows, level="frame")
    assert sum(seen) == r["n"] and len(seen) >= r["n"] // 37
    assert max(seen) < 25 + 12  # never more than one batch plus one clip's frames
