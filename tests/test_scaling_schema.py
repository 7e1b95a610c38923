"""The typed fits.json (scaling.schema) and the one log-log line (audioscale.numerics)."""

import json
import math

import numpy as np
import pytest

from audioscale.numerics import loglog_line
from audioscale.scaling import FitSettings, fit_results
from audioscale.scaling.schema import Estimate, Fits, Headline, Verification, typed
from audioscale.testing import synthetic_rows


@pytest.fixture(scope="module")
def fits():
    rows, ckpt = synthetic_rows(12, seed=3)
    return fit_results(rows, ckpt, FitSettings(n_resamples=100, n_resamples_joint=20))


def test_fits_json_round_trips_through_the_typed_form(fits):
    text = json.dumps(fits, sort_keys=True)
    loaded = json.loads(text)
    t = Fits.from_dict(loaded)
    assert t.to_dict() == loaded
    assert json.dumps(t.to_dict(), sort_keys=True) == text  # the serialised form, byte for byte
    assert isinstance(t.headline, Headline) and isinstance(t.verification, Verification)
    assert isinstance(t.score_vs_rankme.correlations["spearman"], Estimate)
    assert t.headline.n_runs == 12 == t.data.n_trained
    assert t.headline.verdict == t.verdict


def test_absent_sections_are_none_and_stay_absent():
    t = typed({"version": 1, "verdict": "x"})
    assert t.learning is None and t.verification is None and t.headline is None
    assert t.to_dict() == {"version": 1, "verdict": "x"}
    v = Verification.from_dict({"note": "nothing to verify", "later_key": [1]})
    assert v.run is None and v.predicted is None and v.extra == {"later_key": [1]}
    assert v.to_dict() == {"note": "nothing to verify", "later_key": [1]}
    assert Estimate.from_dict({"value": None, "ci": None}).to_dict() == {"value": None, "ci": None}


def _loop_line(xs: list[float], ys: list[float], add=sum) -> tuple[float, float]:
    """``train.tune``'s fit as it was written before ``numerics`` existed."""
    n = len(xs)
    mx, my = add(xs) / n, add(ys) / n
    sxx = add((x - mx) ** 2 for x in xs)
    sxy = add((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return my - slope * mx, slope


def _sum_312(values) -> float:
    """The builtin ``sum`` of floats from Python 3.12 on: Neumaier-compensated."""
    total = comp = 0.0
    for v in values:
        t = total + v
        comp += (total - t) + v if abs(total) >= abs(v) else (v - t) + total
        total = t
    return total + comp if comp else total


def test_tune_line_is_its_loop_on_every_python(monkeypatch):
    """Regression: ``sequential=True`` summed with ``np.cumsum`` (left to right), which is
    the builtin ``sum`` only up to Python 3.11; from 3.12 ``sum`` compensates, and
    ``train.tune``'s lr-vs-width fit was no longer the loop it replaced (requires-python
    is >= 3.11). The line follows whatever ``sum`` the interpreter has."""
    import audioscale.numerics as numerics

    monkeypatch.setattr(numerics, "sum", _sum_312, raising=False)
    for n in (3, 5, 8, 13, 40):
        for seed in range(20):
            rng = np.random.default_rng(seed)
            lx, ly = rng.normal(size=n), rng.normal(size=n)
            got = loglog_line(lx, ly, sequential=True)
            assert tuple(map(float, got)) == _loop_line(list(lx), list(ly), _sum_312)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 40])
def test_loglog_line_methods(n):
    rng = np.random.default_rng(n)
    lx, ly = rng.normal(size=n), rng.normal(size=n)
    icpt, slope = loglog_line(lx, ly, sequential=True)
    assert (float(icpt), float(slope)) == _loop_line(list(lx), list(ly))  # bit for bit
    b, a = np.polyfit(lx, ly, 1)
    assert loglog_line(lx, ly, method="lstsq") == (a, b)
    batch = rng.normal(size=(7, n)), rng.normal(size=(7, n))
    ib, sb = loglog_line(*batch)
    for r in range(7):
        i1, s1 = loglog_line(batch[0][r], batch[1][r])
        assert math.isclose(ib[r], i1, rel_tol=1e-12) and math.isclose(sb[r], s1, rel_tol=1e-12)
    assert np.isnan(loglog_line(np.ones((1, n)), ly[None, :])[1][0])  # x does not vary
