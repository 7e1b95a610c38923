"""fits.json's ``paired`` section: every comparison of the study as a paired difference
on the same test clips, with its interval (``audioscale.uncertainty``), and each run's
suite score with its standard error.

The comparisons (all on the suite score of the primary probe protocol, linear when
recorded, paired over the test clips both sides scored):

- ``vs_own_random_init``: each trained run minus the mean of its architecture's
  random-init encoders (``learning.random_init_means``: one per init seed; every seed is
  scored on the same resampled clips and the seeds are averaged, not resampled). Counts
  of "win" / "tie" / "loss"; a win needs the interval above 0. ``at_largest_budgets``
  repeats the count for the runs at the two largest step budgets (examples seen).
- ``best_vs_best_random_init`` and ``best_vs_logmel``: the best trained run (by suite
  score, as ``learning.versus_baselines`` names it) minus the best architecture's
  random-init mean, and minus the log-mel baseline.
- ``rankme_selector`` (Garrido et al., "RankMe", ICML 2023, Fig. 4: the run RankMe picks
  against the run the labels pick): among trained runs of equal cost, the run of the
  highest RankMe minus the label oracle, per budget and overall (the mean over budgets of
  the per-budget differences, one contrast). Equal cost = the same examples seen (the
  study's step budget × batch); when no two runs share it (a FLOPs-budget study), the
  same training FLOPs (3 significant digits). The oracle is the run of the highest
  validation suite (mean of the linear probe's validation scores, recorded with the
  outcomes), so no test score picks it; a budget where some run has no validation score
  (a kNN-only study, runs recorded without outcomes) gets no oracle and no difference
  (``note``), and stays out of the overall contrast. ``within_one_se``: the difference
  is at least −1 SE of the oracle's suite.

A run recorded without per-clip outcomes (a study from before them) keeps its plain
difference and gets ``note`` = "no interval: per-clip outcomes not recorded".
"""

from __future__ import annotations

import math

from audioscale import uncertainty as U
from audioscale.errors import DataError
from audioscale.scaling.fits.common import FitSettings, col, run_ids
from audioscale.scaling.learning import _arch, random_init_means
from audioscale.utils import finite_or_none

NO_OUTCOMES = "no interval: per-clip outcomes not recorded"
NO_ORACLE = "no label oracle: validation scores not recorded (test scores never pick)"


def load_outcomes(raw: dict[str, dict[str, dict[str, dict]]]) -> tuple[dict, str | None]:
    """run_id → task → ClipOutcomes of the primary protocol (linear when any run has it),
    from ``Store.outcomes()``; and that protocol (None when nothing was recorded). A
    malformed entry is a DataError naming its run, task and protocol."""
    protos = {p for tasks in raw.values() for by in tasks.values() for p in by}
    if not protos:
        return {}, None
    proto = "linear" if "linear" in protos else sorted(protos)[0]
    out: dict = {}
    for rid, tasks in raw.items():
        out[rid] = {}
        for t, by in tasks.items():
            if proto not in by:
                continue
            try:
                out[rid][t] = U.ClipOutcomes.from_dict(by[proto])
            except (KeyError, IndexError, TypeError, ValueError) as e:
                why = f"no {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
                raise DataError(f"study.db outcomes: run {rid}, task {t}, {proto}: {why}") from None
    return out, proto


def _compare(rows_a: list[dict], rows_b: list[dict], outcomes: dict, s: FitSettings) -> dict:
    """suite(mean of rows_a) − suite(mean of rows_b), paired when every run has outcomes."""
    ids_a, ids_b = run_ids(rows_a), run_ids(rows_b)
    plain = float(col(rows_a, "suite").mean() - col(rows_b, "suite").mean())
    base = {"a": ids_a, "b": ids_b}
    if not all(i in outcomes for i in ids_a + ids_b):
        return base | {
            "value": finite_or_none(plain),
            "se": None,
            "ci": None,
            "outcome": None,
            "note": NO_OUTCOMES,
        }
    w = [1.0 / len(ids_a)] * len(ids_a) + [-1.0 / len(ids_b)] * len(ids_b)
    enc = [outcomes[i] for i in ids_a + ids_b]
    return base | U.contrast(enc, w, n_resamples=s.n_resamples, seed=s.seed, level=s.level)


def _tally(pairs: list[dict]) -> dict:
    words = [p.get("outcome") for p in pairs]
    return {
        "n_compared": len(pairs),
        "n_win": words.count("win"),
        "n_tie": words.count("tie"),
        "n_loss": words.count("loss"),
        "n_no_interval": words.count(None),
    }


def vs_random_init(trained: list[dict], others: list[dict], outcomes: dict, s: FitSettings) -> dict:
    """Each trained run against its own architecture's random-init mean."""
    groups: dict[tuple, list[dict]] = {}
    for r in others:
        if r.get("kind") == "random-init" and finite_or_none(r.get("suite")) is not None:
            groups.setdefault(_arch(r), []).append(r)
    pairs = []
    for r in trained:
        rand = groups.get(_arch(r))
        if rand and finite_or_none(r.get("suite")) is not None:
            d = _compare([r], rand, outcomes, s)
            a, b = d.pop("a"), d.pop("b")
            pairs.append(
                {
                    "run_id": a[0],
                    "random_init": b,
                    "examples_seen": finite_or_none(r.get("examples_seen")),
                    **d,
                }
            )
    out = {"pairs": pairs, **_tally(pairs)}
    budgets = sorted({p["examples_seen"] for p in pairs if p["examples_seen"] is not None})
    if budgets:
        top = budgets[-2:]
        sub = [p for p in pairs if p["examples_seen"] in top]
        out["at_largest_budgets"] = {"examples_seen": top, **_tally(sub)}
    return out


def best_vs_baselines(
    trained: list[dict], others: list[dict], outcomes: dict, s: FitSettings
) -> dict:
    """The best trained run minus the best random-init architecture's mean and log-mel."""
    scored = [r for r in trained if finite_or_none(r.get("suite")) is not None]
    if not scored:
        return {}
    best = max(scored, key=lambda r: float(r["suite"]))
    out = {}
    means = random_init_means(others)
    if means:
        top = max(means.values(), key=lambda m: m["suite"])
        rand = [r for r in others if r.get("run_id") in set(top["run_ids"])]
        out["best_vs_best_random_init"] = _compare([best], rand, outcomes, s)
    logmel = [
        r
        for r in others
        if r.get("kind") == "baseline" and finite_or_none(r.get("suite")) is not None
    ]
    if logmel:
        lm = max(logmel, key=lambda r: float(r["suite"]))
        out["best_vs_logmel"] = _compare([best], [lm], outcomes, s)
    return out


def valid_suite(run_id: str, outcomes: dict) -> float | None:
    """Mean over tasks of the probe's validation score (recorded with the outcomes)."""
    v = [o.valid_score for o in outcomes.get(run_id, {}).values()]
    ok = [x for x in v if x is not None and math.isfinite(x)]
    return sum(ok) / len(ok) if ok and len(ok) == len(v) else None


def cost_groups(trained: list[dict]) -> tuple[str, dict[float, list[dict]]]:
    """Runs of equal cost (module docstring): (the column, value → runs), groups of ≥ 2."""
    for key, digits in (("examples_seen", None), ("train_flops", 3)):
        groups: dict[float, list[dict]] = {}
        for r in trained:
            v = finite_or_none(r.get(key))
            if v is not None and finite_or_none(r.get("rankme")) is not None:
                v = float(f"{v:.{digits}g}") if digits else v
                groups.setdefault(v, []).append(r)
        groups = {k: g for k, g in sorted(groups.items()) if len(g) >= 2}
        if groups:
            return key, groups
    return "examples_seen", {}


def rankme_selector(trained: list[dict], outcomes: dict, s: FitSettings) -> dict:
    """RankMe's pick against the label oracle among runs of equal cost, per budget and
    overall (module docstring)."""
    key, groups = cost_groups(trained)
    scored = {
        k: [r for r in g if finite_or_none(r.get("suite")) is not None] for k, g in groups.items()
    }
    per, picks, oracles = [], [], []
    for budget, rs in scored.items():
        if len(rs) < 2:
            continue
        b, pick, oracle = _budget_pick(rs, outcomes, s)
        per.append(b | {key: budget, "n_runs": len(rs)})
        if oracle is not None:
            picks.append(pick)
            oracles.append(oracle)
    out: dict = {"cost": key, "per_budget": per}
    if picks:
        overall = _compare(picks, oracles, outcomes, s)
        overall.pop("a"), overall.pop("b")
        out["overall"] = overall | {
            "n_budgets": len(picks),
            "n_within_one_se": sum(bool(p["within_one_se"]) for p in per),
        }
    elif per:
        out["note"] = NO_ORACLE
    else:
        out["note"] = "no two trained runs of equal cost with RankMe and a suite score"
    return out


def _budget_pick(rs: list[dict], outcomes: dict, s: FitSettings) -> tuple:
    """One budget: (RankMe's pick minus the validation oracle's, the pick's row, the
    oracle's row); no oracle without validation scores: test scores never pick."""
    ids = run_ids(rs)
    pick = max(range(len(rs)), key=lambda i: float(rs[i]["rankme"]))
    valid = [valid_suite(i, outcomes) for i in ids]
    if any(v is None for v in valid):
        none = {"rankme_pick": ids[pick], "oracle": None, "oracle_by": None, "value": None,
                "se": None, "ci": None, "outcome": None, "oracle_se": None,
                "within_one_se": None, "note": NO_ORACLE}  # fmt: skip
        return none, rs[pick], None
    oracle = max(range(len(rs)), key=lambda i: valid[i])  # type: ignore[arg-type,return-value]
    d = _compare([rs[pick]], [rs[oracle]], outcomes, s)
    d.pop("a"), d.pop("b")
    se = _oracle_se(ids[oracle], outcomes, s)
    b = d | {
        "rankme_pick": ids[pick],
        "oracle": ids[oracle],
        "oracle_by": "validation suite",
        "oracle_se": se,
        "within_one_se": None if se is None or d["value"] is None else d["value"] >= -se,
    }
    return b, rs[pick], rs[oracle]


def _oracle_se(run_id: str, outcomes: dict, s: FitSettings) -> float | None:
    if run_id not in outcomes:
        return None
    return U.suite_se(outcomes[run_id], n_resamples=s.n_resamples, seed=s.seed)["se"]


def paired_section(
    trained: list[dict], others: list[dict], outcomes: dict, protocol: str | None, s: FitSettings
) -> dict:
    """fits.json's ``paired``: per-run suite SE and every paired comparison."""
    rows = trained + others
    se = {}
    for rid in run_ids(rows):
        if rid in outcomes:
            u = U.suite_se(outcomes[rid], n_resamples=s.n_resamples, seed=s.seed, level=s.level)
            se[rid] = {
                "suite": u["value"],
                "se": u["se"],
                "ci": u["ci"],
                "tasks": {t: v["se"] for t, v in u["tasks"].items()},
            }
    out = {
        "method": U.METHOD,
        "n_resamples": s.n_resamples,
        "seed": s.seed,
        "level": s.level,
        "protocol": protocol,
        "runs_with_outcomes": len(se),
        "n_runs": len(rows),
        "suite_se": se,
        "vs_own_random_init": vs_random_init(trained, others, outcomes, s),
        **best_vs_baselines(trained, others, outcomes, s),
        "rankme_selector": rankme_selector(trained, outcomes, s),
    }
    if not se:
        out["note"] = NO_OUTCOMES
    return out
