"""The report: figures (PNG + SVG), a self-contained report.html that renders in headless
Chromium with every figure showing, odd studies, and the store → fit → report path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from markupsafe import escape

from audioscale.report import build_report, write_report
from audioscale.report.figures import FIGURES
from audioscale.report.html import CHECK_SCRIPT
from audioscale.scaling import FitSettings, fit_results
from audioscale.testing import synthetic_rows

FAST = FitSettings(n_resamples=100, n_resamples_joint=20)
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
SECTIONS = [
    "Headline", "Suite score vs RankMe", "Scaling in N, D and C", "Early training",
    "Metric comparison", "Confounds: repetition and size", "Runs (", "Protocol settings used",
]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, list[dict], list[dict], dict]:
    rows, ckpt = synthetic_rows(14, seed=0)
    fits = fit_results(rows, ckpt, FAST)
    out = tmp_path_factory.mktemp("study")
    build_report(rows, ckpt, fits, out, {"spec": "synthetic"})
    return out, rows, ckpt, fits


def render_dom(html_path: Path, tmp_path: Path) -> str:
    """The DOM after load, from headless Chromium (no network, throwaway profile)."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000", "--dump-dom", html_path.resolve().as_uri(),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _body_attrs(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def test_report_files_and_sections(study):
    out, rows, _, fits = study
    html = (out / "report.html").read_text(encoding="utf-8")
    for name, *_ in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        svg = (out / "figures" / f"{name}.svg").read_text()
        assert "<svg" in svg
    assert html.count("<img ") == len(FIGURES)
    assert "not drawn" not in html
    for title in SECTIONS:
        assert f"<h2>{title}" in html, title
    assert fits["verdict"].split("(")[0] in html
    # self-contained: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html
    # every run (baselines included) is in the run table, with epochs and pool_overlap
    for r in rows:
        assert f"<td>{r['run_id']}</td>" in html
    assert "<th>epochs</th>" in html and "<th>pool_overlap</th>" in html
    assert "fit.n_resamples" in html and "synthetic" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_chromium_with_every_figure(study, tmp_path):
    out, *_ = study
    attrs = _body_attrs(render_dom(out / "report.html", tmp_path))
    assert attrs.get("data-figures") == str(len(FIGURES))
    assert attrs.get("data-figures-ok") == "yes"
    # control: the same check flags a figure that does not decode
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
        f"{CHECK_SCRIPT}</body></html>"
    )
    attrs = _body_attrs(render_dom(bad, tmp_path))
    assert attrs.get("data-figures-ok") == "no:1"


@pytest.mark.parametrize("n", [0, 2])
def test_small_and_odd_studies_say_so(tmp_path, n):
    rows, ckpt = synthetic_rows(n, seed=1)
    if n:
        rows[0]["suite"] = float("nan")
        rows[1]["epochs"] = None
    fits = fit_results(rows, ckpt, FAST)
    path = build_report(rows, ckpt, fits, tmp_path)
    html = path.read_text(encoding="utf-8")
    assert "Too few runs" in html
    assert "not drawn" in html  # figures with nothing to draw say why
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"\bnan\b", text, re.I)  # missing values show as a dash


def _write_store(study_dir: Path, rows: list[dict], ckpt: list[dict]) -> None:
    """Put synthetic rows into a real study.db through the store's own API."""
    from audioscale.config import RunConfig
    from audioscale.evaluate.records import RunInfo
    from audioscale.sweep.store import SPECTRAL_KEYS, Store

    with Store(study_dir / "study.db") as st:
        st.add_runs([
            SimpleNamespace(run_id=r["run_id"], kind=r["kind"], config=RunConfig(name=r["run_id"]))
            for r in rows
        ])  # fmt: skip
        st.set_meta(spec={"name": "synthetic"})
        for r in rows:
            base = {"pool": "heldout", "level": "clip", "layer": -1, "centred": False}
            spectral = [{
                "checkpoint": "final", "step": r.get("steps"), "fraction": 1.0, "is_final": True,
                "n": 1024, "k": 192, **base, **{k: r.get(k) for k in SPECTRAL_KEYS},
            }]  # fmt: skip
            for c in ckpt:
                if c["run_id"] == r["run_id"]:
                    spectral.append({
                        "checkpoint": f"step_{c['step']:06d}_{c['fraction']:.4f}",
                        "step": c["step"], "fraction": c["fraction"], "rankme": c["rankme"],
                        "loss": c["loss"], **base,
                    })  # fmt: skip
            # info holds what run.py writes (records.RunInfo), rankme_gap (the run's
            # equal-N gap) included; rankme_N/K come from the spectral row
            info = {k: v for k, v in r.items() if k in RunInfo.names() and v is not None}
            info["rankme_pool"] = "heldout"
            probes = []
            if r.get("suite") is not None:
                probes.append({
                    "task": "digits", "protocol": "linear", "metric": "accuracy",
                    "score": r["suite"], "settings": {"epochs": 30, "lr": 0.001},
                })  # fmt: skip
            st.record({"run_id": r["run_id"], "spectral": spectral, "info": info, "probes": probes})


def test_store_fit_report_cli(tmp_path, capsys):
    from audioscale.cli import main

    rows, ckpt = synthetic_rows(10, seed=2)
    _write_store(tmp_path, rows, ckpt)
    rc = main(["fit", str(tmp_path), "--json", "--resamples", "100", "--joint-resamples", "20"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    direct = fit_results(rows, ckpt, FitSettings(n_resamples=100, n_resamples_joint=20))
    assert out["headline"]["n_runs"] == 10
    assert out["headline"]["spearman_rankme_suite"] == direct["headline"]["spearman_rankme_suite"]
    assert out["headline"]["exponent_b"]["value"] == pytest.approx(
        direct["headline"]["exponent_b"]["value"]
    )
    assert len(out["early_training"]["points"]) == len(direct["early_training"]["points"])
    rc = main(["report", str(tmp_path)])
    printed = capsys.readouterr().out.strip()
    assert rc == 0 and printed == str(tmp_path / "report.html")
    html = Path(printed).read_text(encoding="utf-8")
    assert "synthetic" in html and html.count("<img ") == len(FIGURES)
    assert "probe.linear" in html and str(escape('"epochs": 30')) in html
    # write_report fits first when fits.json is missing
    (tmp_path / "fits.json").unlink()
    assert write_report(tmp_path, settings=FAST) == tmp_path / "report.html"
    assert (tmp_path / "fits.json").is_file()


def test_report_cli_bad_fits_json_is_one_line_error(tmp_path, capsys):
    from audioscale.cli import main

    rows, ckpt = synthetic_rows(3, seed=0)
    _write_store(tmp_path, rows, ckpt)
    (tmp_path / "fits.json").write_text("{not json")
    rc = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "fits.json" in err and len(err.strip().splitlines()) == 1


def test_table_escapes_cells_by_default():
    from markupsafe import Markup

    from audioscale.report.cells import table

    out = table(["<b>h</b>"], [["<script>alert(1)</script>", Markup("<i>kept</i>")]])
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;b&gt;h&lt;/b&gt;" in out and "<i>kept</i>" in out


def test_run_name_and_error_text_cannot_inject_markup():
    from audioscale.report.html import render_html

    evil = "<script>alert('x')</script>"
    rows, ckpt = synthetic_rows(6, seed=0)
    rows[0]["name"] = rows[0]["run_id"] = evil
    fits = fit_results(rows, ckpt, FitSettings(n_resamples=20, n_resamples_joint=5))
    law = next(iter(fits["laws"].values()))
    law.update(converged=False, message=evil)
    fits["score_vs_rankme"]["forms"]["power"].update(converged=False, message=evil)
    fits["confounds"]["regimes"] = {evil: {"note": evil}}
    page = render_html(rows, fits, [], "study")
    assert page.count("<script>") == CHECK_SCRIPT.count("<script>")  # only our own
    assert page.count("&lt;script&gt;") >= 4


def test_figures_draw_intervals_that_exclude_their_estimate():
    """A percentile bootstrap interval need not contain its point estimate (a Spearman of
    exactly 1 with resamples below it): the figures still draw, with a zero-length bar."""
    import matplotlib.pyplot as plt

    from audioscale.report.figures import fig_early_training, fig_metric_comparison

    point = {"fraction": 0.5, "value": 1.0, "ci": [0.8, 0.95]}
    fig = fig_early_training([], [], {"early_training": {"points": [point]}})
    spearman = {"spearman": {"value": 1.0, "ci": [0.8, 0.95]}}
    fig2 = fig_metric_comparison([], [], {"metric_comparison": {"targets": {
        "suite": {"rankme": spearman}}}})  # fmt: skip
    plt.close(fig)
    plt.close(fig2)


def test_narrow_log_axis_labels_are_distinct():
    # held-out losses 0.355-0.369 on a log axis: the ticks fall back to linear steps, and
    # two significant digits used to label them 0.36 three times and more
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audioscale.report import figures

    fig, ax = plt.subplots()
    ax.scatter([1e5, 2e5, 4e5], [0.3552, 0.3611, 0.3689])
    ax.set_xscale("log")
    ax.set_yscale("log")
    figures._readable_log_ticks(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
             if lo <= v <= hi and t.get_text()]  # fmt: skip
    plt.close(fig)
    assert len(shown) >= 3 and len(set(shown)) == len(shown)
