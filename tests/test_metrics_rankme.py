"""RankMe: the pinned estimator, both routes, bad input. Known answers throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spectrum_helpers import with_spectrum

from audioscale.errors import EmbeddingError
from audioscale.metrics import GramAccumulator, rankme, spectrum_metrics
from audioscale.metrics.gram import gram_singular_values
from audioscale.metrics.rankme import (
    choose_route,
    gram_rankme_error_bound,
    rankme_from_singular_values,
    singular_values,
)


def formula(s, eps=1e-7):
    """The pinned definition (docs/ARCHITECTURE.md) written out independently."""
    s = np.asarray(s, dtype=np.float64)
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def rel(a, b):
    return abs(a - b) / abs(b)


# ----------------------------------------------------------------- analytic cases


def test_orthonormal_columns_give_k():
    z = with_spectrum(np.ones(16), 200, 16)
    assert rankme(z) == pytest.approx(formula(np.ones(16)), rel=1e-12)
    assert rankme(z) == pytest.approx(16, abs=1e-3)


def test_rank_one_gives_one_with_eps_terms():
    rng = np.random.default_rng(1)
    z = np.outer(rng.standard_normal(300), rng.standard_normal(40))
    # one unit mass plus 39 zero singular values, each contributing -eps log eps
    expected = formula(np.r_[1.0, np.zeros(39)])
    assert rankme(z) == pytest.approx(expected, rel=1e-9)
    assert 1.0 < rankme(z) < 1.001


def test_rank_deficient_equal_values():
    s = np.r_[np.full(7, 3.0), np.zeros(25)]
    z = with_spectrum(np.full(7, 3.0), 500, 32)
    assert rankme(z) == pytest.approx(formula(s), rel=1e-9)
    assert rankme(z) == pytest.approx(7, abs=1e-3)


def test_single_row_and_single_column():
    rng = np.random.default_rng(2)
    one = formula([1.0])  # exp(-(1+eps) log(1+eps)) ~= 1 - 1e-7
    assert rankme(rng.standard_normal((1, 50))) == pytest.approx(one, rel=1e-12)
    assert rankme(rng.standard_normal((50, 1))) == pytest.approx(one, rel=1e-12)
    assert rankme(rng.standard_normal((1, 50)), route="gram") == pytest.approx(one, rel=1e-12)


def test_fewer_rows_than_columns_uses_min_n_k_values():
    z = with_spectrum([3.0, 2.0, 1.0], 3, 100)
    s, _ = singular_values(z)
    assert s.shape == (3,)
    assert rankme(z) == pytest.approx(formula([3.0, 2.0, 1.0]), rel=1e-12)
    assert rankme(z, route="gram") == pytest.approx(formula([3.0, 2.0, 1.0]), rel=1e-9)


def test_huge_dynamic_range_of_singular_values():
    s = np.logspace(6, -6, 48)
    z = with_spectrum(s, 400, 48)
    assert rankme(z) == pytest.approx(formula(s), rel=1e-10)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("route", ["svd", "gram"])
def test_extreme_absolute_scale(scale, route):
    z = with_spectrum(np.linspace(1, 2, 20), 300, 20)
    assert rankme(z * scale, route=route) == pytest.approx(rankme(z), rel=1e-9)


def test_zero_matrix_is_rank_zero_and_constant_is_rank_one():
    assert rankme(np.zeros((10, 4))) == 0.0
    assert rankme(np.zeros((10, 4)), route="gram") == 0.0
    assert rankme(np.full((10, 4), 2.5)) == pytest.approx(formula([1, 0, 0, 0]), rel=1e-9)


def test_eps_is_added_after_normalisation():
    s = np.array([4.0, 2.0, 1.0, 0.0])
    p = s / s.sum()
    nz = p[p > 0]
    assert rankme_from_singular_values(s, eps=0.0) == pytest.approx(
        np.exp(-np.sum(nz * np.log(nz))), rel=1e-14
    )
    q = p + 0.01
    assert rankme_from_singular_values(s, eps=0.01) == pytest.approx(
        np.exp(-np.sum(q * np.log(q))), rel=1e-14
    )


def test_torch_and_low_precision_inputs_are_measured_in_float64():
    rng = np.random.default_rng(3)
    z16 = rng.standard_normal((256, 24)).astype(np.float16)
    exact = rankme(z16.astype(np.float64))
    assert rankme(z16) == exact
    assert rankme(torch.from_numpy(z16)) == pytest.approx(exact, rel=1e-12)
    assert rankme(torch.from_numpy(z16).float(), route="gram") == pytest.approx(exact, rel=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_both_routes():
    z = torch.randn(4000, 96, dtype=torch.float32, device="cuda")
    ref = rankme(z.cpu().numpy())
    assert rankme(z, route="svd") == pytest.approx(ref, rel=1e-9)
    assert rankme(z, route="gram") == pytest.approx(ref, rel=1e-6)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("route", ["svd", "gram"])
def test_nan_and_inf_rows_are_counted(route):
    z = np.random.default_rng(4).standard_normal((50, 8))
    z[3, 1] = np.nan
    z[10, :] = np.inf
    z[44, 7] = -np.inf
    with pytest.raises(EmbeddingError, match=r"\b3 of 50\b.*NaN or Inf"):
        rankme(z, route=route)


def test_streaming_bad_rows_counted_across_batches():
    acc = GramAccumulator(4)
    z = np.ones((30, 4))
    z[[5, 17, 18], 2] = np.nan
    for i in range(0, 30, 8):
        acc.update(z[i : i + 8])
    assert (acc.n_bad, acc.first_bad, acc.n) == (3, 5, 27)
    with pytest.raises(EmbeddingError, match=r"3 of 30 embedding rows.*first at row 5"):
        acc.spectrum()


def test_shape_errors():
    with pytest.raises(EmbeddingError, match="2-D"):
        rankme(np.ones(5))
    with pytest.raises(EmbeddingError, match="empty"):
        rankme(np.ones((0, 5)))
    with pytest.raises(EmbeddingError, match="route"):
        rankme(np.ones((3, 3)), route="qr")
    acc = GramAccumulator(4)
    with pytest.raises(EmbeddingError, match="K=4"):
        acc.update(np.ones((2, 5)))
    with pytest.raises(EmbeddingError, match="no embedding rows"):
        acc.spectrum()


# ----------------------------------------------------------------- Gram route


def test_auto_route_by_measured_cost():
    assert choose_route(25_600, 768) == "gram"  # the clip-level default: Gram is cheaper
    assert choose_route(1_000_000, 768) == "gram"
    assert choose_route(64, 768) == "svd"  # few rows: a K x K eigensolve costs more
    assert choose_route(10, 10**7) == "svd"  # N << K: the Gram would be huge
    assert choose_route(20, 8) == "svd"  # tiny matrices stay on the SVD
    assert choose_route(25_600, 768, "svd") == "svd"


def test_auto_route_never_slower_than_the_svd():
    """Where auto picks the Gram route it is faster than the SVD it replaces (several
    times at this size, so the margin survives a busy machine)."""
    import time

    rng = np.random.default_rng(0)
    z = (rng.standard_normal((8192, 384)) * np.arange(1, 385) ** -0.6 + 0.3).astype(np.float32)
    assert choose_route(*z.shape) == "gram"

    def best(route):
        out = []
        for _ in range(2):
            t0 = time.perf_counter()
            rankme(z, route=route)
            out.append(time.perf_counter() - t0)
        return min(out)

    assert best("auto") < best("svd")


def ill_conditioned(s, n=2048, k=256, seed=0):
    """float32 n x k matrix with singular values ``s`` (padded with zeros to k)."""
    s = np.r_[s, np.zeros(k - len(s))]
    return with_spectrum(s, n, k, seed).astype(np.float32)


ILL = {
    # spectra spanning 1e-8 (Gram condition 1e16), or collapsed with tiny noise:
    # the plain Gram route misses 1e-6 on these (measured 3e-6, 4e-4, 3e-6)
    "geometric-1e-8": lambda: ill_conditioned(np.logspace(0, -8, 256)),
    "rank-1-plus-1e-7-noise": lambda: ill_conditioned(np.r_[1.0, np.full(255, 1e-7)]),
    "rank-3-float32": lambda: ill_conditioned(np.ones(3)),
    # ill-conditioned but resolved (cond 1e4, Gram cond 1e8): Gram is exact enough
    "geometric-1e-4": lambda: ill_conditioned(np.logspace(0, -4, 256)),
    "power-law-0.6": lambda: ill_conditioned(np.arange(1, 257) ** -0.6),
}


@pytest.mark.parametrize("case", list(ILL))
def test_auto_route_agrees_with_svd_on_ill_conditioned_matrices(case):
    z = ILL[case]()
    svd = rankme(z, route="svd")
    auto = rankme(z)
    assert rel(auto, svd) < 1e-6, (auto, svd)
    s_gram, _ = singular_values(z, route="gram")
    gram = rankme_from_singular_values(s_gram)
    _, route = singular_values(z)
    if route == "gram":  # certified: then the Gram value is the one returned
        assert gram_rankme_error_bound(s_gram, z.shape[1]) <= 1e-7
        assert auto == gram
    else:  # not certified: the bound covers the actual Gram error
        assert gram_rankme_error_bound(s_gram, z.shape[1]) >= rel(gram, svd)


def test_gram_route_alone_misses_1e6_when_many_values_are_unresolved():
    """Why auto checks: the squared condition number hides singular values below
    sqrt(K eps) sigma_max (2.4e-7 at K = 256), and 255 of them at 1e-7 move RankMe a lot."""
    z = ILL["rank-1-plus-1e-7-noise"]()
    assert rel(rankme(z, route="gram"), rankme(z, route="svd")) > 1e-4
    assert singular_values(z)[1] == "svd"
    assert singular_values(ILL["power-law-0.6"]())[1] == "gram"
    assert spectrum_metrics(ILL["power-law-0.6"]()).route == "gram"


def low_rank(n, k, r, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, k)) + offset


CASES = {
    "random": lambda: np.random.default_rng(5).standard_normal((6000, 64)),
    "random-wide": lambda: np.random.default_rng(6).standard_normal((3000, 256)) * 3 + 1,
    "low-rank-1": lambda: low_rank(4000, 128, 1, 7),
    "low-rank-10-offset": lambda: low_rank(5000, 192, 10, 8, offset=5.0),
    "decaying": lambda: with_spectrum(np.arange(1, 97) ** -1.5, 2000, 96, seed=9),
    "n-below-k": lambda: np.random.default_rng(10).standard_normal((40, 100)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gram_agrees_with_svd_to_1e6(case):
    z = CASES[case]()
    svd = rankme(z, route="svd")
    gram = rankme(z, route="gram")
    assert rel(gram, svd) < 1e-6, (gram, svd)


def test_gram_noise_floor_needs_the_rank_tolerance():
    """Without the tolerance, null eigenvalues (~1e-16 lambda_max from eigvalsh) become
    singular values of ~1e-8 sigma_max and move RankMe by far more than 1e-6."""
    z = low_rank(3000, 384, 3, 8, offset=5.0)
    acc = GramAccumulator(384)
    acc.update(z)
    g = acc.gram(scaled=True)
    svd = rankme(z, route="svd")
    naive = rankme_from_singular_values(np.sqrt(np.clip(np.linalg.eigvalsh(g), 0, None)))
    assert rel(naive, svd) > 2e-6  # measured ~6e-6: negatives clipped is not enough
    s = gram_singular_values(g, acc.n)
    assert np.count_nonzero(s) == 4  # rank 3 plus the offset direction
    assert rel(rankme_from_singular_values(s), svd) < 1e-9


def feed(z, batch, order=None):
    acc = GramAccumulator(z.shape[1])
    zz = z if order is None else z[order]
    for i in range(0, len(zz), batch):
        acc.update(zz[i : i + batch])
    return acc


def test_batch_size_and_row_order_independence():
    z = low_rank(600, 24, 12, 11, offset=2.0) + 0.01 * np.random.default_rng(0).normal(
        size=(600, 24)
    )
    ref = rankme(z, route="svd")
    perm = np.random.default_rng(12).permutation(600)
    for batch, order in [(1, None), (7, None), (600, None), (64, perm), (1, perm)]:
        acc = feed(z, batch, order)
        assert acc.n == 600
        assert rel(rankme_from_singular_values(acc.spectrum()), ref) < 1e-10
        for centred in (False, True):
            ref_s = np.linalg.svd(z - z.mean(0) if centred else z, compute_uv=False)
            np.testing.assert_allclose(acc.spectrum(centred), ref_s, rtol=1e-9, atol=0)


def test_merge_equals_one_stream():
    z = np.random.default_rng(13).standard_normal((900, 16)) + 3.0
    a, b = feed(z[:250], 100), feed(z[250:], 64)
    b.update(np.full((1, 16), np.nan))
    merged = a.merge(b)
    assert (merged.n, merged.n_bad, merged.first_bad) == (900, 1, 900)
    merged.n_bad = 0
    np.testing.assert_allclose(merged.spectrum(), feed(z, 900).spectrum(), rtol=1e-10)
    np.testing.assert_allclose(merged.mean(), z.mean(0), rtol=1e-12)


def test_centred_gram_is_stable_under_a_large_mean():
    """Mean 1e4 over unit spread: Z^T Z - n mu mu^T would lose ~8 digits; the pairwise
    (Chan et al.) scatter keeps the centred spectrum to 1e-9."""
    rng = np.random.default_rng(14)
    z = rng.standard_normal((3000, 32)) * np.linspace(0.5, 2, 32) + 1e4
    acc = feed(z, 256)
    ref = np.linalg.svd(z - z.mean(0), compute_uv=False)
    np.testing.assert_allclose(acc.spectrum(centred=True), ref, rtol=1e-9)


def test_stream_with_growing_magnitude_rescales_exactly():
    rng = np.random.default_rng(15)
    z = rng.standard_normal((400, 12))
    z[200:] *= 2.0**60  # second half dominates: first-half rows must not overflow later
    z[:100] *= 2.0**-300
    acc = feed(z, 50)
    np.testing.assert_allclose(acc.spectrum(), np.linalg.svd(z, compute_uv=False), rtol=1e-9)


def test_zero_rows_then_data():
    z = np.r_[np.zeros((20, 6)), np.random.default_rng(16).standard_normal((30, 6)) * 1e-200]
    acc = feed(z, 10)
    assert acc.n == 50
    np.testing.assert_allclose(acc.spectrum(), np.linalg.svd(z, compute_uv=False), rtol=1e-9)


def test_update_never_modifies_the_callers_batch():
    z = np.random.default_rng(17).standard_normal((64, 5)) * 1000 + 7
    t = torch.from_numpy(z.copy())
    keep = z.copy()
    acc = GramAccumulator(5, centred=True)
    acc.update(z)
    acc.update(t)
    np.testing.assert_array_equal(z, keep)
    np.testing.assert_array_equal(t.numpy(), keep)


def test_torch_state_backend(monkeypatch):
    """The code path CUDA tensors take (state kept as torch float64 tensors), run on CPU
    by keeping CPU tensors as tensors; it must match the numpy state exactly."""
    import audioscale.metrics.gram as gram

    def keep_torch(z, copy=False):
        if isinstance(z, torch.Tensor):
            return z.detach().to(torch.float64, copy=copy)
        return np.array(z, dtype=np.float64, copy=copy) if copy else np.asarray(z, np.float64)

    z = np.random.default_rng(18).standard_normal((700, 12)) * 3 + 1
    z[200:] *= 2.0**20
    ref = feed(z, 64)
    monkeypatch.setattr(gram, "to_float64", keep_torch)
    acc = GramAccumulator(12)
    for i in range(0, 600, 60):
        acc.update(torch.from_numpy(z[i : i + 60]))
    acc.update(torch.full((2, 12), float("nan"), dtype=torch.float64))
    assert isinstance(acc._scatter, torch.Tensor) and acc.n_bad == 2
    acc.n_bad = 0
    acc.merge(feed(z[600:], 50))  # numpy state folded into a torch state
    acc.update(z[:0])
    for centred in (False, True):
        np.testing.assert_allclose(acc.spectrum(centred), ref.spectrum(centred), rtol=1e-10)
