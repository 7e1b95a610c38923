"""One run's pipeline: pretrain → spectral metrics per checkpoint → probes → result.json.

``run_job(job, run_dir, ctx)`` is what an executor's worker calls. Every stage writes a
marker json into the run folder when it finishes, so a restarted run skips what is done:

```
RUN_DIR/done.json                       pretraining finished (written by the trainer)
RUN_DIR/eval/spectral/<checkpoint>.json RankMe & co. on the study pool at that checkpoint
RUN_DIR/eval/spectral_train.json        the same on crops of the run's own training data
RUN_DIR/eval/spectral_heldout.json      ... and on crops of its pool's heldout split
RUN_DIR/eval/heldout_ref.json           held-out loss at the reference mask and clip length
RUN_DIR/eval/spectral_gap.json          train slice vs eval pool RankMe at equal N
RUN_DIR/eval/probes.json                probe scores of the final checkpoint
RUN_DIR/result.json                     everything above, the record the store takes
RUN_DIR/error.json / error.log          the one-line reason and traceback of a failure
```

A corrupt artefact of the run folder (a checkpoint or the training state failing its
recorded sha256, a marker that does not parse) is discarded and its work redone
(``execute_repairing``); corrupt caches are rebuilt where they are read.

Choices (what is measured and how):
- The study's unlabeled eval pool (``EvalContext``, built once by the parent) is the
  pool's ``heldout`` split plus every task clip (labels unused), capped at
  ``eval.rankme_samples`` by a seeded subsample; every run and baseline is measured on
  exactly these clips, and the pool's name (with a hash of its file list) is stored with
  every value, N and K too.
- The final checkpoint's task-clip embeddings are extracted once per task and serve both
  the RankMe pool and the probes (on-disk embedding cache under the study's
  ``cache/embeddings``, so a restart between the two stages re-extracts nothing).
- ``rankme_train``: RankMe of the final checkpoint on crops of the run's own pretraining
  audio; ``rankme_heldout``: the same on crops of its pool's heldout split (never
  trained on). Both use the same N (at most the eval pool's N; fewer when the run's
  data or the heldout split hold fewer crops) and the same crop length (the eval
  pool's median clip: pool files can be 20-30 s long). ``rankme_gap`` (the results
  contract) compares the train slice with the eval pool at equal N: RankMe grows with N
  (for one fixed Gaussian, about 25 / 29 / 33 / 34 at N = 90 / 120 / 250 / 1,024), and a
  run's train slice can hold fewer crops than the pool has clips, so the larger of the
  two embedding matrices is subsampled (seeded: the first N of a permutation, kept in
  order) to the smaller N before both are measured (stage ``eval/spectral_gap.json``;
  ``rankme_gap_N`` is that N, ``rankme_gap_pool`` / ``rankme_gap_train`` the two
  values; at frame level N counts frames, and both sides get the same number of clips).
  It still contains the shift between pool audio and task clips; ``rankme_gap_heldout =
  rankme_train - rankme_heldout`` isolates train vs unseen audio of one distribution
  (two slices of one N by construction): the cleaner repetition / memorisation signal.
- ``pool_overlap``: whether any eval-pool file is also a pretraining file of the run
  (compared by resolved path; zip members by archive path + member). Computed, not
  assumed: it is false for the default pool only because the split is disjoint.
- ``heldout_loss`` (the column fits use) is the masked-patch loss of the final
  checkpoint on the trainer's held-out clips, scored at ONE reference mask ratio
  (``REF_MASK_RATIO`` = 0.75, the MAE default) and ONE reference clip length
  (``REF_CLIP_SECONDS`` = 2 s, cut to the patch width, capped at the model's longest
  input), with the trainer's fixed mask seeds: the same weights score differently at
  another mask ratio (one checkpoint: 0.391 / 0.384 / 0.412 at 0.5 / 0.75 / 0.9), so a
  run's own ratio would confound a law fitted across runs. ``heldout_loss_own`` is the
  trainer's done.json value, at the run's own mask ratio and clip length (what it
  optimised); ``heldout_mask_ratio`` and ``heldout_clip_frames`` name the reference.
- Epochs, tokens and hours seen come from the trainer's done.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audioscale.audio.frames import frames_for_seconds
from audioscale.config import RunConfig, config_hash
from audioscale.errors import AudioscaleError, ConfigError, CorruptArtefactError, storage_error
from audioscale.sweep.records import (
    EvalContextInfo,
    GapInfo,
    ProbeRow,
    ReferenceLoss,
    RunInfo,
    SliceInfo,
    SpectralMetrics,
    SpectralRow,
    SuiteSummary,
    TrainingInfo,
    check_keys,
)
from audioscale.sweep.spec import TRAINED_KINDS
from audioscale.utils import atomic_save_json, finite_or_none, verify

FINAL = "final"
REF_MASK_RATIO = 0.75
REF_CLIP_SECONDS = 2.0
TRAIN_SLICE = "train-slice"
HELDOUT_SLICE = "heldout-slice"


@dataclass
class EvalContext:
    """The study-wide evaluation setup, shared by every run (picklable)."""

    pool_name: str
    pool_rows: list[dict]  # the eval pool: heldout rows + task clips, capped at `samples`
    task_dirs: list[str]
    samples: int = 25600
    level: str = "clip"
    layer: int = -1
    centred: bool = False
    seed: int = 0
    protocols: list[str] = field(default_factory=lambda: ["linear", "knn"])
    probe_features: str = "standardised"  # probe.suite: standardised or raw
    cache_dir: str | None = None  # embedding (and log-mel) cache shared by the study's runs
    device: str = "auto"  # extraction device: the worker's GPU when it has one
    batch_size: int = 32
    suite_name: str = ""  # eval.suite: the suite file's name ("" without one)
    suite_weights: dict[str, float] = field(default_factory=dict)  # task name -> weight


# --------------------------------------------------------------------------- eval pool


def task_folders(entries: list[str]) -> list[str]:
    """Task folders from config entries: a folder with task.yaml, or a folder of them."""
    out: list[str] = []
    for e in entries:
        p = Path(e)
        if (p / "task.yaml").is_file():
            out.append(str(p))
        elif p.is_dir() and any(p.glob("*/task.yaml")):
            out += [str(q.parent) for q in sorted(p.glob("*/task.yaml"))]
        else:
            raise ConfigError("eval.tasks", f"{e} is not a task folder (no task.yaml)")
    return out


def build_eval_context(
    base: RunConfig,
    pool: str | None = None,
    split: str = "heldout",
    include_tasks: bool = True,
    cache_dir: str | Path | None = None,
) -> EvalContext:
    """The eval pool of a study: ``split`` rows of ``pool`` (default: base data.pool) plus
    all clips of the base config's tasks; seeded subsample when above the N cap."""
    from audioscale.data.manifest import load_pool, load_task
    from audioscale.data.suitefile import load_suite

    ev = base.eval
    pool_path = pool or ev.rankme_pool or base.data.pool
    if not Path(pool_path).exists():
        raise ConfigError("data.pool", f"{pool_path} not found (eval pool)")
    rows = [_plain(r) for r in load_pool(pool_path) if r.get("split") == split]
    tasks = task_folders(ev.tasks)
    suite = load_suite(ev.suite) if ev.suite else None
    if suite is not None:
        have = {Path(t).resolve() for t in tasks}  # eval.tasks' spelling kept, no task twice
        tasks += [t for t in dict.fromkeys(suite.task_dirs) if Path(t).resolve() not in have]
    if include_tasks:
        for t in tasks:
            rows += [_plain(r) | {"source": f"task:{Path(t).name}"} for r in load_task(t).rows]
    rows = list({r["path"]: r for r in rows}.values())  # one entry per file
    if not rows:
        raise ConfigError("data.pool", f"{pool_path}: the eval pool is empty")
    if len(rows) > ev.rankme_samples:
        keep = np.random.default_rng(ev.rankme_seed).choice(len(rows), ev.rankme_samples, False)
        rows = [rows[i] for i in sorted(keep)]
    name = Path(pool_path).name if Path(pool_path).is_dir() else Path(pool_path).parent.name
    tag = f"{name}-{split}" + ("+tasks" if include_tasks and tasks else "")
    return EvalContext(
        pool_name=f"{tag}-{config_hash([r['path'] for r in rows], 8)}",
        pool_rows=rows,
        task_dirs=tasks,
        samples=ev.rankme_samples,
        level=ev.rankme_level,
        layer=ev.rankme_layer,
        centred=ev.rankme_centred,
        seed=ev.rankme_seed,
        protocols=list(ev.protocols),
        probe_features=ev.probe_features,
        cache_dir=str(cache_dir) if cache_dir else None,
        suite_name=suite.name if suite else "",
        suite_weights=suite.weights_by_name() if suite else {},
    )


def _plain(row: dict) -> dict:
    keep = ("path", "duration", "source", "split", "max_seconds", "offset_seconds", "sha1")
    return {k: row[k] for k in keep if row.get(k) is not None}


def _file_key(path: str) -> str:
    archive, sep, member = str(path).partition("::")
    return os.path.realpath(archive) + sep + member


def pool_overlap(pool_rows: list[dict], train_rows: list[dict]) -> bool:
    seen = {_file_key(r["path"]) for r in train_rows}
    return any(_file_key(r["path"]) in seen for r in pool_rows)


def slice_seconds(pool_rows: list[dict], default: float) -> float:
    """Crop length of the train slice: the median clip duration of the eval pool, so that
    both RankMe values are measured on clips of the same typical length."""
    durations = [float(r["duration"]) for r in pool_rows if r.get("duration")]
    return float(np.median(durations)) if durations else default


def crops_of(rows: list[dict], crop: float) -> list[dict]:
    """Every file cut into consecutive crops of ``crop`` seconds, in path order (a file
    shorter than one crop is one crop; a subset's ``max_seconds`` truncation is kept)."""
    from audioscale.data.subsets import row_seconds

    out = []
    for r in sorted(rows, key=lambda r: str(r["path"])):
        secs = row_seconds(r) if r.get("duration") is not None else crop
        base = float(r.get("offset_seconds") or 0.0)
        for k in range(max(1, int(secs // crop))):
            out.append({"path": r["path"], "offset_seconds": base + k * crop,
                        "max_seconds": min(crop, secs)})  # fmt: skip
    return out


def _sample(items: list[dict], n: int, seed: int) -> list[dict]:
    if len(items) <= n:
        return items
    keep = np.random.default_rng(seed).choice(len(items), n, replace=False)
    return [items[i] for i in sorted(keep)]


def slices(cfg: RunConfig, ctx: EvalContext, n_cap: int) -> dict[str, list[dict]]:
    """Crops of the run's own training audio and of its pool's heldout split, the same
    number of each (at most ``n_cap``, the eval pool's N) and the same crop length (the
    eval pool's median clip), so the two RankMe values differ only by train vs unseen."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import heldout_rows, nested_subset

    pool = load_pool(cfg.data.pool)
    crop = slice_seconds(ctx.pool_rows, default=4.0)
    train = crops_of(nested_subset(pool, cfg.data.hours, cfg.data.subset_seed), crop)
    held = crops_of(heldout_rows(pool), crop)
    n = min(n_cap, len(train), len(held)) if held else min(n_cap, len(train))
    return {TRAIN_SLICE: _sample(train, n, ctx.seed), HELDOUT_SLICE: _sample(held, n, ctx.seed)}


def run_train_rows(cfg: RunConfig) -> list[dict]:
    """The files this run pretrains on (the nested subset of its pool's train split)."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import nested_subset

    return nested_subset(load_pool(cfg.data.pool), cfg.data.hours, cfg.data.subset_seed)


# --------------------------------------------------------------------------- measuring


def extract_rows(encoder: Any, rows: list[dict], ctx: EvalContext, level: str):
    """Embeddings of ``rows`` (an ``embed.extract.Extraction``: ``.emb`` of the good clips,
    ``.ok`` marks them), through the study's on-disk cache."""
    from audioscale.embed.extract import extract

    return extract(
        encoder, rows, layer=ctx.layer, level=level, cache_dir=ctx.cache_dir,
        batch_size=ctx.batch_size, device=ctx.device, progress=False,
    )  # fmt: skip


def spectral_row(z: np.ndarray, ctx: EvalContext, pool: str, **extra: Any) -> dict:
    from audioscale.metrics.spectral import spectrum_metrics

    res = spectrum_metrics(np.asarray(z, dtype=np.float64), centred=ctx.centred)
    return SpectralRow.build(
        pool=pool,
        level=ctx.level,
        layer=ctx.layer,
        centred=ctx.centred,
        n=int(res.n),
        k=int(res.k),
        route=res.route,
        rankme=float(res.rankme),
        alpha_req=finite_or_none(res.alpha_req),
        nesum=finite_or_none(res.nesum),
        stable_rank=finite_or_none(res.stable_rank),
        participation_ratio=finite_or_none(res.participation_ratio),
        **extra,
    )


def pool_matrix(encoder: Any, ctx: EvalContext, tasks: dict | None = None) -> np.ndarray:
    """Embeddings of the eval pool (clips that fail to decode are left out). At clip level
    the task clips are taken from ``tasks`` when given, so each clip is extracted once."""
    if ctx.level != "clip" or not tasks:
        return extract_rows(encoder, ctx.pool_rows, ctx, ctx.level).emb
    have: dict[str, np.ndarray] = {}
    for task, ex in tasks.values():
        full = ex.full()
        have |= {r["path"]: full[i] for i, r in enumerate(task.rows) if ex.ok[i]}
    other = [r for r in ctx.pool_rows if r["path"] not in have]
    if other:
        ex = extract_rows(encoder, other, ctx, "clip")
        full = ex.full()
        have |= {r["path"]: full[i] for i, r in enumerate(other) if ex.ok[i]}
    return np.stack([have[r["path"]] for r in ctx.pool_rows if r["path"] in have])


def task_embeddings(encoder: Any, ctx: EvalContext) -> dict[str, tuple[Any, Any]]:
    """Per task: (Task, Extraction of all its rows at clip level), cached on disk."""
    from audioscale.data.manifest import load_task

    out = {}
    for d in ctx.task_dirs:
        task = load_task(d)
        out[task.name] = (task, extract_rows(encoder, task.rows, ctx, "clip"))
    return out


def probe_rows(name: str, tasks: dict[str, tuple[Any, Any]], ctx: EvalContext):
    """Probe every task from its embeddings; returns (probe rows, suite columns)."""
    from audioscale.probe.suite import evaluate_embeddings

    pairs = list(tasks.values())
    res = evaluate_embeddings(
        name, [t for t, _ in pairs], [ex.emb for _, ex in pairs], [ex.ok for _, ex in pairs],
        protocols=ctx.protocols, features=ctx.probe_features,
    )  # fmt: skip
    res.suite_name, res.weights = ctx.suite_name, dict(ctx.suite_weights)
    rows = []
    for task_name, by_proto in res.tasks.items():
        for proto, r in by_proto.items():
            rows.append(ProbeRow(
                task=task_name, protocol=proto, metric=r.get("metric"),
                score=finite_or_none(r.get("score")), n_test=r.get("n_test"),
                domain=res.domains_of.get(task_name), settings=r.get("settings", {}),
            ).to_dict())  # fmt: skip
    flat = {k: finite_or_none(v) for k, v in res.flat().items() if not k.startswith("task.")}
    flat.update(suite_name=res.suite_name or None, suite_weights=res.weights_label())
    return rows, SuiteSummary.build(**flat)


# --------------------------------------------------------------------------- stages


def _load(path: Path) -> Any:
    """A json file of the run folder; one that does not parse is a CorruptArtefactError."""
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CorruptArtefactError(path, f"not valid JSON ({e})") from None


def _marker(path: Path) -> Any | None:
    """A stage marker (or result.json), or None when absent or corrupt (a corrupt one
    is deleted: its stage runs again)."""
    if not path.is_file():
        return None
    try:
        return _load(path)
    except CorruptArtefactError as e:
        print(f"audioscale: {e.path}: {e.reason}; redoing that stage", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def _stage(path: Path, fn, *args: Any) -> Any:
    """Run ``fn`` unless its marker json exists; store its result with its wall time."""
    if (marker := _marker(path)) is not None:
        return marker
    t0 = time.time()
    out = fn(*args)
    out = {"value": out, "wall_s": time.time() - t0}
    atomic_save_json(path, out)
    return out


def checkpoints(run_dir: Path) -> list[dict]:
    """Stored checkpoints (name, step, fraction, loss = the sidecar's ``loss_window``,
    heldout_loss), by step, the final one last."""
    from audioscale.train.checkpoint import list_checkpoints, read_sidecar

    out = []
    for step, fraction, path in list_checkpoints(run_dir):
        meta = read_sidecar(path)
        # the windowed mean (folders written before loss_window had a one-column "loss")
        loss, held = meta.get("loss_window", meta.get("loss")), meta.get("heldout_loss")
        out.append({"name": path.stem, "step": step, "fraction": fraction, "loss": loss,
                    "heldout_loss": held})  # fmt: skip
    return out


def measure_checkpoint(run_dir: Path, c: dict, ctx: EvalContext, tasks: dict | None) -> dict:
    from audioscale.embed.ours import RunEncoder

    encoder = RunEncoder(run_dir, checkpoint=FINAL if c["name"] == FINAL else c["step"])
    return measure_encoder(encoder, ctx, tasks if c["name"] == FINAL else None)


def measure_encoder(encoder: Any, ctx: EvalContext, tasks: dict | None = None) -> dict:
    if ctx.level == "frame":
        return streamed_row(encoder, ctx.pool_rows, ctx, ctx.pool_name)
    return spectral_row(pool_matrix(encoder, ctx, tasks), ctx, ctx.pool_name)


def streamed_row(encoder: Any, rows: list[dict], ctx: EvalContext, pool: str) -> dict:
    """Frame-level metrics of ``rows`` streamed through the Gram accumulator
    (``metrics.measure``): memory O(K²) however many frames; ``n`` counts frames."""
    from audioscale.metrics.measure import measure

    m = measure(
        encoder, rows, samples=None, level="frame", layer=ctx.layer, centred=ctx.centred,
        pool_name=pool, device=ctx.device, batch_size=ctx.batch_size,
    )  # fmt: skip
    return SpectralRow.build(
        pool=pool, level="frame", layer=ctx.layer, centred=ctx.centred,
        n=int(m["n"]), k=int(m["k"]), route=m["route"],
        **{k: finite_or_none(m.get(k)) for k in SpectralMetrics.names()},
    )  # fmt: skip


def execute_run(cfg: RunConfig, run_dir: str | Path, ctx: EvalContext, progress: bool = False):
    """Pretrain (resuming), measure every checkpoint, probe the final one; return the result
    dict that ``Store.record`` takes (``run_id`` is filled in by ``run_job``)."""
    from audioscale.embed.ours import RunEncoder
    from audioscale.train import tblog
    from audioscale.train.trainer import pretrain

    run_dir = Path(run_dir)
    if not (run_dir / "done.json").is_file():
        pretrain(cfg, run_dir, progress=progress, resume=True)
    done = _load(run_dir / "done.json")
    card = _load(run_dir / "model_card.json")
    walls = [float(done.get("wall_s") or 0.0)]
    spectral, tasks = [], None
    for c in checkpoints(run_dir):
        is_final = c["name"] == FINAL
        marker = run_dir / "eval" / "spectral" / f"{c['name']}.json"
        if is_final and ctx.task_dirs and _marker(marker) is None:
            tasks = task_embeddings(RunEncoder(run_dir, checkpoint=FINAL), ctx)
        out = _stage(marker, measure_checkpoint, run_dir, c, ctx, tasks)
        walls.append(out["wall_s"])
        spectral.append(out["value"] | {
            "checkpoint": c["name"], "step": c["step"], "fraction": c["fraction"],
            "is_final": is_final, "loss": c["loss"],
        })  # fmt: skip
    final = next((s for s in spectral if s["is_final"]), None)
    if final is None:
        raise AudioscaleError(f"{run_dir}: pretraining left no final checkpoint")
    held = {c["step"]: c["heldout_loss"] for c in checkpoints(run_dir)}
    tblog.checkpoint_curves(run_dir, [s | {"heldout_loss": held.get(s["step"])} for s in spectral])
    rows = run_train_rows(cfg)
    extra = {k: final[k] for k in ("checkpoint", "step", "fraction", "is_final", "loss")}
    sl = {}
    for which, marker in ((TRAIN_SLICE, "spectral_train.json"),
                          (HELDOUT_SLICE, "spectral_heldout.json")):  # fmt: skip
        # at most as many clips as the eval pool measured (final["n"] counts frames at frame level)
        n_clips = final["n"] if ctx.level == "clip" else len(ctx.pool_rows)
        out = _stage(run_dir / "eval" / marker, slice_metrics, run_dir, cfg, n_clips, ctx, which)
        walls.append(out["wall_s"])
        sl[which] = out["value"] or {}
        if out["value"]:
            spectral.append(out["value"] | extra)
    probes, suite = [], {}
    if ctx.task_dirs:
        marker = run_dir / "eval" / "probes.json"
        if tasks is None and _marker(marker) is None:
            tasks = task_embeddings(RunEncoder(run_dir, checkpoint=FINAL), ctx)
        pr = _stage(marker, probe_rows, cfg.name, tasks, ctx)
        walls.append(pr["wall_s"])
        probes, suite = pr["value"]
    info = trained_info(cfg, done, card, rows, ctx) | suite
    ref = _stage(run_dir / "eval" / "heldout_ref.json", reference_heldout_loss, run_dir, ctx)
    walls.append(ref["wall_s"])
    info |= ref["value"]
    tr, held = sl[TRAIN_SLICE], sl[HELDOUT_SLICE]
    info |= SliceInfo.build(rankme_train=tr.get("rankme"), rankme_train_N=tr.get("n"),
                            rankme_heldout=held.get("rankme"))  # fmt: skip
    if tr and held:
        info["rankme_gap_heldout"] = tr["rankme"] - held["rankme"]
    if tr:
        marker = run_dir / "eval" / "spectral_gap.json"
        if tasks is None and ctx.task_dirs and ctx.level == "clip" and _marker(marker) is None:
            tasks = task_embeddings(RunEncoder(run_dir, checkpoint=FINAL), ctx)
        n_clips = final["n"] if ctx.level == "clip" else len(ctx.pool_rows)
        gap = _stage(marker, gap_metrics, run_dir, cfg, n_clips, ctx, tasks)
        walls.append(gap["wall_s"])
        info |= gap["value"] or {}
    info["wall_s"] = float(sum(walls))
    check_keys(RunInfo, info, f"{run_dir} info")
    return {
        "run_id": None,
        "kind": "trained",
        "info": info,
        "train_metrics": read_jsonl(run_dir / "metrics.jsonl"),
        "spectral": spectral,
        "probes": probes,
    }


def slice_metrics(run_dir: Path, cfg: RunConfig, n_cap: int, ctx: EvalContext, which: str):
    """Spectral metrics of the final checkpoint on one of ``slices`` (None when empty)."""
    from audioscale.embed.ours import RunEncoder

    rows = slices(cfg, ctx, n_cap)[which]
    if not rows:
        return None
    encoder = RunEncoder(run_dir, checkpoint=FINAL)
    if ctx.level == "frame":
        return streamed_row(encoder, rows, ctx, which)
    return spectral_row(extract_rows(encoder, rows, ctx, ctx.level).emb, ctx, which)


def reference_frames(model: Any, fe: Any, seconds: float = REF_CLIP_SECONDS) -> int:
    """Mel frames of the reference clip for ``model`` (an MAE) and frontend ``fe``:
    ``seconds`` as the trainer counts them (``1 + samples // hop``), cut to the patch
    width, capped at the longest input the model takes."""
    w = model.geom.patch_w
    frames = frames_for_seconds(seconds, fe)
    return max(w, (min(frames, model.encoder.max_frames) // w) * w)


def reference_heldout_loss(run_dir: Path, ctx: EvalContext) -> dict:
    """Masked-patch loss of the final checkpoint on the trainer's held-out files, at
    ``REF_MASK_RATIO`` and ``reference_frames`` (fp32, CPU generators seeded as the
    trainer seeds them): comparable across runs of any mask ratio and clip length."""
    import torch

    from audioscale.data.corpus import fixed_clips
    from audioscale.data.featcache import FeatureCache
    from audioscale.train.checkpoint import load_mae
    from audioscale.train.trainer import EVAL_BATCH, EVAL_MASK_SEED, HELDOUT_CLIPS, select_rows
    from audioscale.utils import resolve_device

    device = torch.device(resolve_device(ctx.device))
    model, cfg = load_mae(run_dir, FINAL, device)
    fe = cfg.frontend
    frames = reference_frames(model, fe)
    out = ReferenceLoss.build(
        heldout_loss=None,
        heldout_mask_ratio=REF_MASK_RATIO,
        heldout_clip_frames=frames,
        heldout_clip_seconds=frames * fe.hop_length / fe.sample_rate,
    )
    _, held = select_rows(cfg)
    if not held:
        return out
    cache = FeatureCache.build(held, cfg.frontend, cfg.data.cache_dir, progress=False)
    if cache.n_items == 0:
        return out
    clips = fixed_clips(cache, frames, HELDOUT_CLIPS)
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(clips), EVAL_BATCH):
            g = torch.Generator().manual_seed(EVAL_MASK_SEED + i)
            x = clips[i : i + EVAL_BATCH].to(device)
            total += float(model(x, mask_ratio=REF_MASK_RATIO, generator=g).loss) * len(x)
    out["heldout_loss"] = total / len(clips)
    out["heldout_clips"] = len(clips)
    return out


def subsample_rows(z: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The first ``n`` rows of a seeded permutation, kept in their original order (nested
    in ``n``); all of ``z`` when it has at most ``n`` rows."""
    if len(z) <= n:
        return z
    keep = np.sort(np.random.default_rng(seed).permutation(len(z))[:n])
    return z[keep]


def gap_metrics(run_dir: Path, cfg: RunConfig, n_cap: int, ctx: EvalContext, tasks):
    """``rankme_gap`` at equal N: RankMe of the train slice and of the eval pool, the
    larger side subsampled (``subsample_rows``, seed ``ctx.seed``) to the smaller N.
    Frame level: the same number of clips on both sides (N counts frames). None when the
    train slice is empty."""
    from audioscale.embed.ours import RunEncoder

    rows = slices(cfg, ctx, n_cap)[TRAIN_SLICE]
    if not rows:
        return None
    encoder = RunEncoder(run_dir, checkpoint=FINAL)
    if ctx.level == "frame":
        k = min(len(rows), len(ctx.pool_rows))
        tr = streamed_row(encoder, _sample(rows, k, ctx.seed), ctx, TRAIN_SLICE)
        po = streamed_row(encoder, _sample(ctx.pool_rows, k, ctx.seed), ctx, ctx.pool_name)
        n_used, clips = None, k
    else:
        zt = extract_rows(encoder, rows, ctx, "clip").emb
        zp = pool_matrix(encoder, ctx, tasks)
        n_used = clips = min(len(zt), len(zp))
        tr = spectral_row(subsample_rows(zt, n_used, ctx.seed), ctx, TRAIN_SLICE)
        po = spectral_row(subsample_rows(zp, n_used, ctx.seed), ctx, ctx.pool_name)
    return GapInfo(
        rankme_gap=tr["rankme"] - po["rankme"],
        rankme_gap_N=tr["n"] if n_used is None else n_used,
        rankme_gap_N_pool=po["n"],
        rankme_gap_clips=clips,
        rankme_gap_train=tr["rankme"],
        rankme_gap_pool=po["rankme"],
    ).to_dict()


def trained_info(cfg: RunConfig, done: dict, card: dict, rows: list[dict], ctx: EvalContext):
    """A trained run's ``records.TrainingInfo`` (from its model card and done.json) and
    the study's ``EvalContextInfo``."""
    model = card.get("model", {})
    params = card.get("params", {})
    info = TrainingInfo(
        **{k: model.get(k) for k in ("family", "preset", "width", "depth", "heads", "patch",
                                     "mask_ratio")},
        params=params.get("encoder"),
        params_nonembed=params.get("encoder_nonembed"),
        params_total=params.get("total"),
        flops_per_example=card.get("flops_per_example"),
        train_flops=done.get("flops"),
        steps=done.get("steps"),
        batch_size=done.get("batch_size"),
        lr=done.get("lr", card.get("lr")),
        clip_seconds=card.get("clip_seconds"),
        examples_seen=done.get("examples"),
        tokens_seen=done.get("tokens"),
        hours_seen=done.get("hours_seen"),
        data_hours=done.get("data_hours"),
        data_files=len(rows),
        epochs=done.get("epochs"),
        final_loss=done.get("final_loss"),
        heldout_loss_own=done.get("heldout_loss"),  # the run's own mask and clip length
        pool_overlap=pool_overlap(ctx.pool_rows, rows),
    )  # fmt: skip
    return info.to_dict() | context_info(ctx)


def context_info(ctx: EvalContext) -> dict:
    return EvalContextInfo(
        rankme_pool=ctx.pool_name,
        rankme_level=ctx.level,
        rankme_layer=ctx.layer,
        rankme_centred=ctx.centred,
    ).to_dict()


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the trainer rewrites on resume
            continue
    return out


def external_encoder(spec: str) -> tuple[Any, dict]:
    """A pretrained reference encoder (checked by the encoder checker) and its info."""
    from audioscale.embed.checker import assert_ok
    from audioscale.embed.registry import get_encoder

    encoder = get_encoder(spec)
    assert_ok(encoder)
    params = sum(p.numel() for v in vars(encoder).values() if hasattr(v, "parameters")
                 for p in v.parameters())  # fmt: skip
    info = RunInfo.build(family=spec, preset=None, params=params, params_nonembed=params,
                         encoder_identity=encoder.identity())  # fmt: skip
    return encoder, info


def execute_baseline(job: Any, run_dir: str | Path, ctx: EvalContext) -> dict:
    """Random-init encoder, log-mel statistics or an external pretrained encoder: measured
    and probed like a final checkpoint (no training, so no intermediate checkpoints and no
    train slice)."""
    cfg = job.config
    t0 = time.time()
    if job.kind == "external":
        # its own last layer: the study's eval.rankme_layer indexes our blocks, not its own
        ctx = replace(ctx, layer=-1)
        encoder, info = external_encoder(job.encoder)
    elif job.kind == "random-init":
        from audioscale.embed.ours import RandomInitEncoder
        from audioscale.models.ladder import resolve

        encoder = RandomInitEncoder(cfg.model, cfg.frontend, seed=cfg.train.seed)
        model = resolve(cfg.model).model_dump(mode="json")
        info = TrainingInfo.build(
            **{k: model.get(k) for k in ("family", "preset", "width", "depth", "heads", "patch")},
            **encoder_params(cfg), steps=0, examples_seen=0, hours_seen=0.0, train_flops=0.0,
            epochs=0.0,
        )  # fmt: skip
    else:
        from audioscale.embed.baselines import LogMelStats, reference_rows

        ref = reference_rows(cfg.data.pool, slice_seconds(ctx.pool_rows, 4.0), ctx.seed)
        encoder = LogMelStats.standardised_on(
            ref, cfg.frontend, name="pool train split", cache_dir=ctx.cache_dir,
            batch_size=ctx.batch_size, device=ctx.device,
        )  # fmt: skip
        info = RunInfo.build(
            family="logmel-stats", preset=None, params=0, params_nonembed=0,
            standardised_on=f"{len(ref)} crops of the pool's train split",
        )  # fmt: skip
    tasks = task_embeddings(encoder, ctx) if ctx.task_dirs else None
    row = measure_encoder(encoder, ctx, tasks) | {
        "checkpoint": FINAL, "step": 0, "fraction": 1.0, "is_final": True, "loss": None,
    }  # fmt: skip
    probes, suite = probe_rows(cfg.name, tasks, ctx) if tasks else ([], {})
    info |= suite | context_info(ctx) | {"pool_overlap": False, "wall_s": time.time() - t0}
    check_keys(RunInfo, info, f"{job.run_id} info")
    return {"run_id": job.run_id, "kind": job.kind, "info": info, "train_metrics": [],
            "spectral": [row], "probes": probes}  # fmt: skip


def encoder_params(cfg: RunConfig) -> dict:
    """Parameter counts of the architecture (as the trainer's model card counts them)."""
    from audioscale.models.accounting import count_params
    from audioscale.models.mae import build_mae

    p = count_params(build_mae(cfg.model, cfg.frontend))
    return {"params": p.get("encoder"), "params_nonembed": p.get("encoder_nonembed"),
            "params_total": p.get("total")}  # fmt: skip


# --------------------------------------------------------------------------- the job


def one_line(e: BaseException) -> str:
    msg = str(e) if isinstance(e, AudioscaleError) else f"{type(e).__name__}: {e}"
    return " ".join(msg.split())[:500]


# 2: equal-N RankMe gap, held-out loss at the reference mask, standardised log-mel baseline
# 3: probe features (eval.probe_features) in the key, standardised by default
EVAL_VERSION = 3


def eval_key(ctx: EvalContext) -> str:
    """What a run's evaluation depends on besides its weights: the pool (its name hashes its
    file list), the RankMe options and the probe setup. A run evaluated under another key
    (the pool's manifest or the task folders changed since) is stale and is evaluated again.

    This is the study-level half of a run's identity: ``RunConfig.run_hash`` leaves every
    ``eval.*`` key out, and each one reaches this key: ``tasks`` (folders, and their clips
    through the pool name), ``rankme_pool``, ``rankme_samples`` and ``rankme_seed`` (the
    pool's file list), ``rankme_level / layer / centred``, ``rankme_seed`` (again),
    ``protocols`` and ``probe_features``; so do the study's ``eval_pool / eval_split /
    eval_include_tasks``. A change re-evaluates finished runs from their checkpoints and
    never retrains them.
    Execution settings of the evaluation (cache folder, device, batch size) are not in it.
    ``EVAL_VERSION`` is in it too: bump it when the evaluation code changes what it
    measures, so that finished studies are re-evaluated (never retrained)."""
    return config_hash(
        {"version": EVAL_VERSION, "pool": ctx.pool_name, "level": ctx.level,
         "layer": ctx.layer, "centred": ctx.centred, "seed": ctx.seed,
         "tasks": list(ctx.task_dirs), "protocols": list(ctx.protocols),
         "probe_features": ctx.probe_features}
        | ({"suite": [ctx.suite_name, ctx.suite_weights]} if ctx.suite_weights else {}),
        16,
    )  # fmt: skip


def is_current(result: dict, ctx: EvalContext) -> bool:
    """Whether a finished result was evaluated under ``ctx`` (results written before
    ``eval_key`` existed are compared by their pool name, when they name one)."""
    if result.get("eval_key") is not None:
        return result["eval_key"] == eval_key(ctx)
    pool = (result.get("info") or {}).get("rankme_pool")
    return pool is None or pool == ctx.pool_name


def stale_runs(run_ids: list[str], runs_dir: str | Path, ctx: EvalContext) -> list[str]:
    """Those of ``run_ids`` whose run folder holds a result evaluated under another
    ``eval_key`` than ``ctx``'s."""
    out = []
    for rid in run_ids:
        result = _marker(Path(runs_dir) / rid / "result.json")
        if result is not None and not is_current(result, ctx):
            out.append(rid)
    return out


REPAIRS = 2  # corrupt artefacts of one run redone before it counts as failed


def execute_repairing(job: Any, run_dir: Path, ctx: EvalContext, progress: bool) -> dict:
    """``execute_run`` / ``execute_baseline``; a corrupt artefact of the run folder (a
    checkpoint, the training state, a stage marker) is discarded and its work redone
    (``checkpoint.discard_corrupt``: retrained from the last good state), up to
    ``REPAIRS`` times, instead of failing the run for good."""
    for attempt in range(REPAIRS + 1):
        try:
            if job.kind in TRAINED_KINDS:
                return execute_run(job.config, run_dir, ctx, progress=progress)
            return execute_baseline(job, run_dir, ctx)
        except CorruptArtefactError as e:
            if attempt == REPAIRS or not Path(e.path).is_relative_to(run_dir):
                raise
            from audioscale.train.checkpoint import discard_corrupt

            print(f"audioscale: {e.path}: {e.reason}; redoing its work", file=sys.stderr)
            discard_corrupt(run_dir, e.path)
    raise AssertionError("unreachable")


def write_error(run_dir: Path, e: BaseException) -> None:
    """error.json (the one-line reason) and error.log (the traceback) of a failed run;
    best effort: on a full disk the reason still reaches the sweep through its worker."""
    try:
        atomic_save_json(run_dir / "error.json", {"error": one_line(e), "time": time.time()})
        (run_dir / "error.log").write_text(traceback.format_exc())
    except OSError:
        pass


def corrupt_finals(run_ids: list[str], runs_dir: str | Path) -> list[str]:
    """Those of ``run_ids`` (done runs) whose final checkpoint fails the size and sha256
    its sidecar recorded. Each is named on stderr and its result.json dropped and the
    checkpoint discarded (``checkpoint.discard_corrupt``), so that the run, pending
    again, writes the checkpoint again from its training state (the same weights) and
    keeps its evaluation markers. Torch is imported only when one is found."""
    out = []
    for rid in run_ids:
        run_dir = Path(runs_dir) / rid
        path = run_dir / "checkpoints" / f"{FINAL}.safetensors"
        try:
            expected = json.loads(path.with_suffix(".json").read_text()).get("weights")
            verify(path, expected, "checkpoint")
        except (OSError, ValueError):
            continue  # no sidecar (a baseline, a hand-made folder): nothing to check
        except CorruptArtefactError as e:
            from audioscale.train.checkpoint import discard_corrupt

            print(f"audioscale: {e.path}: {e.reason}; writing it again", file=sys.stderr)
            discard_corrupt(run_dir, path)
            (run_dir / "result.json").unlink(missing_ok=True)
            out.append(rid)
    return out


def run_job(job: Any, run_dir: str | Path, ctx: EvalContext, progress: bool = False) -> dict:
    """Execute one job (or return its finished result.json); writes result.json, and on a
    failure error.json + error.log before re-raising. Evaluation markers written under
    another ``eval_key`` are dropped first (pretraining is kept)."""
    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    key = eval_key(ctx)
    if (result := _marker(result_path)) is not None:
        if result.get("run_id") == job.run_id and is_current(result, ctx):
            return result
        if not is_current(result, ctx):
            result_path.unlink()
            shutil.rmtree(run_dir / "eval", ignore_errors=True)
    key_path = run_dir / "eval" / "key.json"
    if (old := _marker(key_path)) is not None and old.get("eval_key") != key:
        shutil.rmtree(run_dir / "eval", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)
    if job.kind in TRAINED_KINDS:
        atomic_save_json(key_path, {"eval_key": key})
    try:
        result = execute_repairing(job, run_dir, ctx, progress)
    except BaseException as e:
        write_error(run_dir, e)
        fault = storage_error(e, str(run_dir))  # a write that named no file: the run's
        if fault is not None and fault is not e:
            raise fault from e
        raise
    result["run_id"] = job.run_id
    result["kind"] = job.kind
    result["eval_key"] = key
    atomic_save_json(result_path, result)
    return result
