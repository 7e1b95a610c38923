"""fits.json's ``verdict`` (plain words: where the RankMe law held and where it broke)
and ``headline`` (the numbers a study ends with).

Thresholds: Spearman ≥ 0.7 with CI above 0 "tracked"; ≥ 0.4 "moderately"; ≤ −0.4 "ran
against"; otherwise "weak"; fewer than 5 runs "too few runs". Regimes: the runs are split
at the median of epochs and of N; halves whose Spearman differ by < 0.3 are "similar";
otherwise the law "held" in one half and "broke" in the other when those are ≥ 0.7 and
< 0.4, else one half is "stronger".
"""

from __future__ import annotations

import numpy as np

from audioscale.scaling.claims import claims
from audioscale.scaling.learning import sentences as learning_sentences
from audioscale.scaling.schema import Confounds, Estimate, Fits, typed


def _fmt_rho(d: Estimate) -> str:
    ci_s = f" [{d.ci[0]:.2f}, {d.ci[1]:.2f}]" if d.ci else ""
    return f"{d.value:.2f}{ci_s}, n={d.n}"


def verdict(fits: Fits | dict) -> str:
    """Plain-words summary of where the RankMe law held and where it broke."""
    fits = typed(fits)
    svr = fits.score_vs_rankme
    assert svr is not None and fits.confounds is not None
    sp = svr.correlation("spearman")
    n = svr.n
    if n < 5 or sp.value is None:
        return f"Too few runs with RankMe and a suite score to judge the relation (n={n})."
    parts = [_relation_sentence(sp)]
    parts += _regime_sentences(fits.confounds)
    ps = fits.confounds.partial_spearman
    if ps is not None and ps.value is not None:
        covs = " and ".join(fits.confounds.covariates or [])
        parts.append(f"Controlling for {covs}, the partial Spearman is {_fmt_rho(ps)}.")
    flagged = (svr.residuals.flagged if svr.residuals else None) or []
    if flagged:
        ids = ", ".join(f["run_id"] for f in flagged[:5])
        parts.append(
            f"{len(flagged)} run(s) lie more than {svr.residuals.z_threshold:g} SD "  # type: ignore[union-attr]
            f"off the log-log fit: {ids}."
        )
    parts += _baseline_sentences(fits)
    if fits.learning is not None:
        parts += learning_sentences(fits.learning, fits.verification, fits.paired)
    loao = fits.axes.leave_one_axis_out if fits.axes else None
    parts += _axes_sentences(loao or {})
    chosen = svr.chosen_validation()
    fspl = (chosen.fit_small_predict_large if chosen else None) or {}
    if fspl.get("mae") is not None:
        parts.append(
            f"Fitted on the {fspl['n_train']} smaller-compute runs, the law predicted the "
            f"{fspl['n_test']} larger ones with a mean absolute error of {fspl['mae']:.3g} "
            "(suite units)."
        )
    return " ".join(parts)


def _relation_sentence(sp: Estimate) -> str:
    """The first sentence: how RankMe and the suite score went together."""
    rho, ci = sp.value, sp.ci
    assert rho is not None
    if rho >= 0.7 and ci and ci[0] > 0:
        return f"RankMe tracked the suite score (Spearman {_fmt_rho(sp)})."
    if rho >= 0.4:
        return f"RankMe tracked the suite score only moderately (Spearman {_fmt_rho(sp)})."
    if rho <= -0.4:
        return (
            f"RankMe ran against the suite score here (Spearman {_fmt_rho(sp)}): higher RankMe "
            "went with lower scores, so it cannot rank these runs."
        )
    return (
        f"The relation between RankMe and the suite score is weak here (Spearman {_fmt_rho(sp)})."
    )


def _axes_sentences(loao: dict) -> list[str]:
    """Leave-one-axis-out in words: which axes the RankMe law absorbs, which break it."""
    tested = {a: r for a, r in loao.get("axes", {}).items() if r.get("verdict") != "not tested"}
    if not tested:
        return []
    absorbed = [f"{a} ({r['mae']:.3f})" for a, r in tested.items() if r["verdict"].endswith("axis")]
    broke = [f"{a} ({r['mae']:.3f})" for a, r in tested.items() if r["verdict"].endswith("it")]
    out = []
    tol = loao.get("tolerance", 0.02)
    if absorbed:
        out.append(
            f"Leaving one axis out, the law absorbs {', '.join(absorbed)}: fitted without "
            f"the runs that vary it, it predicts them within {tol:g} suite points (MAE)."
        )
    if broke:
        out.append(f"These axes break it (MAE above {tol:g}): {', '.join(broke)}.")
    return out


def _regime_sentences(conf: Confounds) -> list[str]:
    """Compare the Spearman below/at and above each median split, in words."""
    out = []
    for name, reg in (conf.regimes or {}).items():
        lo = Estimate.from_dict(reg.get("low")) or Estimate()
        hi = Estimate.from_dict(reg.get("high")) or Estimate()
        if lo.value is None or hi.value is None:
            continue
        label = "epochs" if name == "epochs" else "parameters"
        cut = f"{reg['cut']:.3g}"
        if abs(lo.value - hi.value) < 0.3:
            out.append(
                f"The Spearman was similar for runs with ≤ {cut} {label} ({_fmt_rho(lo)}) "
                f"and > {cut} {label} ({_fmt_rho(hi)})."
            )
            continue
        good, bad = (lo, hi) if lo.value > hi.value else (hi, lo)
        g_side, b_side = ("≤", ">") if good is lo else (">", "≤")
        if good.value >= 0.7 and bad.value < 0.4:
            out.append(
                f"It held for runs with {g_side} {cut} {label} (Spearman {_fmt_rho(good)}) "
                f"and broke for runs with {b_side} {cut} {label} (Spearman {_fmt_rho(bad)})."
            )
        else:
            out.append(
                f"It was stronger for runs with {g_side} {cut} {label} (Spearman "
                f"{_fmt_rho(good)}) than for {b_side} {cut} {label} ({_fmt_rho(bad)})."
            )
    return out


def _finite(v: object) -> bool:
    return v is not None and bool(np.isfinite(float(v)))


def _external_sentence(external: list[dict], scores: list[float]) -> list[str]:
    """Pretrained references, for scale: never fitted, never a bar to clear."""
    if not external:
        return []
    listed = ", ".join(f"{b['run_id']} {b['suite']:.3g}" for b in external)
    best = f"; best trained run {max(scores):.3g}" if scores else ""
    return [
        f"Pretrained reference encoders (other methods and data; not fitted, and their "
        f"RankMe is not comparable with the runs') scored on the suite: {listed}{best}."
    ]


def _baseline_sentences(fits: Fits) -> list[str]:
    svr = fits.score_vs_rankme
    assert svr is not None
    rows = [b.to_dict() for b in fits.baselines or []]
    trained = [v for v in svr.rankme_values or [] if v is not None]
    out = []
    random = [b["rankme"] for b in rows
              if b.get("kind") == "random-init" and b.get("rankme") is not None]  # fmt: skip
    if random and trained:
        lo, hi = min(trained), max(trained)
        where = {"above": sum(v > hi for v in random), "below": sum(v < lo for v in random)}
        where["within"] = len(random) - where["above"] - where["below"]
        counts = ", ".join(f"{n} {k}" for k, n in where.items() if n)
        lo_r, hi_r = f"{min(random):.3g}", f"{max(random):.3g}"
        span = lo_r if lo_r == hi_r else f"{lo_r}-{hi_r}"
        out.append(
            f"The {len(random)} random-init encoder(s) had RankMe {span} ({counts} the trained "
            f"runs' range [{lo:.3g}, {hi:.3g}]): compare RankMe among trained runs only."
        )
    scores = [v for v in svr.suite_values or [] if _finite(v)]
    scored = [b for b in rows if _finite(b.get("suite"))]
    out += _external_sentence([b for b in scored if b.get("kind") == "external"], scores)
    scored = [b for b in scored if b.get("kind") != "external"]
    # random init as the learning checks see it (each architecture's mean over its init
    # seeds) when they paired it with trained runs; else the random-init rows themselves
    vb = fits.learning.baselines if fits.learning else None
    br = vb.best_random_init if vb else None
    if br and _finite(br.suite):
        scored = [b for b in scored if b.get("kind") != "random-init"]
        n = br.seeds
        kind = f"random-init, mean of {n} init seeds" if n > 1 else "random-init"
        scored.append({"kind": kind, "run_id": br.run_id, "suite": br.suite})
    if scores and scored:
        best = max(scored, key=lambda b: b["suite"])
        if best["suite"] > max(scores):
            out.append(
                f"The best baseline ({best['kind']}, {best['run_id']}) scored {best['suite']:.3g} "
                f"on the suite, above every trained run (best {max(scores):.3g}): these encoders "
                "are not yet better than the baseline, so the law describes runs that are still "
                "short of useful training; train longer before reading it as a recipe."
            )
        else:
            out.append(
                f"The best trained run scored {max(scores):.3g} on the suite, above every "
                f"baseline (best: {best['kind']}, {best['suite']:.3g})."
            )
    return out


def headline(fits: Fits | dict) -> dict:
    """fits.json's ``headline``: the numbers a study ends with."""
    fits = typed(fits)
    svr, data = fits.score_vs_rankme, fits.data
    assert svr is not None and data is not None
    form = svr.chosen_form
    b = {"value": None, "ci": None}
    if form:
        pci = (svr.forms or {})[form].params_ci
        pc = pci.get("b") if pci else None
        if pc is not None:
            b = {"value": pc.value, "ci": pc.ci}
    sp = svr.correlation("spearman")
    chosen = svr.chosen_validation()
    fspl = (chosen.fit_small_predict_large if chosen else None) or {}
    vb = fits.learning.baselines if fits.learning else None
    ver = fits.verification
    out = {
        "n_runs": data.n_trained,
        "spearman_rankme_suite": {"value": sp.value, "ci": sp.ci},
        "exponent_b": b,
        "chosen_form": form,
        "fit_small_predict_large_mae": fspl.get("mae"),
        "best_trained_suite": vb.best_trained.suite if vb and vb.best_trained else None,
        "margin_over_random_init": vb.margin_over_random_init if vb else None,
        "margin_over_logmel": vb.margin_over_logmel if vb else None,
        "verification": (ver.outcome or ver.note) if ver else None,
    }
    if ver and ver.run:
        pred = ver.predicted
        out["verification_predicted"] = {
            "value": pred.suite if pred else None,
            "ci": pred.interval if pred else None,
        }
        out["verification_measured"] = ver.measured.suite if ver.measured else None
    out["claims"] = claims(fits)
    out["verdict"] = fits.verdict
    return out
