"""Benchmark: test-sampling noise of the demo tasks (#24) for one encoder.

Per task: test clips (``n_test``, every clip once for K-fold tasks), folds, chance, the
probe's score and two standard errors of it: the binomial one, sqrt(p(1 - p) / n), and a
percentile-free bootstrap one (the standard deviation, ddof 1, of the score over
``--resamples`` resamples of the test clips, drawn with replacement inside each fold, the
task score being the mean over folds as in the probe). Suite score = mean of the task
scores; its bootstrap SE resamples every task at once; its binomial SE is
sqrt(sum SE_i^2) / n_tasks (tasks independent). Only test-clip sampling is measured: the
variation from training data (which train clips, probe seed) is not.

It probes exactly as ``audioscale probe`` does (``probe.suite.folds_of``, standardised
features, ``linear.linear_probe`` / ``knn.knn_probe`` with their defaults), and reads each
fold's per-clip predictions off the last call those probes make to their ``score``
function (the test split's; asserted equal to the score they return): the probe returns
scores only. Also times the probes from cached embeddings (the DESIGN target: <= 20 s per
encoder on a 2-core CPU).

    python bench/bench_task_noise.py --tasks data/demo/tasks --model logmel-stats
    python bench/bench_task_noise.py --tasks data/demo/tasks --model runs/femto --json out.json

Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from audioscale.data.manifest import load_task  # noqa: E402
from audioscale.embed.extract import extract  # noqa: E402
from audioscale.embed.registry import get_encoder  # noqa: E402
from audioscale.probe import knn, linear  # noqa: E402
from audioscale.probe.metrics import chance  # noqa: E402
from audioscale.probe.suite import (  # noqa: E402
    encode_labels,
    evaluate_embeddings,
    expand_task_dirs,
    folds_of,
    standardise_on,
)


@contextmanager
def last_score_call(module):
    """Record every ``module.score(metric, y, s)`` call; yields the list of (y, s)."""
    calls, orig = [], module.score

    def spy(metric, y, s):
        calls.append((np.asarray(y), np.asarray(s)))
        return orig(metric, y, s)

    module.score = spy
    try:
        yield calls
    finally:
        module.score = orig


def fold_hits(protocol: str, emb, y, tr, va, te, n_classes: int) -> np.ndarray:
    """Per test clip: 1.0 where the probe's top class is the label (accuracy tasks)."""
    module = linear if protocol == "linear" else knn
    common = {"n_classes": n_classes, "metric": "accuracy", "multilabel": False}
    with last_score_call(module) as calls:
        if protocol == "linear":
            r = linear.linear_probe(emb[tr], y[tr], emb[va], y[va], emb[te], y[te], **common)
        else:
            r = knn.knn_probe(emb[tr], y[tr], emb[te], y[te], **common)
    yt, s = calls[-1]
    hits = (s.argmax(1) == yt).astype(float)
    assert len(hits) == len(te) and abs(hits.mean() - r["score"]) < 1e-9
    return hits


def task_hits(task, emb, ok, protocol: str) -> list[np.ndarray]:
    """Per fold (one for train/valid/test tasks), the test clips' hits."""
    if task.metric != "accuracy" or task.multilabel:
        raise SystemExit(f"{task.name}: only single-label accuracy tasks are measured here")
    rows = [r for r, keep in zip(task.rows, ok, strict=True) if keep]
    y = encode_labels(task, rows)
    out = []
    for _, tr, va, te in folds_of(task, rows):
        z = standardise_on(emb, tr)
        out.append(fold_hits(protocol, z, y, tr, va if len(va) else tr, te, len(task.labels)))
    return out


def bootstrap(hits: dict[str, list[np.ndarray]], resamples: int, seed: int) -> dict:
    """(resamples,) task scores per task and suite scores: test clips resampled with
    replacement inside each fold, task = mean over folds, suite = mean over tasks."""
    rng = np.random.default_rng(seed)
    per = {}
    for name, folds in hits.items():
        reps = np.zeros(resamples)
        for h in folds:
            idx = rng.integers(0, len(h), size=(resamples, len(h)))
            reps += h[idx].mean(1)
        per[name] = reps / len(folds)
    per["suite"] = np.mean([per[n] for n in hits], axis=0)
    return per


def probe_seconds(enc, tasks, cache: Path) -> float:
    """Both probes on every task from cached embeddings (the cache is filled before)."""
    t0 = time.perf_counter()
    exs = [extract(enc, t.rows, cache_dir=cache, progress=False) for t in tasks]
    assert all(e.from_cache for e in exs)
    evaluate_embeddings(enc.name, tasks, [e.emb for e in exs], [e.ok for e in exs])
    return time.perf_counter() - t0


def measure(args) -> dict:
    enc = get_encoder(args.model)
    tasks = [load_task(d) for d in expand_task_dirs(args.tasks)]
    exs = [extract(enc, t.rows, cache_dir=args.cache, progress=False) for t in tasks]
    out = {"bench": "task_noise", "model": args.model, "protocol": args.protocol, "tasks": {}}
    hits = {}
    for t, ex in zip(tasks, exs, strict=True):
        hits[t.name] = task_hits(t, ex.emb, ex.ok, args.protocol)
        rows = [r for r, keep in zip(t.rows, ex.ok, strict=True) if keep]
        y = encode_labels(t, rows)
        chances = [chance(t.metric, y[tr], y[te]) for _, tr, _, te in folds_of(t, rows)]
        n = sum(len(h) for h in hits[t.name])
        p = float(np.mean([h.mean() for h in hits[t.name]]))
        out["tasks"][t.name] = {
            "n_test": n,
            "folds": len(t.folds),
            "chance": round(float(np.mean(chances)), 3),
            "score": round(p, 4),
            "se_binomial": round(float(np.sqrt(p * (1 - p) / n)), 4),
        }
    reps = bootstrap(hits, args.resamples, args.seed)
    for name in hits:
        out["tasks"][name]["se_bootstrap"] = round(float(reps[name].std(ddof=1)), 4)
    se_bin = [out["tasks"][n]["se_binomial"] for n in hits]
    out["suite"] = round(float(np.mean([out["tasks"][n]["score"] for n in hits])), 4)
    out["suite_se_bootstrap"] = round(float(reps["suite"].std(ddof=1)), 4)
    out["suite_se_binomial"] = round(float(np.sqrt(np.sum(np.square(se_bin)))) / len(hits), 4)
    out["resamples"], out["seed"] = args.resamples, args.seed
    out["probe_from_cache_s"] = round(probe_seconds(enc, tasks, args.cache), 2)
    return out


def table(res: dict) -> str:
    lines = [
        "| task | n_test | folds | chance | score | SE binomial | SE bootstrap |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in res["tasks"].items():
        lines.append(
            f"| {name} | {d['n_test']} | {d['folds'] or '-'} | {d['chance']:.3f} | "
            f"{d['score']:.3f} | {d['se_binomial']:.4f} | {d['se_bootstrap']:.4f} |"
        )
    lines.append(
        f"| suite | | | | {res['suite']:.3f} | {res['suite_se_binomial']:.4f} | "
        f"{res['suite_se_bootstrap']:.4f} |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=Path, nargs="+", default=[Path("data/demo/tasks")])
    ap.add_argument("--model", default="logmel-stats")
    ap.add_argument("--protocol", choices=("linear", "knn"), default="linear")
    ap.add_argument("--cache", type=Path, default=Path("cache/embeddings"))
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="Also write the JSON here.")
    args = ap.parse_args()
    res = measure(args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(table(res))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
