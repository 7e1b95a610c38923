"""The one seeded subsampler and its two conventions (audioscale.sampling)."""

import numpy as np
import pytest

from audioscale.sampling import sample_indices, subsample


def test_permutation_is_nested_sorted_and_the_first_n_of_a_permutation():
    a = sample_indices(1000, 100, 3, "permutation")
    assert np.array_equal(a, np.sort(np.random.default_rng(3).permutation(1000)[:100]))
    assert set(sample_indices(1000, 40, 3, "permutation")) <= set(a)  # nested in n
    assert np.all(np.diff(a) > 0)


def test_choice_is_numpys_choice_without_replacement_sorted():
    a = sample_indices(1000, 100, 3, "choice")
    assert np.array_equal(a, np.sort(np.random.default_rng(3).choice(1000, 100, replace=False)))
    assert not np.array_equal(a, sample_indices(1000, 100, 3, "permutation"))


def test_subsample_keeps_order_and_returns_small_inputs_as_they_are():
    items = [{"i": i} for i in range(50)]
    assert subsample(items, 50, 0, "choice") is items
    picked = subsample(items, 10, 0, "choice")
    assert [r["i"] for r in picked] == sorted(r["i"] for r in picked) and len(picked) == 10
    z = np.arange(40).reshape(20, 2)
    assert subsample(z, 30, 0) is z
    assert np.array_equal(subsample(z, 5, 1), z[sample_indices(20, 5, 1)])
    with pytest.raises(ValueError, match="unknown subsample method"):
        sample_indices(10, 2, 0, "shuffle")
