"""Nested data-volume subsets: exact hours, nesting over many hours values, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from audioscale.data.subsets import heldout_rows, nested_subset, row_seconds, subset_hours
from audioscale.errors import DataError


def _pool(n: int = 40, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = [
        {"path": f"/p/f{i:03d}.wav", "duration": float(rng.uniform(1, 30)), "split": "train"}
        for i in range(n)
    ]
    rows += [{"path": f"/p/h{i}.wav", "duration": 5.0, "split": "heldout"} for i in range(5)]
    return rows


def test_exact_hours_and_truncation():
    rows = _pool()
    sub = nested_subset(rows, 0.05, seed=1)
    assert subset_hours(sub) == pytest.approx(0.05, abs=1e-9)
    assert all(r["split"] == "train" for r in sub)
    assert all("max_seconds" not in r for r in sub[:-1])
    assert sub[-1]["max_seconds"] <= sub[-1]["duration"]
    assert len({r["path"] for r in sub}) == len(sub)
    assert "max_seconds" not in rows[0]  # input rows untouched


def test_nested_property_over_many_hours():
    rows = _pool()
    total = sum(r["duration"] for r in rows if r["split"] == "train") / 3600
    hours = np.sort(np.random.default_rng(3).uniform(1e-4, total * 0.999, 60))
    subs = [nested_subset(rows, float(h), seed=7) for h in hours]
    for h, s in zip(hours, subs, strict=True):
        assert subset_hours(s) == pytest.approx(h, abs=1e-9)
    for small, big in zip(subs, subs[1:], strict=False):
        secs = {r["path"]: row_seconds(r) for r in big}
        for r in small:  # every file of the smaller subset, at most as long, is in the bigger
            assert r["path"] in secs
            assert row_seconds(r) <= secs[r["path"]] + 1e-9
        # the bigger subset starts with the smaller one's files in the same order
        assert [r["path"] for r in big[: len(small)]] == [r["path"] for r in small]


def test_seed_and_manifest_order():
    rows = _pool()
    a = nested_subset(rows, 0.04, seed=0)
    b = nested_subset(list(reversed(rows)), 0.04, seed=0)
    c = nested_subset(rows, 0.04, seed=1)
    assert [r["path"] for r in a] == [r["path"] for r in b]
    assert [r["path"] for r in a] != [r["path"] for r in c]


def test_more_hours_than_available_warns_and_uses_all():
    rows = _pool(n=5)
    with pytest.warns(UserWarning, match="using all of it"):
        sub = nested_subset(rows, 100.0, seed=0)
    assert len(sub) == 5
    assert subset_hours(sub) == pytest.approx(sum(r["duration"] for r in rows[:5]) / 3600)
    assert len(nested_subset(rows, None)) == 5


def test_errors_and_helpers():
    with pytest.raises(DataError, match="no train rows"):
        nested_subset([{"path": "x", "duration": 1.0, "split": "heldout"}], 1.0)
    with pytest.raises(DataError, match="no duration"):
        nested_subset([{"path": "x", "split": "train"}], 1.0)
    assert len(heldout_rows(_pool())) == 5
