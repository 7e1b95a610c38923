"""The report's headline claims and its table of paired comparisons (fits.json
``headline.claims`` and ``paired``, ``scaling.claims`` / ``scaling.paired``)."""

from __future__ import annotations

from markupsafe import Markup

from audioscale.report.cells import esc, fmt, note, table
from audioscale.scaling.schema import Fits, Headline


def claims_html(fits: Fits) -> str:
    """The first screen: one line per claim, each with its interval."""
    h = fits.headline or Headline()
    if not h.claims:
        return ""
    items = "".join(f"<li>{esc(c)}</li>" for c in h.claims)
    return f"<ul class='claims'>{items}</ul>"


def _diff(d: dict) -> Markup:
    """``+0.012 [-0.004, +0.028]`` or the reason there is no interval."""
    if d.get("value") is None:
        return note(d.get("note") or "n/a")
    if not d.get("ci"):
        return Markup("{} {}").format(f"{d['value']:+.3f}", note(d.get("note") or "no interval"))
    lo, hi = d["ci"]
    return esc(f"{d['value']:+.3f} [{lo:+.3f}, {hi:+.3f}]")


def sec_paired(fits: Fits) -> str:
    """Every paired comparison over test clips, with its interval and outcome word."""
    p = fits.paired or {}
    if not p:
        return ""
    parts = ["<h2>Paired comparisons over test clips</h2>"]
    parts.append(
        f"<p>{esc(p.get('method'))}; {p.get('n_resamples')} resamples, seed {p.get('seed')}, "
        f"{esc(p.get('protocol') or 'no')} probe; {p.get('runs_with_outcomes')} of "
        f"{p.get('n_runs')} runs have per-clip outcomes. "
        "A win needs the interval above 0; an interval holding 0 is a tie.</p>"
    )
    rows = [[esc(x["run_id"]), esc(", ".join(x["random_init"])), fmt(x.get("examples_seen")),
             _diff(x), esc(x.get("outcome") or "–")]
            for x in (p.get("vs_own_random_init") or {}).get("pairs", [])]  # fmt: skip
    if rows:
        parts.append("<p>Each trained run minus the mean of its own random inits:</p>")
        parts.append(table(["run", "random init", "examples seen", "difference", "outcome"], rows))
    sel = p.get("rankme_selector") or {}
    cost = sel.get("cost", "")
    rows = [[fmt(b.get(cost)), fmt(b["n_runs"]), esc(b["rankme_pick"]), fmt(b.get("oracle")),
             fmt(b.get("oracle_by")), _diff(b), fmt(b.get("within_one_se"))]
            for b in sel.get("per_budget", [])]  # fmt: skip
    if sel.get("overall"):
        ov = sel["overall"]
        rows.append(["mean over budgets", "", "", "", "", _diff(ov), esc(ov.get("outcome") or "")])
    if rows:
        parts.append(
            "<p>RankMe as a selector (Garrido et al. 2023, Fig. 4): the run RankMe picks among "
            f"runs of equal {esc(cost.replace('_', ' '))} minus the label oracle's pick:</p>"
        )
        head = [cost.replace("_", " "), "runs", "RankMe pick", "oracle", "oracle by",
                "pick − oracle", "within 1 SE"]  # fmt: skip
        parts.append(table(head, rows))
    return "".join(parts)
