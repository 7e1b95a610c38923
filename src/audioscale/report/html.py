"""The self-contained ``report.html``: inline CSS, figures as base64 PNG, no external
resources, readable offline. A small inline script checks on load that every figure
decoded (every <img> has naturalWidth > 0, every inline <svg> a nonzero bounding box)
and records the result in ``<body data-figures-ok>``; the Chromium test reads it.

Cells, tables and escaping: ``report.cells``.
"""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from audioscale.evaluate import records
from audioscale.report.cells import esc, est, figure_html, fmt, loo_mae, note, table
from audioscale.report.figures import FigureRecord, make_figures
from audioscale.report.paired import claims_html, sec_paired
from audioscale.scaling.fits.common import col, is_trained
from audioscale.scaling.schema import (
    Axes,
    Confounds,
    FitForm,
    Fits,
    Headline,
    JointLaw,
    Learning,
    LearningBaselines,
    Measured,
    MetricComparison,
    Prediction,
    ScoreVsRankme,
    Verification,
    typed,
)
from audioscale.utils import atomic_write_text

SETTING_COLUMNS = [
    "family",
    "preset",
    "patch",
    "mask_ratio",
    "clip_seconds",
    "batch_size",
    "lr",
    "seed",
    "data_hours",
    "rankme_N",
    "rankme_K",
    "rankme_pool",
    "pool_overlap",
    "steps",
]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.verdict{background:#f6f8fa;border-left:4px solid #4a7;padding:.8em 1em}
.claims{background:#f6f8fa;border-left:4px solid #4a7;padding:.6em 1em .6em 2em}
.note{color:#a50;font-style:italic}.fig img{max-width:100%;height:auto}
.caption{font-size:.85em;color:#555}.scroll{overflow-x:auto}
"""

CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var bad = 0, imgs = document.images, svgs = document.querySelectorAll('svg');
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) bad++;
  }
  for (var j = 0; j < svgs.length; j++) {
    var b = svgs[j].getBBox();
    if (!(b.width > 0 && b.height > 0)) bad++;
  }
  document.body.setAttribute('data-figures', String(imgs.length + svgs.length));
  document.body.setAttribute('data-figures-ok', bad === 0 ? 'yes' : 'no:' + bad);
});
</script>
"""


# --------------------------------------------------------------------------- sections


def sec_headline(fits: Fits) -> str:
    h = fits.headline or Headline()
    rows = [
        ["trained runs", fmt(h.n_runs)],
        ["Spearman(RankMe, suite)", est(h.spearman_rankme_suite)],
        ["chosen form", esc(h.chosen_form or "none converged")],
        ["exponent b", est(h.exponent_b)],
        ["fit-small-predict-large MAE", fmt(h.fit_small_predict_large_mae)],
        ["best trained suite", fmt(h.best_trained_suite)],
        ["margin over random init", fmt(h.margin_over_random_init)],
        ["margin over log-mel", fmt(h.margin_over_logmel)],
        ["verification", esc(h.verification or "–")],
    ]
    verdict = "" if fits.verdict is None else fits.verdict
    words = f"<p class='verdict'>{esc(verdict)}</p>"
    if h.claims:  # the claims are the first screen; the verdict's full words one click away
        words = (
            claims_html(fits) + f"<details><summary>The verdict in full</summary>{words}</details>"
        )
    return "<h2>Headline</h2>" + words + table(["quantity", "value [95% CI]"], rows)


def _fit_rows(forms: dict[str, FitForm]) -> list[list[str]]:
    out = []
    for form, fd in forms.items():
        pci = fd.params_ci or {}
        ps = Markup(", ").join(
            Markup("{} = {}").format(k, est(pci[k]) if k in pci else fmt(v))
            for k, v in (fd.params or {}).items()
        )
        status = "ok" if fd.converged else note(fd.message)
        out.append(
            [
                form,
                ps if fd.converged else "–",
                est(pci["r2_log"]) if "r2_log" in pci else fmt(fd.r2_log),
                fmt(fd.aic),
                fmt(fd.aicc),
                status,
            ]
        )
    return out


def sec_score_vs_rankme(fits: Fits, figs: dict) -> str:
    svr = fits.score_vs_rankme or ScoreVsRankme()
    parts = ["<h2>Suite score vs RankMe</h2>", figure_html(figs.get("score_vs_rankme"))]
    parts.append(
        f"<p>n = {svr.n} trained runs; chosen form: <b>{esc(svr.chosen_form)}</b> "
        f"({esc(svr.choice.reason if svr.choice else '')}). "
        "Power law: score = a·RankMe<sup>b</sup>; "
        "saturating: score = c − a·RankMe<sup>−b</sup>. Both fitted on log residuals.</p>"
    )
    parts.append(
        table(
            ["form", "parameters [95% CI]", "R² (log) [95% CI]", "AIC", "AICc", "status"],
            _fit_rows(svr.forms or {}),
        )
    )
    corr = svr.correlations or {}
    parts.append(
        table(
            ["correlation", "value [95% CI]", "p"],
            [
                [k, est(corr.get(k)), fmt(c.extra.get("p") if (c := corr.get(k)) else None)]
                for k in ("pearson", "spearman", "kendall")
            ],
        )
    )
    parts.append(figure_html(figs.get("validation")))
    vrows = []
    for form, v in (svr.validation or {}).items():
        loo, fs = v.loo or {}, v.fit_small_predict_large or {}
        vrows.append(
            [
                form,
                loo_mae(loo),
                fmt(loo.get("mean_rel_error")),
                fmt(fs.get("mae")),
                f"{fs.get('n_train', '–')} / {fs.get('n_test', '–')}",
                fs.get("note", "") or loo.get("note", ""),
            ]
        )
    parts.append(
        "<h3>Held-out validation</h3>"
        + table(
            [
                "form",
                "LOO MAE",
                "LOO mean rel. error",
                "small→large MAE",
                "n fit / predicted",
                "note",
            ],
            vrows,
        )
    )
    return "".join(parts)


def sec_laws(fits: Fits, figs: dict) -> str:
    rows = []
    for key, law in (fits.laws or {}).items():
        pci = law.get("params_ci", {})
        val = law.get("validation", {})
        status = "ok" if law.get("converged") else note(law.get("message") or law.get("note"))
        rows.append(
            [
                key,
                law.get("x"),
                fmt(law.get("n")),
                est(pci.get("b")),
                est(pci["r2_log"]) if "r2_log" in pci else fmt(law.get("r2_log")),
                loo_mae(val.get("loo")),
                fmt(val.get("fit_small_predict_large", {}).get("mae")),
                status,
            ]
        )
    return (
        "<h2>Scaling in N, D and C</h2>"
        + figure_html(figs.get("laws"))
        + table(
            [
                "law",
                "x column",
                "n",
                "exponent b [95% CI]",
                "R² (log) [95% CI]",
                "LOO MAE",
                "small→large MAE",
                "status",
            ],
            rows,
        )
        + sec_joint(fits)
    )


def sec_joint(fits: Fits) -> str:
    joint = fits.joint or {}
    parts = [
        "<h3>Joint law L(N, D) = E + A/N<sup>α</sup> + B/D<sup>β</sup> and compute allocation</h3>"
    ]
    if joint.get("note"):
        return parts[0] + f"<p class='note'>{esc(joint['note'])}</p>"
    rows = []
    for name, res in joint.items():
        j = res.joint or FitForm()
        pci = j.params_ci or {}
        if not j.converged:
            rows.append([name, fmt(res.n), note(f"not fitted: {j.message}"), "–", "–"])
            continue
        ps = Markup(", ").join(
            Markup("{} = {}").format(k, est(pci[k]) if k in pci else fmt(v))
            for k, v in (j.params or {}).items()
        )
        rows.append([name, fmt(res.n), ps, j.message, _allocation_cell(name, res)])
    budget = next((r.budget_flops for r in joint.values() if r.budget_flops), None)
    parts.append(
        table(
            ["target", "n", "parameters [95% CI]", "fit", "allocation at the budget [95% CI]"], rows
        )
    )
    if budget:
        parts.append(
            f"<p>Budget: {fmt(budget)} FLOPs. Allocations beyond the largest run are "
            "extrapolations of the fitted laws and carry their uncertainty, not more.</p>"
        )
    return "".join(parts)


def _allocation_cell(name: str, res: JointLaw) -> object:
    """N*, D* and the predicted target at the budget (and RankMe there), or why not."""
    alloc: object = "–"
    if res.N:
        alloc = Markup("N* = {}, D* = {}, predicted {} = {}").format(
            est(res.N), est(res.D), name, est(res.L)
        )
        if res.rankme_at_allocation and res.rankme_at_allocation.value is not None:
            alloc += Markup(", RankMe there = {}").format(est(res.rankme_at_allocation))
        if res.extrapolation:
            alloc += Markup(" <b>(extrapolation)</b>")
        if res.on_grid_edge:
            alloc += Markup(" ") + note("(optimum on the search edge)")
    elif res.note:
        alloc = note(res.note)
    return alloc


def sec_early(fits: Fits, figs: dict) -> str:
    pts = (fits.early_training.points if fits.early_training else None) or []
    rows = [[fmt(p.extra.get("fraction")), fmt(p.n), est(p)] for p in pts]
    body = (
        table(["fraction of training", "n runs", "Spearman with final suite [95% CI]"], rows)
        if rows
        else ("<p class='note'>No checkpoint metrics recorded.</p>")
    )
    return "<h2>Early training</h2>" + figure_html(figs.get("early_training")) + body


def sec_metrics(fits: Fits, figs: dict) -> str:
    mc = fits.metric_comparison or MetricComparison()
    targets = mc.targets or {}
    if not targets:
        return "<h2>Metric comparison</h2><p class='note'>No scores to compare metrics on.</p>"
    metrics = list(next(iter(targets.values())).keys())
    header = ["metric (sign)"] + [f"{t}: Spearman [CI] / LOO MAE" for t in targets]
    rows = []
    for m in metrics:
        sign = mc.direction.get(m, 1) if mc.direction else 1
        cells: list[object] = [f"{m} ({'+' if sign > 0 else '−'})"]
        for t in targets:
            e = targets[t].get(m, {})
            cells.append(Markup("{} / {}").format(est(e.get("spearman")), fmt(e.get("loo_mae"))))
        rows.append(cells)
    return (
        "<h2>Metric comparison</h2>"
        + figure_html(figs.get("metric_comparison"))
        + table(header, rows)
    )


def sec_confounds(fits: Fits, figs: dict) -> str:
    conf = fits.confounds or Confounds()
    parts = ["<h2>Confounds: repetition and size</h2>", figure_html(figs.get("rankme_gap"))]
    covs = ", ".join(conf.covariates or []) or "none"
    parts.append(
        f"<p>Partial Spearman of RankMe with the suite score controlling for {esc(covs)}: "
        f"{est(conf.partial_spearman)}.</p>"
    )
    rrows = []
    for name, reg in (conf.regimes or {}).items():
        if reg.get("note"):
            rrows.append([name, "–", note(reg["note"]), ""])
        else:
            rrows.append([name, fmt(reg.get("cut")), est(reg.get("low")), est(reg.get("high"))])
    if rrows:
        parts.append(table(["split by", "median cut", "Spearman ≤ cut", "Spearman > cut"], rrows))
    flagged = conf.flagged or []
    if flagged:
        parts.append(
            "<p>Runs with large residuals from the log-log fit:</p>"
            + table(
                ["run", "z", "RankMe", "suite", "epochs", "N"],
                [
                    [
                        f["run_id"],
                        fmt(f["z"]),
                        fmt(f["rankme"]),
                        fmt(f["suite"]),
                        fmt(f["epochs"]),
                        fmt(f["params_nonembed"]),
                    ]
                    for f in flagged
                ],
            )
        )
    else:
        parts.append("<p>No run lies beyond the residual threshold.</p>")
    ms = fits.model_selection or {}
    if ms.get("by_rankme"):
        parts.append(
            f"<h3>Model selection</h3><p>Best by RankMe: {esc(ms['by_rankme']['run_id'])} "
            f"(suite {fmt(ms['by_rankme']['suite'])}, "
            f"rank {ms['rank_of_rankme_pick']} of {ms['n']} by suite); "
            f"best by label: {esc(ms['by_label']['run_id'])} "
            f"(suite {fmt(ms['by_label']['suite'])}); "
            f"gap {fmt(ms['gap'])}.</p>"
        )
    elif ms.get("note"):
        parts.append(f"<h3>Model selection</h3><p class='note'>{esc(ms['note'])}</p>")
    return "".join(parts)


def sec_learning(fits: Fits) -> str:
    """Did training beat the baselines, did compute buy quality, did the allocation hold?"""
    learning = fits.learning or Learning()
    vb, cb = learning.baselines or LearningBaselines(), learning.compute or {}
    parts = ["<h2>Did learning happen?</h2>"]
    rows = []
    if vb.best_trained:
        rows.append(["best trained run", esc(vb.best_trained.run_id),
                     fmt(vb.best_trained.suite), ""])  # fmt: skip
    if vb.best_random_init:
        own = vb.vs_own_random_init or {}
        br = vb.best_random_init
        n = br.seeds
        label = "best random-init encoder" + (f" (mean of {n} init seeds)" if n > 1 else "")
        rows.append([label, esc(", ".join(br.run_ids or [br.run_id])),
                     fmt(br.suite), fmt(vb.margin_over_random_init)])  # fmt: skip
        pv = (fits.paired or {}).get("vs_own_random_init") or {}
        beat = (f"{pv['n_win']} of {pv['n_compared']} clear wins, {pv['n_tie']} ties"
                if pv.get("n_compared") and pv["n_no_interval"] < pv["n_compared"]
                else f"{own['n_beat']} of {own['n_compared']}")  # fmt: skip
        rows.append(["trained runs beating their own random init" + (" (mean)" if n > 1 else ""),
                     "", esc(beat), fmt(own["mean_margin"])])  # fmt: skip
    if vb.logmel:
        rows.append(["log-mel baseline (standardised)", esc(vb.logmel.run_id),
                     fmt(vb.logmel.suite), fmt(vb.margin_over_logmel)])  # fmt: skip
    for e in vb.external or []:
        rows.append(["pretrained reference (external, not fitted)", esc(e["run_id"]),
                     fmt(e["suite"]), fmt(e.get("best_trained_minus_this"))])  # fmt: skip
    if rows:
        parts.append(table(["", "run", "suite", "best trained minus this"], rows))
    per = cb.get("per_size", {})
    if per:
        body = [[esc(size), esc(", ".join(f"{x:.3g}" for x in v["examples_seen"])),
                 esc(", ".join(f"{y:.3f}" for y in v["suite"])), fmt(v["rises_overall"])]
                for size, v in per.items()]  # fmt: skip
        parts.append(
            "<p>Compute at each size (runs at the base of every other axis):</p>"
            + table(["size (width x depth)", "examples seen", "suite", "rises"], body)
        )
    lb = cb.get("largest_budget")
    if lb:
        parts.append(
            f"<p>At the largest shared step budget ({fmt(lb['examples_seen'])} examples) the "
            f"best run is {esc(lb['winner'])}: "
            f"{'the largest model' if lb['winner_is_largest_model'] else 'not the largest model'}"
            ".</p>"
        )
    parts.append(sec_verification(fits.verification or Verification()))
    return "".join(parts)


def sec_verification(v: Verification) -> str:
    if v.run is None:
        why = "none" if v.note is None else v.note
        return f"<h3>Verification run</h3><p class='note'>{esc(why)}</p>"
    run, pred = v.run, v.predicted or Prediction()
    measured = v.measured or Measured()
    iv = pred.interval
    rows = [
        ["FLOP budget", fmt(v.budget_flops)],
        ["allocated N*, D*", Markup("{}, {}").format(fmt(v.allocated_N),
                                                     fmt(v.allocated_D))],  # fmt: skip
        ["trained", esc(f"{run['preset']} (N = {run['N']:.3g}), {run['steps']} steps, "
                        f"D = {run['D']:.3g} examples")],  # fmt: skip
        ["predicted suite [95% prediction interval]",
         Markup("{} [{}, {}]").format(fmt(pred.suite), fmt(iv[0]), fmt(iv[1]))
         if iv else Markup("{} {}").format(fmt(pred.suite), note("(no interval)"))],
        ["measured suite", fmt(measured.suite)],
        ["predicted RankMe [95% prediction interval]", est(pred.rankme or {})],
        ["measured RankMe", fmt(measured.rankme)],
        ["outcome", esc((v.outcome or "not run")
                        + (f" by {v.miss_by:.3f}" if v.outcome == "miss" else ""))],
    ]  # fmt: skip
    return "<h3>Verification run</h3>" + table(["quantity", "value"], rows)


def sec_axes(fits: Fits) -> str:
    """Per-axis residuals and the leave-one-axis-out test of the RankMe law."""
    axes = fits.axes or Axes()
    loao, res = axes.leave_one_axis_out or {}, axes.residuals or {}
    if not loao.get("axes"):
        return ""
    rows = []
    for axis, r in loao["axes"].items():
        rr = res.get(axis, {}) if isinstance(res, dict) else {}
        rows.append([
            esc(axis), fmt(r.get("n_fit")), fmt(r.get("n_vary")), fmt(r.get("mae")),
            esc(f"{r['inside_interval']}/{r['n_vary']}") if "inside_interval" in r else "–",
            fmt(rr.get("mean_log_residual")), esc(r.get("verdict")),
        ])  # fmt: skip
    return (
        "<h2>Does RankMe unify the axes?</h2>"
        f"<p>{esc(loao.get('law', ''))}; an axis is absorbed when the held-out error is at most "
        f"{fmt(loao.get('tolerance'))} suite points.</p>"
        + table(
            [
                "axis",
                "runs fitted",
                "runs predicted",
                "MAE",
                "inside 95% interval",
                "mean log residual",
                "verdict",
            ],
            rows,
        )  # fmt: skip
    )


def sec_runs(rows: list[dict]) -> str:
    """The run table: the results fields marked ``report`` (``evaluate.records``) that any
    row holds."""
    cols = [c for c in records.report_columns() if any(r.get(c) is not None for r in rows)]
    body = [[fmt(r.get(c)) for c in cols] for r in rows]
    return f"<h2>Runs ({len(rows)})</h2>" + table(cols, body)


def sec_settings(rows: list[dict], fits: Fits, extra: dict | None) -> str:
    trained = [r for r in rows if is_trained(r)]
    srows = []
    for c in SETTING_COLUMNS:
        vals = {str(r.get(c)) for r in trained if r.get(c) is not None}
        if not vals:
            continue
        if len(vals) == 1:
            srows.append([c, next(iter(vals)), "all trained runs"])
        else:
            v = col(trained, c)
            rng = (
                f"{fmt(float(min(v[v == v])))} … {fmt(float(max(v[v == v])))}"
                if (v == v).any()
                else ", ".join(sorted(vals))[:120]
            )
            srows.append([c, rng, f"varies ({len(vals)} values)"])
    for k, v in (extra or {}).items():
        srows.append([k, v, "study"])
    for k, v in (fits.settings or {}).items():
        srows.append([f"fit.{k}", v, "fits.json"])
    return "<h2>Protocol settings used</h2>" + table(["setting", "value", "scope"], srows)


def render_html(
    rows: list[dict],
    fits: Fits | dict,
    figs: list[FigureRecord],
    title: str,
    extra_settings: dict | None = None,
) -> str:
    by = {f.name: f for f in figs}
    fits = typed(fits)
    body = "".join(
        [
            f"<h1>{esc(title)}</h1>",
            sec_headline(fits),
            sec_learning(fits),
            sec_paired(fits),
            sec_score_vs_rankme(fits, by),
            sec_axes(fits),
            sec_laws(fits, by),
            sec_early(fits, by),
            sec_metrics(fits, by),
            sec_confounds(fits, by),
            sec_runs(rows),
            sec_settings(rows, fits, extra_settings),
        ]
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}{CHECK_SCRIPT}</body></html>\n"
    )


def build_report(
    rows: list[dict],
    ckpt_rows: list[dict],
    fits: dict,
    study_dir: str | Path,
    extra_settings: dict | None = None,
) -> Path:
    """Draw the figures into STUDY_DIR/figures/ and write STUDY_DIR/report.html (pure seam)."""
    study_dir = Path(study_dir)
    figs = make_figures(rows, ckpt_rows, fits, study_dir / "figures")
    page = render_html(rows, fits, figs, f"audioscale report: {study_dir.name}", extra_settings)
    out = study_dir / "report.html"
    atomic_write_text(out, page)
    return out
