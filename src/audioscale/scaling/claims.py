"""The headline as a short list of claims, one line each, every number with its interval.

``claims(fits)`` reads the typed fits (the RankMe law, the learning checks, the paired
comparisons of ``scaling.paired``, the verification run) and returns lines such as

    Best trained − log-mel: +0.012 [-0.004, +0.028], a tie (paired, 95 %, 1000 resamples)

Words follow the intervals (``uncertainty.outcome_word``): "a clear win" when the paired
interval lies above 0, "a tie" when it holds 0, "a loss" below 0; counts of wins count
clear wins only. A comparison without per-clip outcomes says so instead of an interval.
"""

from __future__ import annotations

from audioscale.scaling.learning import plural
from audioscale.scaling.schema import Estimate, Fits, typed

WORDS = {"win": "a clear win", "tie": "a tie", "loss": "a clear loss"}


def _iv(d: dict | None, signed: bool = True) -> str:
    """``+0.012 [-0.004, +0.028], a tie`` or the reason there is no interval."""
    if not d or d.get("value") is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    v = f.format(d["value"])
    if d.get("ci") is None:
        return f"{v} ({d.get('note') or 'no interval'})"
    lo, hi = (f.format(x) for x in d["ci"])
    word = WORDS.get(d.get("outcome") or "", "")
    return f"{v} [{lo}, {hi}]" + (f", {word}" if word else "")


def _est(e: Estimate | None, digits: int = 2) -> str:
    if e is None or e.value is None:
        return "n/a"
    ci = f" [{e.ci[0]:.{digits}f}, {e.ci[1]:.{digits}f}]" if e.ci else " (no interval)"
    return f"{e.value:.{digits}f}{ci}"


def _law_claims(fits: Fits) -> list[str]:
    svr = fits.score_vs_rankme
    if svr is None:
        return []
    sp = svr.correlation("spearman")
    out = [f"RankMe vs suite score: Spearman {_est(sp)} over {svr.n} trained runs"]
    form = svr.chosen_form
    pc = ((svr.forms or {})[form].params_ci or {}).get("b") if form else None
    if pc is not None:
        out.append(f"Suite vs RankMe exponent b ({form} law): {_est(pc, 3)}")
    return out


def _paired_claims(p: dict) -> list[str]:
    out = []
    how = f"paired over test clips, {p.get('level', 0.95):.0%}, {p.get('n_resamples')} resamples"
    ses = [v["se"] for v in (p.get("suite_se") or {}).values() if v.get("se") is not None]
    if ses:
        out.append(
            f"Suite score SE over test clips: {min(ses):.4f}-{max(ses):.4f} ({len(ses)} runs)"
        )
    vs = p.get("vs_own_random_init") or {}
    if vs.get("n_compared"):
        ties, losses = plural(vs["n_tie"], "tie"), plural(vs["n_loss"], "loss")
        top = vs.get("at_largest_budgets")
        at = f"; at the two largest budgets {top['n_win']} of {top['n_compared']}" if top else ""
        out.append(
            f"Trained runs that clearly beat their own random-init mean: {vs['n_win']} of "
            f"{vs['n_compared']} ({ties}, {losses}{at}; {how})"
            if vs["n_no_interval"] < vs["n_compared"]
            else f"Trained vs their own random-init mean: {vs['n_compared']} compared, "
            "no interval: per-clip outcomes not recorded"
        )
    if "best_vs_best_random_init" in p:
        out.append(f"Best trained − best random init: {_iv(p['best_vs_best_random_init'])}")
    if "best_vs_logmel" in p:
        out.append(f"Best trained − log-mel baseline: {_iv(p['best_vs_logmel'])}")
    sel = p.get("rankme_selector") or {}
    if sel.get("overall"):
        ov = sel["overall"]
        out.append(
            f"RankMe's pick − label oracle (runs of equal {sel['cost'].replace('_', ' ')}), "
            f"mean over {ov['n_budgets']} budgets: {_iv(ov)}; within one SE of the oracle at "
            f"{ov['n_within_one_se']} of {ov['n_budgets']} budgets"
        )
    return out


def _verification_claim(fits: Fits) -> list[str]:
    v = fits.verification
    if v is None or v.run is None or not v.predicted:
        return []
    iv = v.predicted.interval
    ps = v.predicted.suite
    pred = "n/a" if ps is None else f"{ps:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")
    meas = v.measured.suite if v.measured else None
    se = ((fits.paired or {}).get("suite_se") or {}).get(v.run_id or "", {}).get("se")
    m = "not run" if meas is None else f"{meas:.3f}" + (f" ± {se:.3f} SE" if se else "")
    return [f"Verification run: predicted suite {pred}, measured {m}: {v.outcome or 'not run'}"]


def claims(fits: Fits | dict) -> list[str]:
    """The headline's claims, one line each (module docstring)."""
    fits = typed(fits)
    out = _law_claims(fits)
    out += _paired_claims(fits.paired or {})
    svr = fits.score_vs_rankme
    chosen = svr.chosen_validation() if svr else None
    fspl = (chosen.fit_small_predict_large if chosen else None) or {}
    if fspl.get("mae") is not None:
        out.append(
            f"Fit on the smaller-compute runs, the law predicted the {fspl['n_test']} "
            f"larger ones within {fspl['mae']:.3f} suite points (MAE)"
        )
    return out + _verification_claim(fits)
