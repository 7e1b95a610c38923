"""Seeded splits: items or groups → train/valid/test (≈ 70/15/15) or K folds, and sampling."""

from __future__ import annotations

from collections import Counter

import numpy as np

from audioscale.data.demo.plan import EVAL_FRACTION


def split_counts(n: int) -> dict[str, int]:
    """``n`` items → train/valid/test counts, valid = test = max(1, round(0.15 n))."""
    if n < 3:
        return {"train": n, "valid": 0, "test": 0}
    k = max(1, int(n * EVAL_FRACTION + 0.5))
    return {"train": n - 2 * k, "valid": k, "test": k}


def assign_equal(groups: list[str], rng: np.random.Generator) -> dict[str, str]:
    """Shuffle groups (sorted first, so the input order never matters) and cut 70/15/15."""
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    counts = split_counts(len(order))
    out, i = {}, 0
    for split in ("test", "valid", "train"):
        for g in order[i : i + counts[split]]:
            out[g] = split
        i += counts[split]
    return out


def assign_sized(sizes: dict[str, int], rng: np.random.Generator) -> dict[str, str]:
    """Groups of unequal size → splits with ≈15 % of the items each in valid and test.

    Groups are visited in a seeded order; test then valid take the first group that fits
    the remaining need (or, if none fits, the smallest), until they hold their share.
    """
    names = sorted(sizes)
    order = [names[i] for i in rng.permutation(len(names))]
    if len(order) < 3:
        return {g: "train" for g in order}
    want = split_counts(sum(sizes.values()))
    out: dict[str, str] = {}
    for split in ("test", "valid"):
        have = 0
        while have < want[split] and len(order) > 1:
            need = want[split] - have
            fit = [g for g in order if sizes[g] <= need]
            g = fit[0] if fit else min(order, key=lambda x: sizes[x])
            out[g] = split
            have += sizes[g]
            order.remove(g)
    out.update({g: "train" for g in order})
    return out


def sample(items: list, k: int, rng: np.random.Generator) -> list:
    """``k`` items without replacement, kept in input order (all when fewer)."""
    if k >= len(items):
        return list(items)
    idx = np.sort(rng.choice(len(items), size=k, replace=False))
    return [items[i] for i in idx]


def fold_names(k: int) -> list[str]:
    return [f"fold{i + 1}" for i in range(k)]


def assign_folds(groups: dict[str, Counter], k: int, rng: np.random.Generator) -> dict[str, str]:
    """Groups (each with its clips' label counts) → ``fold1..foldK``, stratified by label.

    Groups are visited largest first (ties in a seeded order; sorted first, so the input
    order never matters); each goes to the fold holding the fewest clips of its labels so
    far, then the fewest clips, then the lowest index. A group never spans two folds.
    """
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    order.sort(key=lambda g: -sum(groups[g].values()))  # stable: seeded order among ties
    per = [Counter() for _ in range(k)]
    out = {}
    for g in order:
        c = groups[g]
        best = min(range(k), key=lambda i: (sum(per[i][lb] for lb in c), per[i].total(), i))
        per[best].update(c)
        out[g] = f"fold{best + 1}"
    return out
