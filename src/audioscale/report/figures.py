"""The report's figures (matplotlib, Agg backend), saved as PNG and SVG.

Each ``fig_*`` function takes (rows, ckpt_rows, fits) and returns a matplotlib Figure,
or raises ``NoFigure`` with the reason when the study has nothing to draw (too few
runs, a missing column). ``make_figures`` draws all of them into ``out_dir`` and returns
one record per figure (name, title, paths, PNG bytes, or the note saying why not).
Baselines are drawn distinctly: random-init (red ×), log-mel statistics and other
baselines (grey ■), external encoders (purple ▲).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from audioscale.scaling.fits.common import col, is_trained  # noqa: E402
from audioscale.scaling.schema import Fits, ScoreVsRankme, typed  # noqa: E402

BASELINE_STYLE = {
    "random-init": {"marker": "X", "color": "#d62728", "label": "random init"},
    "baseline": {"marker": "s", "color": "#7f7f7f", "label": "baseline (log-mel stats)"},
    "external": {"marker": "^", "color": "#9467bd", "label": "external encoder"},
}
VAR_LABEL = {
    "N": "N (non-embedding params)",
    "D": "D (examples seen)",
    "U": "U (unique hours of data)",
    "C": "C (training FLOPs)",
}
DPI = 110


class NoFigure(Exception):
    """The study has nothing to draw for this figure; the message says why."""


@dataclass
class FigureRecord:
    name: str
    title: str
    caption: str
    png: bytes | None = None
    png_path: Path | None = None
    svg_path: Path | None = None
    note: str = ""


def _pos(*arrs: np.ndarray) -> np.ndarray:
    ok = np.ones(arrs[0].shape, bool)
    for a in arrs:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def _trained(rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_trained(r)]


def fig_score_vs_rankme(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """Suite score vs RankMe, log-log, chosen fit with its bootstrap band, baselines marked."""
    fits = typed(fits)
    tr = _trained(rows)
    x, y, ep = col(tr, "rankme"), col(tr, "suite"), col(tr, "epochs")
    ok = _pos(x, y)
    if ok.sum() == 0:
        raise NoFigure("no trained run has both RankMe and a suite score")
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    c = ep[ok] if np.all(np.isfinite(ep[ok])) else None
    sc = ax.scatter(
        x[ok],
        y[ok],
        c=c,
        cmap="viridis" if c is not None else None,
        s=36,
        edgecolor="k",
        lw=0.4,
        label="trained runs",
        zorder=3,
    )
    if c is not None:
        fig.colorbar(sc, ax=ax, label="epochs over the data")
    svr = fits.score_vs_rankme or ScoreVsRankme()
    _fit_lines(ax, svr)
    _flagged_rings(ax, tr, svr)
    _baselines(ax, rows, "rankme", "suite")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_xlabel("RankMe")
    ax.set_ylabel("suite score")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _fit_lines(ax, svr: ScoreVsRankme) -> None:
    """Each converged form's fit line; the chosen one solid, with its bootstrap band."""
    chosen = svr.chosen_form
    for form, fd in (svr.forms or {}).items():
        band = fd.band or {}
        if not band or band.get("fit") is None:
            continue
        gx, style = np.array(band["x"], float), "-" if form == chosen else "--"
        ax.plot(
            gx,
            np.array(band["fit"], float),
            style,
            color="C1" if form == chosen else "C2",
            label=f"{form} fit" + (" (chosen)" if form == chosen else ""),
            zorder=2,
        )
        if form == chosen:
            ax.fill_between(
                gx,
                np.array(band["lo"], float),
                np.array(band["hi"], float),
                color="C1",
                alpha=0.2,
                label=f"{int(band['level'] * 100)}% bootstrap band",
            )


def _flagged_rings(ax, tr: list[dict], svr: ScoreVsRankme) -> None:
    """A red ring around every run flagged by its residual from the log-log fit."""
    flagged = {f["run_id"] for f in (svr.residuals.flagged if svr.residuals else None) or []}
    for r in tr:
        if (
            str(r.get("run_id")) in flagged
            and _pos(np.array([col([r], "rankme")[0], col([r], "suite")[0]])).all()
        ):
            ax.scatter(
                [r["rankme"]],
                [r["suite"]],
                s=160,
                facecolor="none",
                edgecolor="r",
                lw=1.2,
                zorder=4,
            )


def _plain_log_labels(ax) -> None:
    """Log axes labelled 5, 6, 0.4 … instead of 5×10⁰ (narrow ranges are common here)."""
    from matplotlib.ticker import LogFormatter

    class PlainLog(LogFormatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(PlainLog(labelOnlyBase=False))
        axis.set_minor_formatter(PlainLog(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _baselines(ax, rows: list[dict], xk: str, yk: str) -> None:
    for kind, st in BASELINE_STYLE.items():
        sub = [r for r in rows if r.get("kind") == kind]
        x, y = col(sub, xk), col(sub, yk)
        ok = _pos(x, y)
        if ok.any():
            ax.scatter(
                x[ok],
                y[ok],
                marker=st["marker"],
                color=st["color"],
                s=70,
                label=st["label"],
                zorder=5,
            )
            for r, xi, yi in zip(
                [r for r, k in zip(sub, ok, strict=True) if k], x[ok], y[ok], strict=True
            ):
                ax.annotate(
                    str(r.get("name") or r.get("run_id")),
                    (xi, yi),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )


def fig_laws(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """RankMe, suite score and held-out loss vs N, D and C with the fitted power laws."""
    fits = typed(fits)
    laws = fits.laws or {}
    if not laws:
        raise NoFigure("no scaling laws were fitted")
    tr = _trained(rows)
    targets = [
        ("rankme", "RankMe"),
        ("suite", "suite score"),
        ("heldout_loss", "held-out loss @ mask 0.75"),
    ]
    fig, axes = plt.subplots(3, 4, figsize=(12.5, 8.5), squeeze=False)
    drawn = 0
    for i, (t, tl) in enumerate(targets):
        for j, var in enumerate(("N", "D", "U", "C")):
            ax = axes[i][j]
            law = laws.get(f"{t}_vs_{var}", {})
            xk = law.get("x")
            x, y = (col(tr, xk), col(tr, t)) if xk else (np.array([]), np.array([]))
            ok = _pos(x, y) if xk else np.array([], bool)
            if not ok.any():
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            drawn += 1
            ax.scatter(x[ok], y[ok], s=16, edgecolor="k", lw=0.3)
            p = law.get("params", {})
            if law.get("converged") and p.get("a") is not None:
                g = np.geomspace(x[ok].min(), x[ok].max(), 50)
                b = law.get("params_ci", {}).get("b", {})
                ci = b.get("ci")
                lab = f"b={p['b']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                ax.plot(g, p["a"] * g ** p["b"], "C1-", label=lab)
                ax.legend(fontsize=7)
            ax.set_xscale("log")
            ax.set_yscale("log")
            _readable_log_ticks(ax)
            ax.grid(True, alpha=0.3)
            if i == 2:
                ax.set_xlabel(VAR_LABEL[var], fontsize=8)
            if j == 0:
                ax.set_ylabel(tl)
    if drawn == 0:
        plt.close(fig)
        raise NoFigure("no run has N, D or C together with RankMe, score or loss")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=0.98, wspace=0.28, hspace=0.22)
    return fig


def distinct_formatter():
    """A tick formatter with the fewest significant digits (2 to 6) that label every tick
    of the axis differently: a narrow range (held-out losses 0.355-0.370) whose ticks
    fall back to linear steps is labelled 0.355, 0.36, 0.365, never 0.36 three times."""
    from matplotlib.ticker import Formatter

    class Distinct(Formatter):
        digits = 2

        def set_locs(self, locs) -> None:
            super().set_locs(locs)
            self.digits = next(
                (d for d in range(2, 7) if len({f"{v:.{d}g}" for v in locs}) == len(locs)), 6
            )

        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:.{self.digits}g}"

    return Distinct()


def _readable_log_ticks(ax) -> None:
    """Log axes spanning less than a decade get no labelled major tick by default: label
    1-2-5 steps instead, with as few significant digits as keep the labels distinct
    (``distinct_formatter``)."""
    from matplotlib.ticker import LogLocator, NullLocator

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(distinct_formatter())
        axis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", labelrotation=30)


def error_bars(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """matplotlib's (below, above) lengths of intervals [lo, hi] around v, never negative:
    a percentile bootstrap interval need not contain its point estimate (a Spearman of
    exactly 1, say, with resamples below it), and matplotlib refuses a negative length."""
    return [np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]


def fig_early_training(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """RankMe vs step per run, and Spearman(RankMe at fraction, final score) with CIs."""
    fits = typed(fits)
    runs: dict[str, list[tuple[float, float]]] = {}
    for c in ckpt:
        s, r = c.get("step"), c.get("rankme")
        if s is not None and r is not None and math.isfinite(float(r)) and float(s) > 0:
            runs.setdefault(str(c.get("run_id")), []).append((float(s), float(r)))
    points = (fits.early_training.points if fits.early_training else None) or []
    pts = [p.to_dict() for p in points if p.value is not None]
    if not runs and not pts:
        raise NoFigure("no checkpoint metrics were recorded")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for _rid, seq in sorted(runs.items()):
        seq.sort()
        a1.plot([s for s, _ in seq], [r for _, r in seq], "-o", ms=2.5, lw=1, alpha=0.8)
    a1.set_xscale("log")
    a1.set_xlabel("training step")
    a1.set_ylabel("RankMe")
    a1.set_title(f"RankMe during training ({len(runs)} runs)", fontsize=9)
    a1.grid(True, alpha=0.3)
    if pts:
        f = np.array([p["fraction"] for p in pts])
        v = np.array([p["value"] for p in pts])
        lo = np.array([p["ci"][0] if p.get("ci") else p["value"] for p in pts])
        hi = np.array([p["ci"][1] if p.get("ci") else p["value"] for p in pts])
        a2.errorbar(f, v, yerr=error_bars(v, lo, hi), fmt="o-", capsize=3)
        a2.set_xscale("log", base=2)
    else:
        a2.text(
            0.5,
            0.5,
            "too few runs per checkpoint",
            ha="center",
            va="center",
            transform=a2.transAxes,
        )
    a2.axhline(0, color="k", lw=0.5)
    a2.set_ylim(-1.05, 1.05)
    a2.set_xlabel("fraction of training")
    a2.set_ylabel("Spearman with final suite score")
    a2.set_title("How early does RankMe rank the runs?", fontsize=9)
    a2.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def fig_metric_comparison(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """Signed Spearman of each label-free metric with the suite and domain scores (CIs)."""
    fits = typed(fits)
    targets = (fits.metric_comparison.targets if fits.metric_comparison else None) or {}
    if not targets:
        raise NoFigure("no suite or domain scores to compare metrics on")
    metrics = list(next(iter(targets.values())).keys())
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(targets)
    any_bar = False
    for k, (tname, res) in enumerate(targets.items()):
        vals, los, his = [], [], []
        for m in metrics:
            sp = res.get(m, {}).get("spearman", {})
            v = sp.get("value")
            ci = sp.get("ci") or [v, v]
            vals.append(np.nan if v is None else v)
            los.append(0 if v is None or ci[0] is None else v - ci[0])
            his.append(0 if v is None or ci[1] is None else ci[1] - v)
        any_bar |= bool(np.isfinite(vals).any())
        xs = np.arange(len(metrics)) + (k - (len(targets) - 1) / 2) * width
        yerr = [np.clip(los, 0, None), np.clip(his, 0, None)]  # see error_bars
        ax.bar(xs, vals, width, yerr=yerr, capsize=2, label=tname.replace("domain_", ""))
    if not any_bar:
        plt.close(fig)
        raise NoFigure("no metric has a defined Spearman (too few runs)")
    ax.set_xticks(np.arange(len(metrics)))
    ax.set_xticklabels(metrics, rotation=15, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("signed Spearman (higher = better predictor)")
    ax.legend(fontsize=7, ncol=4)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def fig_rankme_gap(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """rankme_gap (train-slice minus disjoint-pool RankMe) vs epochs: repetition signal."""
    tr = _trained(rows)
    x, y = col(tr, "epochs"), col(tr, "rankme_gap")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if not ok.any():
        raise NoFigure("no run recorded both epochs and rankme_gap")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x[ok], y[ok], s=30, edgecolor="k", lw=0.4)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("epochs over the pretraining data")
    ax.set_ylabel("rankme_gap (train slice − eval pool, equal N)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def fig_validation(rows: list[dict], ckpt: list[dict], fits: Fits | dict) -> Figure:
    """Predicted vs actual suite score: leave-one-out and fit-small-predict-large."""
    fits = typed(fits)
    svr = fits.score_vs_rankme or ScoreVsRankme()
    chosen = svr.chosen_validation()
    val = chosen.to_dict() if chosen else {}
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    drawn = False
    for key, st, lab in (
        ("loo", "o", "leave-one-out"),
        ("fit_small_predict_large", "s", "fit small → predict large"),
    ):
        pr = [p for p in val.get(key, {}).get("per_run", []) if p.get("pred") is not None]
        if pr:
            drawn = True
            ax.scatter(
                [p["actual"] for p in pr],
                [p["pred"] for p in pr],
                marker=st,
                s=28,
                alpha=0.8,
                label=f"{lab} (MAE {val[key]['mae']:.3g})",
            )
    if not drawn:
        plt.close(fig)
        raise NoFigure("no held-out predictions (too few runs or the fit failed)")
    lim = ax.get_xlim() + ax.get_ylim()
    lo, hi = min(lim), max(lim)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("actual suite score")
    ax.set_ylabel("predicted from RankMe")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


FIGURES = [
    (
        "score_vs_rankme",
        "Suite score vs RankMe",
        fig_score_vs_rankme,
        "Trained runs (colour: epochs over the data), the chosen fit with its bootstrap band, "
        "the other form dashed; red circles mark runs > z SD off the log-log fit.",
    ),
    (
        "validation",
        "Held-out predictions",
        fig_validation,
        "Suite score predicted from RankMe by the chosen law, for runs it was not fitted on.",
    ),
    (
        "laws",
        "RankMe, score and loss vs N, D, C",
        fig_laws,
        "Single power laws y = a·x^b (log-log least squares) with the bootstrap CI of b.",
    ),
    (
        "early_training",
        "Early training",
        fig_early_training,
        "Left: RankMe at each checkpoint. Right: Spearman between RankMe at that fraction of "
        "training and the final suite score, with bootstrap CIs.",
    ),
    (
        "metric_comparison",
        "Which label-free metric predicts best",
        fig_metric_comparison,
        "Signed Spearman with the suite and each domain score (α-ReQ and loss sign-flipped), "
        "bootstrap CIs.",
    ),
    (
        "rankme_gap",
        "Repetition signal",
        fig_rankme_gap,
        "RankMe on a slice of the pretraining data minus RankMe on the disjoint pool, vs epochs.",
    ),
]


def _save(fig: Figure, out_dir: Path, name: str) -> tuple[bytes, Path, Path]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    png = buf.getvalue()
    png_path, svg_path = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    from audioscale.utils import atomic_write_bytes

    atomic_write_bytes(png_path, png)
    sbuf = io.BytesIO()
    fig.savefig(sbuf, format="svg")
    atomic_write_bytes(svg_path, sbuf.getvalue())
    plt.close(fig)
    return png, png_path, svg_path


def make_figures(
    rows: list[dict], ckpt: list[dict], fits: Fits | dict, out_dir: Path
) -> list[FigureRecord]:
    """Draw every figure into ``out_dir`` (PNG + SVG); a figure that cannot be drawn
    comes back with a note instead of an image."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for name, title, fn, caption in FIGURES:
        rec = FigureRecord(name, title, caption)
        try:
            fig = fn(rows, ckpt, fits)
        except NoFigure as e:
            rec.note = str(e)
        else:
            rec.png, rec.png_path, rec.svg_path = _save(fig, out_dir, name)
        records.append(rec)
    plt.close("all")
    return records
