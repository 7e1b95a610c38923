"""Time ``fit_results`` on a synthetic study (200 runs, 1000 bootstrap resamples).

Prints one JSON line: wall seconds of the whole fit, of the report (figures + HTML),
the settings and the recovered exponent (truth 0.5) as a sanity check.
``--quick``: 40 runs, 200 resamples (joint 50).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

from audioscale.report import build_report
from audioscale.scaling import FitSettings, fit_results
from audioscale.testing import synthetic_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    n = args.runs or (40 if args.quick else 200)
    settings = FitSettings(n_resamples=200, n_resamples_joint=50) if args.quick else FitSettings()
    rows, ckpt = synthetic_rows(n, seed=0)
    t0 = time.perf_counter()
    fits = fit_results(rows, ckpt, settings)
    fit_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        build_report(rows, ckpt, fits, tmp)
        report_s = time.perf_counter() - t1
    h = fits["headline"]
    print(json.dumps({
        "bench": "fits",
        "runs": n,
        "n_resamples": settings.n_resamples,
        "n_resamples_joint": settings.n_resamples_joint,
        "fit_results_s": round(fit_s, 2),
        "report_s": round(report_s, 2),
        "exponent_b": h["exponent_b"]["value"],
        "exponent_b_ci": h["exponent_b"]["ci"],
        "spearman": h["spearman_rankme_suite"]["value"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "quick": args.quick,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
