"""Learning-regime ablations for the CPU demo study: which levers make MAE pretraining
beat a random-init encoder of the same architecture within a CPU budget.

Each arm is one short pretraining run (the real trainer, one torch thread) on the full
demo corpus (``audioscale data demo --out data/demo --size full`` first), followed by
the same evaluation for every arm and for the reference rows (random-init encoders of
each architecture, the log-mel-statistics baseline):

- clip embeddings of every clip of the six demo tasks at every encoder layer, combined
  into the layer variants ``last`` (-1), ``middle`` (block ``(depth - 1) // 2``), ``mean``
  (mean of all blocks' clip embeddings);
- per variant: the linear probe (LayerNorm + Linear, best epoch on the valid split) and
  the kNN probe (k 10, cosine) as the suite runs them, scored on the VALID split (linear:
  the probe's ``valid_score``; kNN: the vote of train neighbours for the valid clips) and
  on the TEST split; suite = mean over the six tasks. Choices (recipe, layer) are made
  on the valid columns only; test columns are reported beside them;
- a ``std`` variant of every row: features z-scored per dimension with the task's train
  split statistics before probing (what "treated fairly" means for the log-mel baseline,
  whose raw dB statistics share a large common offset that cosine kNN cannot undo);
- RankMe (clip level, no centring, audioscale.metrics.rankme) on the study's evaluation pool
  (the pool's heldout split + the task clips, seeded subsample of 1,024), with N and K.

Usage::

    python bench/ablate_recipe.py train ARM [ARM ...]   # pretrain arms (skips done ones)
    python bench/ablate_recipe.py eval ARM|ref:NAME ... # evaluate (cached per arm)
    python bench/ablate_recipe.py run ARM ...           # train then eval
    python bench/ablate_recipe.py table [--layer V]     # print the table (markdown)
    python bench/ablate_recipe.py speed [CELL ...]      # steps/s per config (interleaved)
    python bench/ablate_recipe.py list                  # arms and references

References: ``ref:random-<preset>[-s<seed>]`` (random init, seed 0 unless given; the arm
configs only change training, so the random-init rows of an architecture serve every
arm of it; an arm with
``model.input_norm=batchnorm`` is at init the identity on top of the same weights) and
``ref:logmel``. Outputs: ``bench/out/ablate/<arm>/`` (run folder + ``ablate.json``).
Run one training at a time (OMP_NUM_THREADS=1); ``eval`` can overlap a ``train``.
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
import torch  # noqa: E402

ROOT = Path("bench/out/ablate")
STD_ALL = False  # --std: the standardised-feature probes for trained arms too
EMB_CACHE = ROOT / "emb_cache"
TASKS = "data/demo/tasks"
POOL = "data/demo/pool"
BASE = [
    "model.preset=femto",
    f"data.pool={POOL}",
    "data.clip_seconds=1.0",
    "data.cache_dir=cache/features",
    "train.batch_size=32",
    "train.device=cpu",
    "train.threads=1",
    "train.log_every=50",
    "train.checkpoint_fractions=[]",
    "train.state_every_s=null",
    f"eval.tasks=[{TASKS}]",
    "eval.rankme_samples=1024",
]

LR05 = "train.base_lr=5e-4"

# name -> (what changed, overrides on top of BASE)
ARMS: dict[str, tuple[str, list[str]]] = {
    # Every arm listed here was run, in this order of discovery: the current recipe (lr rule
    # with base_lr 1e-3, beta2 0.95, decoder 64 x 1, fixed input norm) at two budgets, one
    # lever at a time against s1500, then, once base_lr 5e-4 won on valid, the other levers
    # and budgets on top of it. Costs of bf16 and the wider decoder: the speed command.
    "s1500": ("current recipe, 1500 steps", ["train.steps=1500"]),
    "s3000": ("current recipe, 3000 steps", ["train.steps=3000"]),
    "bn": ("per-mel-bin BatchNorm input", ["train.steps=1500", "model.input_norm=batchnorm"]),
    "lr4": ("base_lr 4e-3 (lr x4)", ["train.steps=1500", "train.base_lr=4e-3"]),
    "lr05": ("base_lr 5e-4 (lr x0.5)", ["train.steps=1500", "train.base_lr=5e-4"]),
    "lr025": ("base_lr 2.5e-4 (lr x0.25)", ["train.steps=1500", "train.base_lr=2.5e-4"]),
    "lr05-s3000": ("base_lr 5e-4, 3000 steps", ["train.steps=3000", "train.base_lr=5e-4"]),
    "lr05-s6000": ("base_lr 5e-4, 6000 steps", ["train.steps=6000", "train.base_lr=5e-4"]),
    "lr05-s750": ("base_lr 5e-4, 750 steps", ["train.steps=750", "train.base_lr=5e-4"]),
    "lr05-clip2": (
        "base_lr 5e-4, 2-s clips, 750 steps",
        ["train.steps=750", "train.base_lr=5e-4", "data.clip_seconds=2.0"],
    ),
    "lr05-atto": (
        "atto, base_lr 5e-4, 1500 steps",
        ["model.preset=atto", "train.steps=1500", "train.base_lr=5e-4"],
    ),
    "lr05-pico": (
        "pico, base_lr 5e-4, 1500 steps",
        ["model.preset=pico", "train.steps=1500", "train.base_lr=5e-4"],
    ),
    "lr05-b2": (
        "base_lr 5e-4, AdamW beta2 0.999",
        ["train.steps=1500", "train.base_lr=5e-4", "train.beta2=0.999"],
    ),
    "lr05-bs64": (
        "base_lr 5e-4, batch 64, 750 steps (same examples)",
        ["train.steps=750", "train.base_lr=5e-4", "train.batch_size=64"],
    ),
    "lr05-mask90": (
        "base_lr 5e-4, mask ratio 0.9",
        ["train.steps=1500", "train.base_lr=5e-4", "model.mask_ratio=0.9"],
    ),
    "lr05-atto-s3000": (
        "atto, base_lr 5e-4, 3000 steps",
        ["model.preset=atto", "train.steps=3000", "train.base_lr=5e-4"],
    ),
    "lr025-atto": (
        "atto, base_lr 2.5e-4, 1500 steps",
        ["model.preset=atto", "train.steps=1500", "train.base_lr=2.5e-4"],
    ),
    "lr05-pico-s3000": (
        "pico, base_lr 5e-4, 3000 steps",
        ["model.preset=pico", "train.steps=3000", "train.base_lr=5e-4"],
    ),
    "nopix": (
        "MSE on raw patches (norm_pix_loss off)",
        ["train.steps=1500", "model.norm_pix_loss=false"],
    ),
    # Round 2 (fused AdamW on CPU from here on: same update rule, other rounding, so the
    # round-2 control r2-base is rerun rather than compared with lr05): levers on top of
    # the chosen recipe (femto, base_lr 5e-4, 1,500 steps).
    "r2-base": ("round-2 control: chosen recipe, 1500 steps", ["train.steps=1500", LR05]),
    "r2-mask50": ("mask ratio 0.5", ["train.steps=1500", LR05, "model.mask_ratio=0.5"]),
    "r2-dec64x2": ("decoder 64 x 2 blocks", ["train.steps=1500", LR05, "model.decoder_depth=2"]),
    "r2-dec128x2": (
        "decoder 128 x 2 blocks",
        ["train.steps=1500", LR05, "model.decoder_depth=2", "model.decoder_width=128"],
    ),
    "r2-s3000": ("round-2 control, 3000 steps", ["train.steps=3000", LR05]),
    "r2-dec64x2-s3000": (
        "decoder 64 x 2 blocks, 3000 steps",
        ["train.steps=3000", LR05, "model.decoder_depth=2"],
    ),
}


def _arm_dir(name: str) -> Path:
    return ROOT / name.replace(":", "_")


def config_of(name: str):
    from audioscale.config import load_config

    return load_config(None, BASE + ARMS[name][1])


# ----------------------------------------------------------------------------- train


def train(name: str) -> dict:
    from audioscale.train.trainer import pretrain

    torch.set_num_threads(1)
    cfg = config_of(name)
    cfg.name = name
    out = _arm_dir(name) / "run"
    t0 = time.perf_counter()
    res = pretrain(cfg, out, progress=False)
    rates = []
    mpath = out / "metrics.jsonl"
    if mpath.is_file():
        rows = [json.loads(x) for x in mpath.read_text().splitlines()]
        rates = [r["examples_per_s"] for r in rows[1:]] or [r["examples_per_s"] for r in rows]
    info = {
        "arm": name,
        "steps": res.steps,
        "batch_size": res.batch_size,
        "lr": res.lr,
        "wall_s": res.wall_s,
        "call_s": time.perf_counter() - t0,
        "examples_per_s": float(np.median(rates)) if rates else None,
        "final_loss": res.final_loss,
        "heldout_loss": res.heldout_loss,
        "epochs": res.epochs,
        "params": res.params,
    }
    print(json.dumps(info), flush=True)
    return info


# ----------------------------------------------------------------------------- eval


def _encoder(name: str):
    from audioscale.embed.registry import get_encoder

    if name == "ref:logmel":
        return get_encoder("logmel-stats")
    if name.startswith("ref:random-"):  # ref:random-<preset>[-s<seed>], seed 0 by default
        preset, _, seed = name[len("ref:random-") :].partition("-s")
        return get_encoder(f"random:{preset}:{seed or 0}")
    return get_encoder(str(_arm_dir(name) / "run"))


def _variants(n_layers: int) -> dict[str, list[int]]:
    return {"last": [n_layers - 1], "middle": [(n_layers - 1) // 2], "mean": list(range(n_layers))}


def _probe(tasks, embs, oks, standardise: bool) -> dict:
    from audioscale.probe import knn
    from audioscale.probe.suite import (
        encode_labels,
        evaluate_embeddings,
        folds_of,
        standardise_on,
    )

    features = "standardised" if standardise else "raw"
    res = evaluate_embeddings("x", tasks, embs, oks, ("linear", "knn"), features=features)
    if standardise:
        new = []
        for task, emb, ok in zip(tasks, embs, oks, strict=True):
            rows = [r for r, k in zip(task.rows, ok, strict=True) if k]
            ((_, tr, _, _),) = folds_of(task, rows)
            new.append(standardise_on(emb, tr))
        embs = new
    per = {}
    for task, emb, ok in zip(tasks, embs, oks, strict=True):
        rows = [r for r, k in zip(task.rows, ok, strict=True) if k]
        y = encode_labels(task, rows)
        ((_, tr, va, _),) = folds_of(task, rows)
        kv = knn.knn_probe(
            emb[tr], y[tr], emb[va], y[va], len(task.labels), task.metric, task.multilabel
        )["score"]
        t = res.tasks[task.name]
        per[task.name] = {
            "valid_linear": t["linear"]["valid_score"],
            "valid_knn": kv,
            "test_linear": t["linear"]["score"],
            "test_knn": t["knn"]["score"],
        }
    keys = ("valid_linear", "valid_knn", "test_linear", "test_knn")
    suite = {k: float(np.mean([p[k] for p in per.values()])) for k in keys}
    return {"suite": suite, "tasks": per}


def evaluate(name: str) -> dict:
    from audioscale.config import load_config
    from audioscale.data.manifest import load_task
    from audioscale.embed.extract import extract
    from audioscale.evaluate.context import build_eval_context
    from audioscale.metrics import rankme
    from audioscale.probe.suite import expand_task_dirs

    torch.set_num_threads(1)
    out_json = _arm_dir(name) / "ablate.json"
    if out_json.is_file():
        old = json.loads(out_json.read_text())
        if not STD_ALL or all("std" in v for v in old["variants"].values()):
            return old
    t0 = time.perf_counter()
    enc = _encoder(name)
    n_layers = enc.n_layers
    tasks = [load_task(d) for d in expand_task_dirs([TASKS])]
    base = load_config(None, BASE)
    ctx = build_eval_context(base)
    per_layer_tasks, per_layer_pool = {}, {}
    oks = None
    for layer in range(n_layers):
        exs = [
            extract(
                enc,
                t.rows,
                layer=layer,
                level="clip",
                cache_dir=EMB_CACHE,
                progress=False,
                device="cpu",
            )
            for t in tasks
        ]
        per_layer_tasks[layer] = [e.emb for e in exs]
        oks = [e.ok for e in exs]
        pe = extract(
            enc,
            ctx.pool_rows,
            layer=layer,
            level="clip",
            cache_dir=EMB_CACHE,
            progress=False,
            device="cpu",
        )
        per_layer_pool[layer] = pe.emb
    t_embed = time.perf_counter() - t0
    variants = _variants(n_layers) if n_layers > 1 else {"last": [0]}
    out = {"arm": name, "n_layers": n_layers, "dim": enc.dim, "variants": {}}
    for vname, layers in variants.items():
        embs = [np.mean([per_layer_tasks[i][k] for i in layers], 0) for k in range(len(tasks))]
        pool = np.mean([per_layer_pool[i] for i in layers], 0)
        row = {
            "layers": layers,
            "rankme": float(rankme(pool.astype(np.float64))),
            "rankme_N": int(pool.shape[0]),
            "rankme_K": int(pool.shape[1]),
        }
        row["raw"] = _probe(tasks, embs, oks, standardise=False)
        if name.startswith("ref:") or STD_ALL:
            row["std"] = _probe(tasks, embs, oks, standardise=True)
        out["variants"][vname] = row
    out["embed_s"] = t_embed
    out["eval_s"] = time.perf_counter() - t0
    out["rankme_pool"] = ctx.pool_name
    train_info = _arm_dir(name) / "train.json"
    if train_info.is_file():
        out["train"] = json.loads(train_info.read_text())
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, out_json)
    v = out["variants"]["last"]["raw"]["suite"]
    print(f"{name}: eval {out['eval_s']:.0f}s last raw {v}", flush=True)
    return out


# ----------------------------------------------------------------------------- speed

SPEED_CELLS: dict[str, list[str]] = {
    "femto-1s": ["model.preset=femto"],
    "femto-1s-bf16": ["model.preset=femto", "train.precision=bf16"],
    "femto-1s-bn": ["model.preset=femto", "model.input_norm=batchnorm"],
    "femto-1s-dec128x2": ["model.preset=femto", "model.decoder_width=128", "model.decoder_depth=2"],
    "femto-1s-bs64": ["model.preset=femto", "train.batch_size=64"],
    "femto-1s-mask90": ["model.preset=femto", "model.mask_ratio=0.9"],
    "femto-2s": ["model.preset=femto", "data.clip_seconds=2.0"],
    "atto-1s": ["model.preset=atto"],
    "pico-1s": ["model.preset=pico"],
    "nano-1s": ["model.preset=nano"],
    "atto-2s": ["model.preset=atto", "data.clip_seconds=2.0"],
    "pico-2s": ["model.preset=pico", "data.clip_seconds=2.0"],
}


def speed(cells: list[str], seconds: float, rounds: int) -> dict:
    """Update steps per second of the trainer's step (forward, backward, clip, AdamW) on
    real feature-cache batches, one thread, cells interleaved over ``rounds`` rounds so
    that a changing machine load hits every cell alike; median over rounds."""
    from audioscale.config import load_config
    from audioscale.data.corpus import ClipDataset
    from audioscale.data.featcache import FeatureCache
    from audioscale.models.mae import build_mae
    from audioscale.train.ddp import DistInfo
    from audioscale.train.heldout import select_rows
    from audioscale.train.plan import plan
    from audioscale.train.trainer import _autocast, _param_groups, mask_generator

    torch.set_num_threads(1)
    state = {}
    for c in cells:
        cfg = load_config(None, BASE + SPEED_CELLS[c])
        p = plan(cfg)
        train_rows, _ = select_rows(p.cfg)
        cache = FeatureCache.build(train_rows, p.cfg.frontend, p.cfg.data.cache_dir, False)
        torch.manual_seed(0)
        model = build_mae(p.cfg.model, p.cfg.frontend)
        t = p.cfg.train
        opt = torch.optim.AdamW(
            _param_groups(model, t.weight_decay), lr=p.lr, betas=(t.beta1, t.beta2)
        )
        ds = ClipDataset(cache, p.clip_frames, 0, t.batch_size)
        state[c] = (p, model, opt, ds, [])
    dev = torch.device("cpu")
    for _ in range(rounds):
        for c in cells:
            p, model, opt, ds, rates = state[c]
            k, t0 = 0, time.perf_counter()
            while True:
                mel = ds[k]
                gen = mask_generator(0, k, dev, DistInfo(), len(mel), p.tokens_per_example)
                noise = torch.rand(len(mel), p.tokens_per_example, generator=gen)
                with _autocast(dev, p.cfg.train.precision):
                    loss = model(mel, noise=noise).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                k += 1
                if k == 2:
                    t0, k0 = time.perf_counter(), k
                if k > 4 and time.perf_counter() - t0 > seconds:
                    break
            rates.append((k - k0) / (time.perf_counter() - t0))
    out = {}
    for c in cells:
        p, _, _, _, rates = state[c]
        sps = float(np.median(rates))
        out[c] = {
            "steps_per_s": sps,
            "examples_per_s": sps * p.cfg.train.batch_size,
            "rates": rates,
            "flops_per_example": p.flops_per_example,
        }
    out["_load"] = os.getloadavg()
    return out


# ----------------------------------------------------------------------------- table


def _fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def table(layer: str, norm: str = "raw") -> str:
    lines = [
        f"layer variant: {layer}, features: {norm}",
        "",
        "| arm | what changed | steps | wall (s) | train ex/s | valid lin | valid kNN "
        "| test lin | test kNN | RankMe (N, K) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = [p.parent.name for p in sorted(ROOT.glob("*/ablate.json"))]
    order = list(ARMS) + sorted(n for n in names if n.startswith("ref_"))
    for n in order:
        p = _arm_dir(n) / "ablate.json"
        if not p.is_file():
            continue
        d = json.loads(p.read_text())
        v = d["variants"].get(layer) or d["variants"]["last"]
        if norm not in v:
            continue
        s = v[norm]["suite"]
        tr = d.get("train") or {}
        if n in ARMS:
            desc = ARMS[n][0]
        elif n == "ref_logmel":
            desc = "log-mel mean+std baseline"
        else:
            desc = f"random init (seed {n.partition('-s')[2] or 0})"
        lines.append(
            f"| {n} | {desc} | {tr.get('steps', '-')} | {_fmt(tr.get('wall_s'), 0)} "
            f"| {_fmt(tr.get('examples_per_s'), 0)} | {_fmt(s['valid_linear'])} "
            f"| {_fmt(s['valid_knn'])} | {_fmt(s['test_linear'])} | {_fmt(s['test_knn'])} "
            f"| {v['rankme']:.1f} ({v['rankme_N']}, {v['rankme_K']}) |"
        )
    return "\n".join(lines)


def layer_choice(norm: str = "raw") -> str:
    """Mean VALID suite (linear, kNN) per layer variant over every evaluated row: the layer
    is chosen once, for every arm alike, on these numbers (test shown beside, not used)."""
    acc: dict[str, list] = {}
    for p in sorted(ROOT.glob("*/ablate.json")):
        d = json.loads(p.read_text())
        if d["n_layers"] < 2:
            continue
        for vname, v in d["variants"].items():
            if vname in ("last", "middle", "mean") and norm in v:
                s = v[norm]["suite"]
                acc.setdefault(vname, []).append(
                    (s["valid_linear"], s["valid_knn"], s["test_linear"], s["test_knn"])
                )
    lines = [
        f"features: {norm}",
        "",
        "| layer | rows | valid lin | valid kNN | valid mean | test lin | test kNN |",
        "|---|---|---|---|---|---|---|",
    ]
    for vname, rows in acc.items():
        m = np.mean(rows, 0)
        lines.append(
            f"| {vname} | {len(rows)} | {m[0]:.3f} | {m[1]:.3f} | {(m[0] + m[1]) / 2:.3f}"
            f" | {m[2]:.3f} | {m[3]:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["train", "eval", "run", "table", "list", "speed", "layers"])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--layer", default="last")
    ap.add_argument("--norm", default="raw", choices=["raw", "std"])
    ap.add_argument("--seconds", type=float, default=4.0, help="speed: seconds per cell")
    ap.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds")
    ap.add_argument("--std", action="store_true", help="standardised probes for every arm")
    a = ap.parse_args(argv)
    global STD_ALL
    STD_ALL = a.std
    if a.cmd == "list":
        for k, (d, o) in ARMS.items():
            print(f"{k:12s} {d}  {' '.join(o)}")
        return 0
    if a.cmd == "speed":
        res = speed(a.names or list(SPEED_CELLS), a.seconds, a.rounds)
        ROOT.mkdir(parents=True, exist_ok=True)
        (ROOT / "speed.json").write_text(json.dumps(res, indent=1))
        for c, r in res.items():
            if not c.startswith("_"):
                print(f"{c:20s} {r['steps_per_s']:6.1f} steps/s {r['examples_per_s']:6.0f} ex/s")
        print("load", res["_load"])
        return 0
    if a.cmd == "layers":
        print(layer_choice(a.norm))
        return 0
    if a.cmd == "table":
        print(table(a.layer, a.norm))
        return 0
    for n in a.names:
        if not n.startswith("ref:") and n not in ARMS:
            print(f"unknown arm {n}", file=sys.stderr)
            return 2
        if a.cmd in ("train", "run") and not n.startswith("ref:"):
            info = train(n)
            (_arm_dir(n)).mkdir(parents=True, exist_ok=True)
            (_arm_dir(n) / "train.json").write_text(json.dumps(info, indent=1))
        if a.cmd in ("eval", "run"):
            evaluate(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
