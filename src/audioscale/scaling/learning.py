"""Did pretraining help, and did compute buy quality? The study's learning checks.

A scaling law over encoders that are worse than no training says nothing a researcher
can act on, so every study answers these questions from its own rows before any law is
read (all numbers are suite scores, the mean of the task scores):
- **Training against random init.** Each trained run is compared with the random-init
  encoders of its own architecture (``models.arch``: the same network and input; the
  baselines the sweep adds per architecture, one per init seed), through the mean of
  their scores: one draw of random weights is itself a sample, and the spread over seeds
  is reported beside the mean. Reported: the fraction of trained runs that beat their
  architecture's mean, and the best trained score minus the best architecture's mean.
- **Training against the log-mel baseline** (kind ``baseline``; its features are
  standardised, see ``embed.baselines``): the best trained score minus its score.
- **Pretrained references** (kind ``external``: encoders trained elsewhere, by other
  methods, on other data): listed with the best trained score minus theirs, for scale
  only; they never enter a fit and no verdict asks a trained run to beat them.
- **Compute at each size.** Among runs that keep every other axis at the study's base
  (``axes.base_values``: data volume, clip length, mask ratio, architecture), the runs of
  one size (width, depth) are ordered by examples seen; compute "bought quality" at that
  size when the score rises from the smallest to the largest budget (and the fraction of
  consecutive budget pairs that rise is reported).
- **The largest budget.** Among those base runs, the runs at the largest step budget
  (examples seen) that at least two sizes share are compared: is the winner the largest
  model?
``MARGIN`` (0.03 suite points) is the margin the verdict asks of "clearly beats".
"""

from __future__ import annotations

from audioscale.scaling.axes import base_values, comparable, varies
from audioscale.scaling.schema import (
    Estimate,
    Learning,
    LearningBaselines,
    Prediction,
    RandomInitMean,
    Verification,
)
from audioscale.utils import finite_or_none

MARGIN = 0.03
ARCH_KEYS = ("family", "patch", "width", "depth", "heads")
OTHER_AXES = ("data volume", "clip length", "mask ratio", "architecture")


_num = finite_or_none  # a suite score, steps or FLOPs, or None when missing


def _sort_num(v: object) -> float:
    return v if isinstance(v, float) else -1.0


def _arch(r: dict) -> tuple:
    """A run's architecture: the results column ``arch`` (``models.arch.arch_id``, the
    complete key, compared as text), with the ``ARCH_KEYS`` columns, which alone pair rows
    written without it (synthetic rows)."""
    return (r.get("arch"), *(comparable(r.get(k)) for k in ARCH_KEYS))


def _size(r: dict) -> tuple:
    return (comparable(r.get("width")), comparable(r.get("depth")))


def _label(size: tuple) -> str:
    """``64x2`` for width 64, depth 2 (``?`` where a value is missing)."""
    return "x".join("?" if v is None else f"{v:g}" for v in size)


def random_init_means(others: list[dict]) -> dict[tuple, dict]:
    """Per architecture: the mean suite of its scored random-init rows (one per init seed),
    their count, range and run ids."""
    groups: dict[tuple, list[dict]] = {}
    for r in others:
        if r.get("kind") == "random-init" and _num(r.get("suite")) is not None:
            groups.setdefault(_arch(r), []).append(r)
    out = {}
    for arch, rows in groups.items():
        scores = [float(r["suite"]) for r in rows]
        out[arch] = {"run_id": rows[0].get("run_id"), "run_ids": [r.get("run_id") for r in rows],
                     "suite": sum(scores) / len(scores), "n_seeds": len(scores),
                     "suite_min": min(scores), "suite_max": max(scores)}  # fmt: skip
    return out


def versus_baselines(trained: list[dict], others: list[dict]) -> dict:
    """Margins of the trained runs over random init (per architecture) and log-mel."""
    scored = [r for r in trained if _num(r.get("suite")) is not None]
    random = random_init_means(others)
    logmel = [r for r in others if r.get("kind") == "baseline" and _num(r.get("suite")) is not None]
    out: dict = {"n_trained": len(scored), "margin_asked": MARGIN}
    external = [r for r in others if r.get("kind") == "external"]
    if external:
        out["external"] = [{"run_id": r.get("run_id"), "name": r.get("name"),
                            "suite": _num(r.get("suite"))} for r in external]  # fmt: skip
    if not scored:
        return out
    best = max(scored, key=lambda r: r["suite"])
    out["best_trained"] = {"run_id": best.get("run_id"), "suite": float(best["suite"])}
    pairs = [(r, random.get(_arch(r))) for r in scored]
    pairs = [(r, b) for r, b in pairs if b is not None]
    if pairs:
        wins = [float(r["suite"]) - float(b["suite"]) for r, b in pairs]
        out["vs_own_random_init"] = {
            "n_compared": len(pairs),
            "n_beat": sum(w > 0 for w in wins),
            "fraction_beat": sum(w > 0 for w in wins) / len(pairs),
            "mean_margin": sum(wins) / len(wins),
        }
        out["best_random_init"] = dict(max(random.values(), key=lambda r: r["suite"]))
        out["margin_over_random_init"] = float(best["suite"]) - out["best_random_init"]["suite"]
    if logmel:
        lm = max(logmel, key=lambda r: r["suite"])
        out["logmel"] = {"run_id": lm.get("run_id"), "suite": float(lm["suite"])}
        out["margin_over_logmel"] = float(best["suite"]) - float(lm["suite"])
    for e in out.get("external", []):
        e["best_trained_minus_this"] = _margin(best["suite"], e["suite"])
    return out


def _margin(best: float, other: float | None) -> float | None:
    return None if other is None else float(best) - float(other)


def _base_runs(trained: list[dict]) -> list[dict]:
    off_base = varies(trained, base_values(trained))
    keep = [r for i, r in enumerate(trained) if not any(off_base[a][i] for a in OTHER_AXES)]
    return [r for r in keep if _num(r.get("suite")) is not None]


def compute_buys_quality(trained: list[dict]) -> dict:
    """Per size: does the score rise with the step budget? And who wins the largest one?"""
    runs = _base_runs(trained)
    sizes: dict[tuple, list[dict]] = {}
    for r in runs:
        if _num(r.get("examples_seen")) is not None:
            sizes.setdefault(_size(r), []).append(r)
    per_size = {}
    for size, rs in sorted(sizes.items(), key=lambda kv: tuple(_sort_num(x) for x in kv[0])):
        budgets: dict[float, list[float]] = {}
        for r in rs:
            budgets.setdefault(float(r["examples_seen"]), []).append(float(r["suite"]))
        if len(budgets) < 2:
            continue
        xs = sorted(budgets)
        ys = [sum(budgets[x]) / len(budgets[x]) for x in xs]
        rises = [b > a for a, b in zip(ys, ys[1:], strict=False)]
        per_size[_label(size)] = {
            "examples_seen": xs,
            "suite": ys,
            "rises_overall": ys[-1] > ys[0],
            "fraction_of_steps_rising": sum(rises) / len(rises),
        }
    out: dict = {"per_size": per_size}
    if per_size:
        out["all_sizes_rise"] = all(v["rises_overall"] for v in per_size.values())
    sizes_at: dict[float, set] = {}
    for r in runs:
        if _num(r.get("examples_seen")) is not None:
            sizes_at.setdefault(float(r["examples_seen"]), set()).add(_size(r))
    shared = [x for x, s in sizes_at.items() if len(s) > 1]
    if shared:
        top = max(shared)
        at_top = [r for r in runs if _num(r.get("examples_seen")) == top]
        win = max(at_top, key=lambda r: r["suite"])
        largest = max(at_top, key=lambda r: _num(r.get("params_nonembed")) or 0)
        out["largest_budget"] = {
            "examples_seen": top,
            "n_runs": len(at_top),
            "winner": win.get("run_id"),
            "winner_is_largest_model": _size(win) == _size(largest),
            "sizes": sorted({_label(_size(r)) for r in at_top}),
        }
    return out


def _baseline_sentences(vb: LearningBaselines, paired: dict | None = None) -> list[str]:
    """Trained runs against random init and the log-mel baseline, in words: from the
    paired intervals over test clips when recorded (``scaling.paired``), else from the
    point margins against ``MARGIN``."""
    p = paired or {}
    out = []
    if vb.margin_over_random_init is not None:
        out.append(_random_init_sentence(vb, p))
    if vb.margin_over_logmel is not None:
        m = vb.margin_over_logmel
        iv = (p.get("best_vs_logmel") or {}).get("ci")
        how = (
            _paired_verb(p["best_vs_logmel"]["outcome"]) if iv
            else "clearly beat" if m >= MARGIN
            else f"beat, by less than {MARGIN:g}," if m > 0
            else "did not beat"
        )  # fmt: skip
        out.append(
            f"The best trained run {how} the standardised log-mel baseline "
            f"({vb.logmel.suite:.3f}): {m:+.3f}{_ci_text(iv, p.get('level', 0.95))}."  # type: ignore[union-attr]
        )
    return out


def _paired_verb(outcome: str) -> str:
    return {"win": "clearly beat", "tie": "tied with", "loss": "fell below"}[outcome]


def plural(k: int, word: str) -> str:
    """``1 tie``, ``2 ties``, ``0 losses``."""
    return f"{k} {word}" if k == 1 else f"{k} {word}{'es' if word.endswith('s') else 's'}"


def _ci_text(ci: list[float] | None, level: float = 0.95) -> str:
    pct = f"{100 * level:g} %"
    return f" [{ci[0]:+.3f}, {ci[1]:+.3f}] (paired {pct} interval over test clips)" if ci else ""


def _random_init_sentence(vb: LearningBaselines, p: dict) -> str:
    m = vb.margin_over_random_init
    assert m is not None
    best = p.get("best_vs_best_random_init") or {}
    iv = best.get("ci")
    if iv:
        verb = {"win": "beat", "tie": "did not clearly beat", "loss": "did not beat"}[
            best["outcome"]]  # fmt: skip
    else:
        verb = "beat" if m >= MARGIN else "did not clearly beat" if m > 0 else "did not beat"
    br = vb.best_random_init or RandomInitMean()
    n = br.seeds
    what = (
        f"the best random-init architecture (mean of {n} init seeds "
        f"{br.suite:.3f}, range {br.suite_min:.3f}-{br.suite_max:.3f})"
        if n > 1 else f"the best random-init encoder ({br.suite:.3f})"
    )  # fmt: skip
    mine = "the mean of their own architecture's random inits" if n > 1 else (
        "the random-init encoder of their own architecture")  # fmt: skip
    vs = p.get("vs_own_random_init") or {}
    if vs.get("n_compared") and vs["n_no_interval"] < vs["n_compared"]:
        ties, losses = plural(vs["n_tie"], "tie"), plural(vs["n_loss"], "loss")
        count = (
            f"{vs['n_win']} of {vs['n_compared']} trained runs clearly beat {mine} "
            f"(paired interval above 0; {ties}, {losses})"
        )
    else:
        own = vb.vs_own_random_init or {}
        count = f"{own.get('n_beat')} of {own.get('n_compared')} trained runs beat {mine}"
    ci = _ci_text(iv, p.get("level", 0.95))
    return (
        f"Training {verb} random init: the best trained run scored "
        f"{vb.best_trained.suite:.3f}, {m:+.3f}{ci} against {what}; "  # type: ignore[union-attr]
        f"{count}."
    )


def sentences(
    learning: Learning | dict,
    verification: Verification | dict | None = None,
    paired: dict | None = None,
) -> list[str]:
    """The verdict's plain words on learning, compute and the verification run;
    ``paired``: fits.json's ``paired`` section (intervals over test clips)."""
    if isinstance(learning, dict):
        learning = Learning.from_dict(learning)  # type: ignore[assignment]
    if isinstance(verification, dict):
        verification = Verification.from_dict(verification)
    vb = learning.baselines or LearningBaselines()  # type: ignore[union-attr]
    cb = learning.compute or {}  # type: ignore[union-attr]
    out = _baseline_sentences(vb, paired)
    per = cb.get("per_size", {})
    if per:
        rising = [k for k, v in per.items() if v["rises_overall"]]
        if len(rising) == len(per):
            out.append(f"More steps bought a higher score at every size ({', '.join(per)}).")
        else:
            flat = [k for k in per if k not in rising]
            out.append(
                f"More steps bought a higher score at {len(rising)} of {len(per)} sizes; "
                f"not at {', '.join(flat)}."
            )
    lb = cb.get("largest_budget")
    if lb and len(lb["sizes"]) > 1:
        who = "the largest model" if lb["winner_is_largest_model"] else "not the largest model"
        out.append(
            f"At the largest step budget ({lb['examples_seen']:.3g} examples seen) the "
            f"best run was {who} ({lb['winner']})."
        )
    if verification:
        out.append(verification_sentence(verification))
    return out


def _rankme_clause(v: Verification) -> str:
    """' Its RankMe: predicted … [lo, hi], measured … (inside / outside).' or ''."""
    pred = (v.predicted.rankme if v.predicted else None) or Estimate()
    meas = v.measured.rankme if v.measured else None
    if pred.value is None or meas is None:
        return ""
    iv = pred.ci
    where = ""
    if iv:
        where = " (inside)" if iv[0] <= meas <= iv[1] else " (outside)"
    iv_s = f" [{iv[0]:.1f}, {iv[1]:.1f}]" if iv else ""
    return (
        f" Its RankMe: predicted {pred.value:.1f}{iv_s} by the trained runs' law in N "
        f"and D, measured {meas:.1f}{where}."
    )


def verification_sentence(v: Verification) -> str:
    """Plain words for a checked verification run."""
    if v.run is None:
        return f"No verification run: {'no allocation' if v.note is None else v.note}."
    run, pred = v.run, v.predicted or Prediction()
    outcome = v.outcome or "not run"
    iv = pred.interval
    iv_s = f" (95 % prediction interval [{iv[0]:.3f}, {iv[1]:.3f}])" if iv else " (no interval)"
    head = (
        f"The allocation for {v.budget_flops:.2g} FLOPs was checked by training "
        f"{run['preset']} for {run['steps']} steps: predicted suite "
        f"{pred.suite or float('nan'):.3f}{iv_s}"
    )
    if outcome in ("hit", "miss", "no interval"):
        meas = v.measured.suite  # type: ignore[union-attr]
        reason = pred.extra.get("ci_reason", "refused")
        tail = {
            "hit": "inside the interval (hit)",
            "miss": f"outside the interval by {v.miss_by or 0:.3f} (miss)",
            "no interval": f"with no interval to check ({reason}); "
            "neither a hit nor a miss can be claimed",
        }[outcome]
        return f"{head}, measured {meas:.3f}, {tail}.{_rankme_clause(v)}"
    return f"{head}; that run has not been trained yet (--no-verify, or a sweep after it)."
