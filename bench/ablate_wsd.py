"""WSD branches against cosine runs from scratch (issue #23, "Measured before adopted").

Three arms of the CPU demo's recipe (demo preset base: 1-s crops, batch 32, base_lr
5e-4, one torch thread per run) over ``--sizes`` × ``--budgets`` steps:

- ``cosine``: every run from scratch with its own cosine schedule (today's default);
- ``wsd0.1`` / ``wsd0.2``: ``schedule: wsd`` with ``cooldown_fraction`` 0.1 / 0.2,
  (1 - sqrt) cooldown, one trunk per size shared by the budgets (``train.trunk``); the
  warm-up is 2 / (1 - beta2) = 40 updates (cosine: 5 % of the run, at least 40).

Each arm is one ``audioscale`` sweep (the real trainer and scheduler, ``--workers``
processes) into ``bench/out/wsd/<arm>/``, without task probes (no test split is read);
``train`` prints each arm's wall time and the trunk + branch cost beside the cost from
scratch.

``eval`` measures, for every final checkpoint and, for the WSD arms, the trunk at each
run's decay start (the un-cooled checkpoint the branch left): clip embeddings (last
layer) of the train and VALID clips of the demo tasks (``data/demo/tasks``; test clips
are never embedded), features standardised on each task's train clips as the suite does;
kNN (k 10, cosine, the suite's probe) and linear probes (the suite's, its epoch chosen
on a seeded 10 % hold-out of train) trained on train and scored on valid; suite = mean
over tasks; RankMe (metrics.rankme, no centring) of the same train + valid embeddings;
held-out loss (the checkpoint sidecar's, the run's own mask and clip length).
Comparisons are paired on the same valid clips: the suite difference of two encoders
with a bootstrap standard error and 95 % percentile interval (2,000 resamples of the
valid clips within each task, seed 0; Efron & Tibshirani 1993), for kNN and linear
(per-clip correctness from the probes' valid predictions).

Usage::

    python bench/ablate_wsd.py train [--sizes atto femto] [--budgets 1000 2000 4000]
                                     [--fractions 0.1 0.2] [--workers 2]
    python bench/ablate_wsd.py eval     # bench/out/wsd/eval.json (cached per encoder)
    python bench/ablate_wsd.py table    # markdown for bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path("bench/out/wsd")
TASKS = Path("data/demo/tasks")
RESAMPLES, SEED = 2000, 0


def spec(arm: str, sizes: list[str], budgets: list[int], workers: int) -> dict:
    from audioscale.config import load_yaml
    from audioscale.sweep.runner import preset_path

    base = load_yaml(preset_path("demo"))["base"]
    base["eval"] = {"tasks": [], "rankme_samples": 1024}
    if arm != "cosine":
        base["train"].update(schedule="wsd", cooldown_fraction=float(arm[3:]))
    return {"name": f"wsd-ablation-{arm}", "base": base,
            "axes": {"size": sizes, "steps": budgets},
            "baselines": {"random_init": False, "logmel_stats": False},
            "study": {"workers": workers, "threads_per_worker": 1}}  # fmt: skip


def train(args) -> None:
    from audioscale.sweep.cost import describe_cost, sweep_cost
    from audioscale.sweep.runner import run_sweep
    from audioscale.sweep.spec import load_sweep

    arms = ["cosine"] + [f"wsd{f}" for f in args.fractions]
    for arm in arms:
        s = spec(arm, args.sizes, args.budgets, args.workers)
        t0 = time.time()
        run_sweep(s, ROOT / arm, progress=True)
        wall = time.time() - t0
        cost = sweep_cost(load_sweep(s).jobs)
        line = {"arm": arm, "wall_s": wall, **cost, "text": describe_cost(cost)}
        print(json.dumps(line), flush=True)
        with open(ROOT / "train_log.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


# --------------------------------------------------------------------------- eval


def _tasks():
    from audioscale.data.manifest import load_task
    from audioscale.probe.suite import expand_task_dirs

    return [load_task(d) for d in expand_task_dirs([TASKS])]


def _encoders(arm_dir: Path) -> list[dict]:
    """Every final checkpoint of an arm, and for WSD the trunk at each decay start."""
    from audioscale.config import load_config
    from audioscale.train.plan import plan
    from audioscale.train.trunk import read_branch

    out = []
    for run in sorted((arm_dir / "runs").glob("*")):
        if not (run / "done.json").is_file():
            continue
        p = plan(load_config(run / "config.yaml"))
        row = {"run": run.name, "preset": p.cfg.model.preset, "steps": p.steps,
               "dir": str(run), "checkpoint": "final"}  # fmt: skip
        out.append(row)
        branch = read_branch(run)
        if branch:
            out.append(row | {"dir": branch["trunk_dir"], "checkpoint": p.decay_start,
                              "run": f"{run.name}@trunk{p.decay_start}"})  # fmt: skip
    return out


def _embed(enc_row: dict, tasks) -> dict:
    from audioscale.embed.extract import extract
    from audioscale.embed.ours import RunEncoder

    enc = RunEncoder(enc_row["dir"], enc_row["checkpoint"])
    out = {}
    for task in tasks:
        rows = [r for r in task.rows if r["split"] in ("train", "valid")]
        ex = extract(enc, rows, cache_dir=ROOT / "emb", progress=False, device="cpu")
        ok_rows = [r for r, good in zip(rows, ex.ok, strict=True) if good]
        out[task.name] = (ex.emb, ok_rows)
    return out


def _measure(embs: dict, tasks) -> dict:
    """Per task: kNN per-clip correctness on valid, the linear valid score; RankMe."""
    from audioscale.metrics.rankme import rankme
    from audioscale.probe import knn, linear
    from audioscale.probe.suite import encode_labels, holdout, standardise_on

    res, pooled = {}, []
    for task in tasks:
        emb, rows = embs[task.name]
        pooled.append(emb)
        y = encode_labels(task, rows)
        split = np.array([r["split"] for r in rows])
        tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
        x = standardise_on(emb, tr)
        n = len(task.labels)
        s = knn.knn_scores(x[tr], y[tr], x[va], n)
        hold = holdout(y[tr])
        lin = linear.linear_probe(x[tr[~hold]], y[tr[~hold]], x[tr[hold]], y[tr[hold]],
                                  x[va], y[va], n_classes=n)  # fmt: skip
        res[task.name] = {"knn_correct": (s.argmax(1) == y[va]).astype(int).tolist(),
                          "linear_correct": (lin["test_scores"].argmax(1) == y[va])
                          .astype(int).tolist(),
                          "linear": lin["score"], "n_valid": int(len(va))}  # fmt: skip
    return {"tasks": res, "rankme": float(rankme(np.concatenate(pooled)))}


def evaluate(args) -> None:
    from audioscale.train.checkpoint import read_sidecar

    tasks = _tasks()
    cache = ROOT / "eval.json"
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    for arm_dir in sorted(p for p in ROOT.glob("*") if (p / "study.db").is_file()):
        for e in _encoders(arm_dir):
            key = f"{arm_dir.name}/{e['run']}"
            if key in done:
                continue
            t0 = time.time()
            m = _measure(_embed(e, tasks), tasks)
            name = "final" if e["checkpoint"] == "final" else f"step_{e['checkpoint']:06d}"
            side = read_sidecar(Path(e["dir"]) / "checkpoints" / f"{name}.safetensors")
            done[key] = e | m | {"arm": arm_dir.name, "heldout_loss": side.get("heldout_loss")}
            cache.write_text(json.dumps(done))
            print(f"{key}: rankme {m['rankme']:.1f} ({time.time() - t0:.0f} s)", flush=True)


# --------------------------------------------------------------------------- table


def knn_suite(r: dict) -> float:
    return float(np.mean([np.mean(t["knn_correct"]) for t in r["tasks"].values()]))


def lin_suite(r: dict) -> float:
    return float(np.mean([t["linear"] for t in r["tasks"].values()]))


def paired(a: dict, b: dict, probe: str = "knn") -> tuple[float, float, float, float]:
    """Suite difference a - b of ``probe`` (knn | linear) on the same valid clips:
    (diff, SE, lo, hi); the suite on a resample is the mean of the task accuracies."""
    rng = np.random.default_rng(SEED)
    per_task, key = [], f"{probe}_correct"
    for name, ta in a["tasks"].items():
        d = np.asarray(ta[key], float) - np.asarray(b["tasks"][name][key])
        idx = rng.integers(0, len(d), size=(RESAMPLES, len(d)))
        per_task.append(d[idx].mean(1))
    boot = np.mean(per_task, axis=0)
    diff = float(np.mean([np.mean(np.asarray(ta[key], float) - b["tasks"][n][key])
                          for n, ta in a["tasks"].items()]))  # fmt: skip
    return diff, float(boot.std(ddof=1)), *np.percentile(boot, [2.5, 97.5]).tolist()


def _cmp(a: dict, b: dict, probe: str) -> str:
    d, se, lo, hi = paired(a, b, probe)
    return f"{d:+.3f} ({se:.3f}) [{lo:+.3f}, {hi:+.3f}]"


def table(args) -> None:
    ev = json.loads((ROOT / "eval.json").read_text())
    finals = {(r["arm"], r["preset"], r["steps"]): r for r in ev.values()
              if r["checkpoint"] == "final"}  # fmt: skip
    trunks = {(r["arm"], r["preset"], r["steps"]): r for r in ev.values()
              if r["checkpoint"] != "final"}  # fmt: skip
    print(
        "| size | steps | arm | kNN valid | linear valid | RankMe | held-out loss "
        "| kNN − cosine (SE) [95 %] | linear − cosine (SE) [95 %] |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for (arm, preset, steps), r in sorted(finals.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        ref = finals.get(("cosine", preset, steps))
        knn_cmp = lin_cmp = ""
        if arm != "cosine" and ref:
            knn_cmp, lin_cmp = _cmp(r, ref, "knn"), _cmp(r, ref, "linear")
        print(
            f"| {preset} | {steps} | {arm} | {knn_suite(r):.3f} | {lin_suite(r):.3f} "
            f"| {r['rankme']:.1f} | {r['heldout_loss']:.4f} | {knn_cmp} | {lin_cmp} |"
        )
    print("\nUn-cooled trunk at the decay start against its cooled branch:\n")
    print(
        "| size | steps | arm | trunk step | kNN trunk → branch | branch − trunk kNN (SE) "
        "| linear trunk → branch | branch − trunk linear (SE) | RankMe trunk → branch "
        "| loss trunk → branch |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, t in sorted(trunks.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        b = finals[key]
        print(
            f"| {key[1]} | {key[2]} | {key[0]} | {t['checkpoint']} | {knn_suite(t):.3f} → "
            f"{knn_suite(b):.3f} | {_cmp(b, t, 'knn')} | {lin_suite(t):.3f} → "
            f"{lin_suite(b):.3f} | {_cmp(b, t, 'linear')} | {t['rankme']:.1f} → "
            f"{b['rankme']:.1f} | {t['heldout_loss']:.4f} → {b['heldout_loss']:.4f} |"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "eval", "table"])
    ap.add_argument("--sizes", nargs="+", default=["atto", "femto"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[1000, 2000, 4000])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.2])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    ROOT.mkdir(parents=True, exist_ok=True)
    {"train": train, "eval": evaluate, "table": table}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
