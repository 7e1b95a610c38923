"""MAE pretraining: one run folder per call of :func:`pretrain`.

Run folder (docs/ARCHITECTURE.md)::

    config.yaml        the RunConfig with the model resolved (ladder.resolve)
    model_card.json    params, FLOPs/example, tokens/example, resolved model, lr rule, budget
    metrics.jsonl      one line every ``log_every`` steps (and at the last step)
    checkpoints/       step_XXXXXX.safetensors at the geometric fractions, final.safetensors
    train_state.pt     resume state (weights_only loadable)
    done.json          the final summary; its presence makes pretrain() a no-op

Choices, each deliberate:

- Budget: ``train.examples`` → ``ceil(examples / batch)`` steps; ``train.hours`` of audio
  seen → ``ceil(hours * 3600 / clip_seconds / batch)``; ``train.flops`` →
  ``ceil(flops / (train_flops_per_example * batch))`` (models.accounting); else
  ``train.steps``.
- Clips: ``clip_frames`` = the frames of ``data.clip_seconds`` (``1 + samples // hop``) cut
  to a multiple of the patch width, as accounting counts tokens; ``clip_seconds`` in the
  logs is ``clip_frames * hop / sr`` (2.0 for 2 s).
- Optimiser: AdamW (fused on CUDA), betas and weight decay from the config; no decay on
  biases, norms and mask tokens (1-D parameters and ``mask_token``), as MAE. Peak lr from
  ``recipe.lr_for``, warm-up from ``recipe.warmup_steps``, cosine decay (schedule.py);
  gradient-norm clipping at ``grad_clip``.
- Precision: ``auto`` is bf16 autocast on CUDA and fp32 on CPU; ``bf16`` on CPU uses CPU
  autocast. The loss is computed in fp32 by the model. TF32 matmuls are allowed on CUDA.
- Determinism: python, numpy and torch are seeded from ``train.seed`` before the model is
  built. The batch of step ``k`` is a function of ``(seed, k)`` (corpus.ClipDataset) and
  so is the mask (a torch.Generator seeded from ``(seed, k)``), so a resumed run sees
  exactly the data and masks of the uninterrupted one. With DDP on CPU each rank advances
  its generator past the lower ranks' draws and so masks exactly as one process would; on
  CUDA ranks seed from ``(seed, k, rank)`` (same distribution, not the same draw).
- Logged ``loss`` is the mean training loss over the steps since the previous log line;
  ``tokens`` counts all patches of the clips seen (masked and visible); ``flops`` is
  examples × train_flops_per_example; ``hours_seen`` = examples × clip_seconds / 3600;
  ``epochs`` = examples × clip_seconds / seconds of training audio (repetition).
- Checkpoints at ``round(f * steps)`` for each ``train.checkpoint_fractions`` ``f``
  (deduplicated, at least step 1, below the last step) and at the end. Each writes
  ``train_state.pt``; so does the first log line after every ``train.state_every_s`` seconds.
- Held-out loss: the masked-patch loss on ``corpus.fixed_clips`` of the pool's heldout
  split (at most ``HELDOUT_FILES`` files, chosen by a fixed permutation, up to
  ``HELDOUT_CLIPS`` clips), with a CPU generator seeded ``EVAL_MASK_SEED`` per batch, fp32:
  the same clips and masks for every run of a study on any device. Measured at every
  checkpoint (sidecar) and at the end (done.json).
- Data: the feature caches of the training subset and of the held-out files are built
  (or found) before training, decoding on ``max(1, data.num_workers)`` threads; batches
  come from ``corpus.ClipDataset`` through ``corpus.make_loader`` with
  ``data.num_workers`` processes and pinned memory on CUDA.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from audioscale.config import RunConfig, dump_yaml, load_config
from audioscale.data.corpus import ClipDataset, fixed_clips, make_loader
from audioscale.data.featcache import FeatureCache
from audioscale.errors import ConfigError, DataError
from audioscale.train import checkpoint as ckpt
from audioscale.train import ddp, recipe
from audioscale.train.schedule import Schedule
from audioscale.utils import atomic_save_json, atomic_write_text, progress_bar, resolve_device

HELDOUT_FILES = 256
HELDOUT_CLIPS = 256
EVAL_MASK_SEED = 1234
EVAL_BATCH = 64
# Keys that may differ between the run that started a folder and the one resuming it.
EXECUTION_KEYS = {
    "name": True,
    "data": {"cache_dir", "num_workers"},
    "train": {"device", "threads", "compile", "log_every", "state_every_s"},
}


@dataclass
class TrainResult:
    run_dir: str
    steps: int
    examples: int
    tokens: int
    hours_seen: float
    epochs: float
    data_hours: float
    flops: float
    final_loss: float
    heldout_loss: float | None
    wall_s: float
    params: dict = field(default_factory=dict)
    lr: float = 0.0
    batch_size: int = 0
    skipped_files: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """Everything decided from the config alone, before touching data."""

    cfg: RunConfig  # model resolved
    clip_frames: int
    clip_seconds: float
    tokens_per_example: int
    visible_per_example: int
    flops_per_example: float
    steps: int
    budget: dict
    lr: float
    warmup: int
    checkpoint_steps: list[int]


# ----------------------------------------------------------------------------- planning


def budget_steps(cfg: RunConfig, clip_seconds: float, flops_per_example: float) -> tuple[int, dict]:
    """Steps for the run's budget, and the budget as given."""
    t = cfg.train
    b = t.batch_size
    if t.examples is not None:
        return max(1, math.ceil(t.examples / b)), {"kind": "examples", "value": t.examples}
    if t.hours is not None:
        steps = math.ceil(t.hours * 3600.0 / clip_seconds / b)
        return max(1, steps), {"kind": "hours", "value": t.hours}
    if t.flops is not None:
        steps = math.ceil(t.flops / (flops_per_example * b))
        return max(1, steps), {"kind": "flops", "value": t.flops}
    return t.steps, {"kind": "steps", "value": t.steps}


def checkpoint_steps(fractions: list[float], steps: int) -> list[int]:
    """``round(f * steps)`` per fraction, at least 1, below ``steps``, deduplicated."""
    picked = {max(1, round(f * steps)) for f in fractions}
    return sorted(s for s in picked if s < steps)


def plan(cfg: RunConfig) -> Plan:
    """Resolve the model and the budget; raises ConfigError before any work."""
    from audioscale.models import accounting
    from audioscale.models.ladder import resolve
    from audioscale.models.patch import geometry

    model_cfg = resolve(cfg.model)
    cfg = cfg.model_copy(update={"model": model_cfg})
    try:
        torch.device(resolve_device(cfg.train.device))
    except RuntimeError:
        raise ConfigError(
            "train.device", f"{cfg.train.device!r} is not auto, cpu, cuda or cuda:N"
        ) from None
    fe = cfg.frontend
    g = geometry(model_cfg.patch, fe.n_mels)
    frames = 1 + round(cfg.data.clip_seconds * fe.sample_rate) // fe.hop_length
    clip_frames = (frames // g.patch_w) * g.patch_w
    if clip_frames == 0:
        raise ConfigError(
            "data.clip_seconds", f"{cfg.data.clip_seconds} s is shorter than one patch"
        )
    max_frames = 1 + round(model_cfg.max_seconds * fe.sample_rate) // fe.hop_length
    if clip_frames > max_frames:
        raise ConfigError(
            "data.clip_seconds",
            f"{cfg.data.clip_seconds} s is longer than model.max_seconds={model_cfg.max_seconds}",
        )
    clip_seconds = clip_frames * fe.hop_length / fe.sample_rate
    n_tok, n_vis = accounting.tokens_per_example(model_cfg, fe, cfg.data.clip_seconds)
    fpe = accounting.train_flops_per_example(model_cfg, fe, cfg.data.clip_seconds)
    steps, budget = budget_steps(cfg, clip_seconds, fpe)
    return Plan(
        cfg=cfg,
        clip_frames=clip_frames,
        clip_seconds=clip_seconds,
        tokens_per_example=n_tok,
        visible_per_example=n_vis,
        flops_per_example=fpe,
        steps=steps,
        budget=budget,
        lr=recipe.lr_for(model_cfg, cfg.train),
        warmup=recipe.warmup_steps(cfg.train, steps),
        checkpoint_steps=checkpoint_steps(cfg.train.checkpoint_fractions, steps),
    )


# ----------------------------------------------------------------------------- helpers


def _comparable(cfg: RunConfig) -> dict:
    d = cfg.model_dump(mode="json")
    d.pop("name", None)
    for section in ("data", "train"):
        for k in EXECUTION_KEYS[section]:
            d[section].pop(k, None)
    return d


def _check_same_run(out: Path, cfg: RunConfig) -> None:
    path = out / "config.yaml"
    if not path.is_file():
        return
    try:
        old = load_config(path)
    except Exception:
        return
    if _comparable(old) != _comparable(cfg):
        raise ConfigError(
            "out", f"{out} holds a run with a different config; pass --no-resume or another folder"
        )


def _clear_run(out: Path) -> None:
    for name in ("done.json", "train_state.pt", "metrics.jsonl", "model_card.json", "config.yaml"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ckpt.CKPT_DIR, ignore_errors=True)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mix(*ints: int) -> int:
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0] >> 1)


def mask_generator(
    seed: int, step: int, device: torch.device, info: ddp.DistInfo, local_batch: int, n_tokens: int
) -> torch.Generator:
    """The mask generator of ``step`` on this rank (see module docstring)."""
    g = torch.Generator(device=device)
    if device.type == "cuda":
        g.manual_seed(_mix(seed, step, info.rank, 1))
        return g
    g.manual_seed(_mix(seed, step, 1))
    if info.rank:  # skip the lower ranks' uniforms: one (B, N) draw is sequential on CPU
        torch.rand(info.rank * local_batch, n_tokens, generator=g)
    return g


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("mask_token") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, clips: torch.Tensor | None, device: torch.device
) -> float | None:
    """Mean masked-patch loss on fixed clips with fixed masks (fp32); None without clips."""
    if clips is None or len(clips) == 0:
        return None
    model = ckpt.unwrap(model)
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(clips), EVAL_BATCH):
        g = torch.Generator().manual_seed(EVAL_MASK_SEED + i)
        x = clips[i : i + EVAL_BATCH].to(device)
        total += float(model(x, generator=g).loss) * len(x)
        n += len(x)
    model.train(was_training)
    return total / n


def select_rows(cfg: RunConfig) -> tuple[list[dict], list[dict]]:
    """(training rows: the nested subset of ``data.hours``, held-out rows: at most
    ``HELDOUT_FILES`` of the pool's heldout split, by a fixed permutation)."""
    from audioscale.data.manifest import load_pool
    from audioscale.data.subsets import heldout_rows, nested_subset

    rows = load_pool(cfg.data.pool)
    train = nested_subset(rows, cfg.data.hours, cfg.data.subset_seed)
    held = sorted(heldout_rows(rows), key=lambda r: str(r["path"]))
    if len(held) > HELDOUT_FILES:
        pick = np.sort(np.random.default_rng(0).permutation(len(held))[:HELDOUT_FILES])
        held = [held[i] for i in pick]
    return train, held


def _build_caches(cfg: RunConfig, rows: tuple, info: ddp.DistInfo, progress: bool):
    train, held = rows
    caches = []
    for turn in ("main", "others"):  # rank 0 builds, the others open what it built
        if (turn == "main") == info.is_main:
            caches = [
                FeatureCache.build(
                    r,
                    cfg.frontend,
                    cfg.data.cache_dir,
                    progress and info.is_main,
                    workers=max(1, cfg.data.num_workers),
                )
                if r
                else None
                for r in (train, held)
            ]
        ddp.barrier(info)
    train_cache, held_cache = caches
    if train_cache.n_items == 0:
        raise DataError(f"{cfg.data.pool}: none of the {len(train)} training files could be read")
    return train_cache, held_cache, train


def _due(since: float, every: float | None) -> bool:
    return every is not None and time.perf_counter() - since > every


def _finished(out: Path) -> TrainResult:
    """The TrainResult recorded in ``done.json`` (``run_dir`` is where it lies now)."""
    d = json.loads((out / "done.json").read_text(encoding="utf-8"))
    names = TrainResult.__dataclass_fields__
    return TrainResult(**{**{k: v for k, v in d.items() if k in names}, "run_dir": str(out)})


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the log lines up to ``last_step`` (a kill -9 may have left a partial line)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": list(random.getstate()[1]),
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"].cpu())
    keys = s["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, s["numpy"]["pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


# ----------------------------------------------------------------------------- training


def pretrain(
    cfg: RunConfig, out_dir: str | Path, progress: bool = True, resume: bool = True
) -> TrainResult:
    """Pretrain an MAE as ``cfg`` says into ``out_dir`` (see the module docstring).

    ``resume=True``: a finished folder returns its result at once; an interrupted one
    continues from ``train_state.pt``. ``resume=False`` starts over."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} is a file, not a run folder")
    p = plan(cfg)
    cfg = p.cfg
    if resume:
        _check_same_run(out, cfg)
        if (out / "done.json").is_file():
            return _finished(out)
    rows = select_rows(cfg)  # a missing or bad pool fails here, before anything is written
    device = torch.device(resolve_device(cfg.train.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", f"{cfg.train.device!r} but CUDA is not available here")
    info = ddp.setup(device.type)
    old_threads = torch.get_num_threads()
    try:
        if info.enabled and device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(device)
        if cfg.train.threads and device.type == "cpu":
            torch.set_num_threads(cfg.train.threads)
        return _train(cfg, p, rows, out, device, info, progress, resume)
    finally:
        torch.set_num_threads(old_threads)
        ddp.teardown(info)


def _train(
    cfg: RunConfig,
    p: Plan,
    rows: tuple,
    out: Path,
    device: torch.device,
    info: ddp.DistInfo,
    progress: bool,
    resume: bool,
) -> TrainResult:
    from audioscale.models import accounting
    from audioscale.models.mae import build_mae

    t0 = time.perf_counter()
    t = cfg.train
    if info.is_main:
        if not resume:
            _clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    train_cache, held_cache, train_rows = _build_caches(cfg, rows, info, progress)
    data_seconds = train_cache.total_seconds
    held = (
        fixed_clips(held_cache, p.clip_frames, HELDOUT_CLIPS)
        if held_cache and held_cache.n_items
        else None
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    _seed_all(t.seed)
    model = build_mae(cfg.model, cfg.frontend).to(device)
    params = accounting.count_params(model)
    opt = torch.optim.AdamW(
        _param_groups(model, t.weight_decay),
        lr=p.lr,
        betas=(t.beta1, t.beta2),
        fused=device.type == "cuda",
    )
    sched = Schedule(p.lr, p.warmup, p.steps, t.min_lr_frac)
    if info.is_main:
        atomic_save_json(
            out / "model_card.json", _model_card(cfg, p, params, train_cache, train_rows)
        )

    start, wall_before, win_sum, win_n, last_loss = 0, 0.0, 0.0, 0, float("nan")
    state = ckpt.load_state(out, "cpu") if resume else None  # copied onto the device below
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start, wall_before = int(state["step"]), float(state["wall_s"])
        win_sum, win_n = float(state["window_sum"]), int(state["window_n"])
        last_loss = float(state["last_loss"])
        if info.is_main:
            _truncate_metrics(out / "metrics.jsonl", start)
    elif info.is_main:
        (out / "metrics.jsonl").unlink(missing_ok=True)

    net = ddp.wrap(model, info, device)
    if t.compile:
        net = torch.compile(net)
    ds = ClipDataset(train_cache, p.clip_frames, t.seed, t.batch_size, info.rank, info.world_size)
    loader = make_loader(ds, start, p.steps, cfg.data.num_workers, pin_memory=device.type == "cuda")
    ckpt_steps = set(p.checkpoint_steps)
    b = t.batch_size

    def counters(step: int) -> dict:
        ex = step * b
        return {
            "examples": ex,
            "tokens": ex * p.tokens_per_example,
            "flops": ex * p.flops_per_example,
            "hours_seen": ex * p.clip_seconds / 3600.0,
            "epochs": ex * p.clip_seconds / data_seconds,
        }

    def save_state(step: int, wall: float, last: float) -> None:
        s = {
            "step": step,
            "wall_s": wall,
            "last_loss": last,
            "window_sum": win_sum,
            "window_n": win_n,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": _rng_state(),
        }
        ckpt.save_state(out, s)

    model.train()
    loss_acc = torch.zeros((), device=device)
    t_log, step_log = time.perf_counter(), start
    t_state = time.perf_counter()
    log_f = open(out / "metrics.jsonl", "a") if info.is_main else None
    bar = progress_bar("pretrain", progress and info.is_main, transient=False, eta=True)
    try:
        with bar:
            task = bar.add_task("", total=p.steps, completed=start)
            for step, batch in zip(range(start, p.steps), loader, strict=True):
                lr = sched.lr_at(step)
                for group in opt.param_groups:
                    group["lr"] = lr
                mel = batch.to(device, non_blocking=True)
                gen = mask_generator(
                    t.seed, step, device, info, ds.local_batch, p.tokens_per_example
                )
                # Uniforms drawn here, outside a compiled forward (a generator splits the graph).
                noise = torch.rand(len(mel), p.tokens_per_example, generator=gen, device=device)
                with _autocast(device, t.precision):
                    loss = net(mel, noise=noise).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                opt.step()
                loss_acc += loss.detach()
                win_n += 1
                done = step + 1
                bar.advance(task)
                if done % t.log_every == 0 or done == p.steps:
                    win_sum += float(ddp.mean(loss_acc, info))
                    loss_acc.zero_()
                    last_loss = win_sum / win_n
                    now = time.perf_counter()
                    rate = (done - step_log) * b / max(now - t_log, 1e-9)
                    row = {"step": done, "loss": last_loss, "lr": lr, **counters(done)}
                    row.update(
                        examples_per_s=rate,
                        tokens_per_s=rate * p.tokens_per_example,
                        wall_s=wall_before + now - t0,
                    )
                    if log_f:
                        log_f.write(json.dumps(row) + "\n")
                        log_f.flush()
                    bar.update(task, description=f"loss {last_loss:.4f}  {rate:,.0f} ex/s")
                    t_log, step_log, win_sum, win_n = now, done, 0.0, 0
                if done in ckpt_steps:  # every rank: the fold is a collective under DDP
                    win_sum += float(ddp.mean(loss_acc, info))
                    loss_acc.zero_()
                    if info.is_main:
                        meta = {
                            "step": done,
                            "fraction": done / p.steps,
                            "loss": float(loss.detach()),
                            "heldout_loss": heldout_loss(model, held, device),
                            **counters(done),
                        }
                        ckpt.save_checkpoint(model, out, ckpt.checkpoint_name(done), meta)
                        save_state(done, wall_before + time.perf_counter() - t0, last_loss)
                        t_state = time.perf_counter()
                elif (
                    info.is_main
                    and win_n == 0
                    and done < p.steps
                    and _due(t_state, t.state_every_s)
                ):
                    save_state(done, wall_before + time.perf_counter() - t0, last_loss)
                    t_state = time.perf_counter()
    finally:
        if log_f:
            log_f.close()

    wall = wall_before + time.perf_counter() - t0
    result = TrainResult(
        run_dir=str(out),
        steps=p.steps,
        **{k: v for k, v in counters(p.steps).items()},
        data_hours=data_seconds / 3600.0,
        final_loss=last_loss,
        heldout_loss=None,
        wall_s=wall,
        params=params,
        lr=p.lr,
        batch_size=b,
        skipped_files=len(train_cache.skipped),
    )
    if info.is_main:
        result.heldout_loss = heldout_loss(model, held, device)
        meta = {
            "step": p.steps,
            "fraction": 1.0,
            "loss": last_loss,
            "heldout_loss": result.heldout_loss,
        }
        ckpt.save_checkpoint(model, out, "final", {**meta, **counters(p.steps)})
        save_state(p.steps, wall, last_loss)
        done_json = result.to_dict()
        done_json.update(
            heldout_clips=0 if held is None else len(held),
            tokens_per_example=p.tokens_per_example,
            flops_per_example=p.flops_per_example,
        )
        atomic_save_json(out / "done.json", done_json)
    ddp.barrier(info)
    return result


def _model_card(
    cfg: RunConfig, p: Plan, params: dict, cache: FeatureCache, rows: list[dict]
) -> dict:
    from audioscale.data.subsets import subset_hours

    return {
        "name": cfg.name,
        "run_hash": cfg.run_hash(),
        "family": cfg.model.family,
        "params": params,
        "flops_per_example": p.flops_per_example,
        "train_flops": p.flops_per_example * p.steps * cfg.train.batch_size,
        "tokens_per_example": p.tokens_per_example,
        "visible_tokens_per_example": p.visible_per_example,
        "clip_frames": p.clip_frames,
        "clip_seconds": p.clip_seconds,
        "model": cfg.model.model_dump(mode="json"),
        "frontend": cfg.frontend.model_dump(mode="json"),
        "lr": p.lr,
        "lr_rule": recipe.describe(cfg.model, cfg.train, p.steps),
        "warmup_steps": p.warmup,
        "steps": p.steps,
        "batch_size": cfg.train.batch_size,
        "budget": p.budget,
        "checkpoint_steps": p.checkpoint_steps,
        "data": {
            "pool": cfg.data.pool,
            "hours_requested": cfg.data.hours,
            "subset_hours": subset_hours(rows),
            "data_hours": cache.total_seconds / 3600.0,
            "files": cache.n_items,
            "skipped_files": [{"path": s["path"], "reason": s["reason"]} for s in cache.skipped],
            "cache_key": cache.key,
        },
    }
