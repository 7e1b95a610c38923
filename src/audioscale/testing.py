"""Test fixtures shared by tests, benchmarks and report previews (no test framework
needed): a synthetic study with known laws."""

from __future__ import annotations

import numpy as np


def synthetic_rows(
    n: int = 24,
    seed: int = 0,
    b: float = 0.5,
    a: float = 0.12,
    noise: float = 0.02,
    joint: tuple[float, float, float, float, float] = (1.5, 400.0, 900.0, 0.34, 0.28),
    baselines: bool = True,
) -> tuple[list[dict], list[dict]]:
    """A synthetic study with known laws, for tests, benchmarks and report previews.

    N log-uniform in [1e5, 2e7], D (examples) in [1e4, 1e6]; held-out loss =
    E + A/N^α + B/D^β (``joint``) × lognormal(``noise``/4); RankMe = 5·(N/1e5)^0.15·
    (D/1e4)^0.1 × lognormal(``noise``); suite = a·RankMe^b × lognormal(``noise``).
    Returns (rows, checkpoint rows) in the store's formats.
    """
    rng = np.random.default_rng(seed)
    e, aa, bb, al, be = joint
    rows, ckpt = [], []
    for i in range(n):
        nn = float(np.exp(rng.uniform(np.log(1e5), np.log(2e7))))
        d = float(np.exp(rng.uniform(np.log(1e4), np.log(1e6))))
        data_ex = float(rng.choice([2e4, 1e5, 5e5]))
        fpe = 300.0 * nn
        loss = (e + aa / nn**al + bb / d**be) * float(np.exp(rng.normal(0, noise / 4)))
        rm = 5.0 * (nn / 1e5) ** 0.15 * (d / 1e4) ** 0.1 * float(np.exp(rng.normal(0, noise)))
        suite = a * rm**b * float(np.exp(rng.normal(0, noise)))
        rid = f"run{i:03d}"
        rows.append(_row(rng, rid, nn, d, data_ex, fpe, loss, rm, suite))
        ckpt += _checkpoints(rng, rid, d, loss, rm)
    if baselines:
        for kind, rm, sc in (
            ("random-init", 20.0, 0.2),
            ("baseline", 9.0, 0.25),
            ("external", 30.0, 0.75),
        ):
            rows.append({"run_id": kind, "name": kind, "kind": kind, "rankme": rm, "suite": sc})
    return rows, ckpt


def _row(
    rng: np.random.Generator,
    rid: str,
    nn: float,
    d: float,
    data_ex: float,
    fpe: float,
    loss: float,
    rm: float,
    suite: float,
) -> dict:
    """One trained run's result row; draws its metric noise from ``rng`` in a fixed order."""
    return {
        "run_id": rid,
        "name": rid,
        "kind": "trained",
        "family": "vit",
        "params": nn * 1.1,
        "params_nonembed": nn,
        "flops_per_example": fpe,
        "train_flops": fpe * d,
        "examples_seen": d,
        "hours_seen": d * 2 / 3600,
        "data_hours": data_ex * 2 / 3600,
        "epochs": d / data_ex,
        "steps": int(d / 64),
        "batch_size": 64,
        "heldout_loss": loss,
        "final_loss": loss * 0.98,
        "rankme": rm,
        "rankme_N": 1024,
        "rankme_K": 192,
        "rankme_pool": "heldout",
        "pool_overlap": False,
        "rankme_train": rm * (1 + 0.02 * np.log1p(d / data_ex)),
        "rankme_gap": rm * 0.02 * float(np.log1p(d / data_ex)),
        "alpha_req": 3.0 / rm * float(np.exp(rng.normal(0, 0.1))),
        "nesum": rm * 0.8 * float(np.exp(rng.normal(0, 0.05))),
        "stable_rank": rm**0.7 * float(np.exp(rng.normal(0, 0.1))),
        "participation_ratio": rm**0.8 * float(np.exp(rng.normal(0, 0.2))),
        "suite": suite,
        "suite_linear": suite * 1.05,
        "suite_knn": suite * 0.95,
        "suite_weighted": suite,
        "domain_speech": suite * float(np.exp(rng.normal(0, 0.03))),
        "domain_music": suite * float(np.exp(rng.normal(0, 0.1))),
        "domain_environment": suite * float(np.exp(rng.normal(0, 0.3))),
    }


def _checkpoints(
    rng: np.random.Generator, rid: str, d: float, loss: float, rm: float
) -> list[dict]:
    """The run's checkpoint rows (1/64 … 1/2 of training), noisier early."""
    out = []
    for j, frac in enumerate([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]):
        out.append(
            {
                "run_id": rid,
                "step": int(frac * d / 64),
                "fraction": frac,
                "rankme": rm
                * (0.6 + 0.4 * frac**0.3)
                * float(np.exp(rng.normal(0, 0.05 * (6 - j)))),
                "loss": loss * (1 + 1 / (1 + 10 * frac)),
            }
        )
    return out
