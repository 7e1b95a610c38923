"""MAE pretraining: one run folder per call of :func:`pretrain`.

Run folder (docs/ARCHITECTURE.md)::

    config.yaml        the RunConfig with the model resolved (ladder.resolve)
    model_card.json    params, FLOPs/example, tokens/example, resolved model, lr rule, budget
    metrics.jsonl      one line every ``log_every`` steps (and at the last step)
    checkpoints/       step_XXXXXX.safetensors at the geometric fractions, final.safetensors
    train_state.pt     resume state (weights_only loadable)
    done.json          the final summary; its presence makes pretrain() a no-op

Choices, each deliberate:

- Plan: ``train.plan`` decides the budget in steps, the clip length, the lr and the
  checkpoint steps from the config alone, and counts what a run has seen
  (``plan.counters``) and what it is (``plan.model_card``).
- Identity: a folder is resumed only by a config of the same ``RunConfig.identity()``
  (execution keys and ``eval`` may differ: config.EXECUTION_KEYS); ``model_card.json``
  records ``run_hash`` of the config as given (the sweep's run id) and, under
  ``execution``, the device, precision and compile setting the run actually used.
- Optimiser: AdamW (fused on CUDA, and on CPU from torch 2.4), betas and weight decay
  from the config; no decay on biases, norms and mask tokens (1-D parameters and
  ``mask_token``), as MAE. Peak lr from ``recipe.lr_for``, warm-up from
  ``recipe.warmup_steps``, cosine decay (schedule.py); gradient-norm clipping at
  ``grad_clip``.
- Precision: ``auto`` is bf16 autocast on CUDA and fp32 on CPU; ``bf16`` on CPU uses CPU
  autocast. The loss is computed in fp32 by the model. TF32 matmuls are allowed on CUDA.
- Determinism: python, numpy and torch are seeded from ``train.seed`` before the model is
  built. The batch of step ``k`` is a function of ``(seed, k)`` (corpus.ClipDataset) and
  so is the mask (a torch.Generator seeded from ``(seed, k)``), so a resumed run sees
  exactly the data and masks of the uninterrupted one. With DDP on CPU each rank advances
  its generator past the lower ranks' draws and so masks exactly as one process would; on
  CUDA ranks seed from ``(seed, k, rank)`` (same distribution, not the same draw).
- Code: :func:`train_step` is the one optimisation step (lr, forward under autocast with
  the step's :func:`mask_noise`, backward, clip, AdamW step) that training runs, and that
  bench/bench_gpu_train.py times; :class:`LossWindow` the running loss mean;
  :func:`save_checkpoint`, :func:`save_train_state` / :func:`load_train_state` the files;
  ``_train`` composes them in one loop.
- Logged ``loss`` is the mean training loss over the steps since the previous log line;
  the counters beside it are ``plan.counters``.
- Checkpoints at ``round(f * steps)`` for each ``train.checkpoint_fractions`` ``f``
  (deduplicated, at least step 1, below the last step) and at the end. Each writes
  ``train_state.pt``; so does the first log line after every ``train.state_every_s`` seconds.
  Sidecar losses, the same at every checkpoint: ``loss_window`` = the mean over the
  ``loss_window_steps`` steps since the previous log line, through this step (the window
  the log line at this step shows, when there is one; at the end it is ``final_loss``),
  and ``loss_batch`` = this step's batch loss (mean over ranks).
- Held-out loss: ``train.heldout`` (its files, clips and the one loss loop, at the run's
  own mask ratio here), measured at every checkpoint (sidecar) and at the end (done.json).
- Data: the feature caches of the training subset and of the held-out files are built
  (or found) before training, decoding on ``max(1, data.num_workers)`` threads; batches
  come from ``corpus.ClipDataset`` through ``corpus.make_loader`` with
  ``data.num_workers`` processes and pinned memory on CUDA.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from audioscale.config import RunConfig, TrainConfig, dump_yaml, load_config
from audioscale.data.corpus import ClipDataset, fixed_clips, make_loader
from audioscale.data.featcache import FeatureCache
from audioscale.errors import ConfigError, DataError
from audioscale.train import checkpoint as ckpt
from audioscale.train import ddp, tblog
from audioscale.train.heldout import HELDOUT_CLIPS, heldout_loss, select_rows
from audioscale.train.metricslog import MetricsLog
from audioscale.train.plan import TrainPlan, counters, model_card, plan
from audioscale.utils import atomic_save_json, atomic_write_text, resolve_device


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


# ----------------------------------------------------------------------------- helpers


def _check_same_run(out: Path, cfg: RunConfig) -> None:
    path = out / "config.yaml"
    if not path.is_file():
        return
    try:
        old = load_config(path)
    except Exception:
        return
    if old.identity() != cfg.identity():  # one definition: RunConfig.identity
        raise ConfigError(
            "out", f"{out} holds a run with a different config; pass --no-resume or another folder"
        )


def _clear_run(out: Path) -> None:
    for name in ("done.json", "train_state.pt", "metrics.jsonl", "model_card.json", "config.yaml"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ckpt.CKPT_DIR, ignore_errors=True)
    shutil.rmtree(out / tblog.TB_DIR, ignore_errors=True)


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


def mask_noise(
    seed: int, step: int, device: torch.device, info: ddp.DistInfo, local_batch: int, n_tokens: int
) -> torch.Tensor:
    """The (local_batch, n_tokens) mask uniforms of ``step`` on this rank, drawn from
    :func:`mask_generator` outside the model (a generator inside a compiled forward
    would split the graph)."""
    g = mask_generator(seed, step, device, info, local_batch, n_tokens)
    return torch.rand(local_batch, n_tokens, generator=g, device=device)


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


def fused_adamw(device: torch.device) -> bool:
    """Fused AdamW on CUDA, and on CPU from torch 2.4 (where its CPU kernel arrived)."""
    if device.type == "cuda":
        return True
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def build_optimizer(
    model: torch.nn.Module, t: TrainConfig, lr: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with ``t``'s betas, fused where :func:`fused_adamw` allows (one kernel for all
    parameters, the same update rule; CPU timings against the per-tensor loop:
    bench/RESULTS.md); weight decay on matrices only (no decay on biases, norms and mask
    tokens)."""
    return torch.optim.AdamW(
        _param_groups(model, t.weight_decay),
        lr=lr,
        betas=(t.beta1, t.beta2),
        fused=fused_adamw(device),
    )


def _uses_bf16(device: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _autocast(device: torch.device, precision: str):
    if _uses_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    mel: torch.Tensor,
    noise: torch.Tensor,
    lr: float,
    precision: str = "fp32",
    grad_clip: float | None = None,
) -> torch.Tensor:
    """One optimisation step, the one training runs: set ``lr`` on every parameter group,
    forward ``mel`` (on the device) masked by ``noise`` (:func:`mask_noise`) under the
    run's autocast, backward, clip the gradient norm at ``grad_clip``, AdamW step.
    ``net`` may be wrapped (DDP, torch.compile). Returns the detached loss, on the device
    (no host sync)."""
    for group in opt.param_groups:
        group["lr"] = lr
    with _autocast(mel.device, precision):
        loss = net(mel, noise=noise).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(ckpt.unwrap(net).parameters(), grad_clip)
    opt.step()
    return loss.detach()


class LossWindow:
    """Mean training loss over the steps since the last :meth:`close` (a log line).

    ``add`` sums each step's loss on the device (no host sync per step), in the loss's
    dtype, whatever is read or saved in between: a window's mean is the same number
    however often it was read (checkpoints), saved (training states) or resumed, so a
    resumed run and a WSD branch log exactly the losses of a run without a break.
    ``fold`` makes the sum the mean over ranks (a collective under DDP, at the same steps
    on every rank: log lines, checkpoints, a trunk's kept states; nothing when single-
    process). ``metrics.jsonl`` ``loss``, the checkpoint sidecars' ``loss_window`` and
    ``done.json`` ``final_loss`` are all such windows."""

    def __init__(self, info: ddp.DistInfo, device: torch.device, state: dict | None = None):
        s = state or {}
        self.info = info
        self.acc = torch.tensor(float(s.get("window_sum", 0.0)), device=device)
        self.n = int(s.get("window_n", 0))
        self.last = float(s.get("last_loss", float("nan")))  # mean of the last closed window
        self.last_n = int(s.get("window_last_n", 0))
        self.batch: torch.Tensor | None = None  # the latest step's loss

    def add(self, loss: torch.Tensor) -> None:
        self.acc += loss
        self.n += 1
        self.batch = loss

    def fold(self) -> None:
        self.acc = ddp.mean(self.acc, self.info)

    def close(self) -> float:
        """End the window (at a log line): its mean, kept as ``last``."""
        self.fold()
        self.last, self.last_n = float(self.acc) / self.n, self.n
        self.acc, self.n = torch.zeros_like(self.acc), 0
        return self.last

    def summary(self) -> dict:
        """Sidecar fields (a collective): ``loss_window`` the mean of the open window, or of
        the one this step closed; ``loss_window_steps`` its steps; ``loss_batch`` the latest
        step's loss (mean over ranks; None before any step of this process)."""
        self.fold()
        mean, n = (float(self.acc) / self.n, self.n) if self.n else (self.last, self.last_n)
        batch = None if self.batch is None else float(ddp.mean(self.batch, self.info))
        return {"loss_window": mean, "loss_window_steps": n, "loss_batch": batch}

    def state(self) -> dict:
        """For ``train_state.pt``, after a ``fold`` (the sum is the same on every rank)."""
        return {
            "window_sum": float(self.acc),
            "window_n": self.n,
            "last_loss": self.last,
            "window_last_n": self.last_n,
        }


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


# ----------------------------------------------------------------------------- run state


def save_train_state(
    out: Path, step: int, wall_s: float, model: torch.nn.Module, opt, window: LossWindow
) -> None:
    """``train_state.pt``: what a resume needs after ``step`` (weights_only loadable)."""
    state = {"step": step, "wall_s": wall_s, **window.state()}
    state.update(model=model.state_dict(), optimizer=opt.state_dict(), rng=_rng_state())
    ckpt.save_state(out, state)


def load_train_state(
    out: Path, model: torch.nn.Module, opt, info: ddp.DistInfo, device: torch.device
) -> tuple[int, float, LossWindow]:
    """Restore ``train_state.pt`` into ``model``, ``opt`` and the RNGs: ``(start step, wall
    seconds so far, loss window)``; ``(0, 0.0, empty window)`` when there is none."""
    state = ckpt.load_state(out, "cpu")  # load_state_dict copies onto the device
    if state is None:
        return 0, 0.0, LossWindow(info, device)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return int(state["step"]), float(state["wall_s"]), LossWindow(info, device, state)


def _resume(out: Path, model, opt, info: ddp.DistInfo, device: torch.device, resume: bool,
            keep: set[int]):  # fmt: skip
    """``(start step, wall seconds so far, loss window)`` of a run starting or resuming;
    the log lines after the resumed step are dropped (they are trained again). A trunk
    (``keep``) resumed at a branch point whose copy a kill prevented keeps it now."""
    start, wall_before, window = 0, 0.0, LossWindow(info, device)
    if resume:
        start, wall_before, window = load_train_state(out, model, opt, info, device)
    if info.is_main:
        _truncate_metrics(out / "metrics.jsonl", start)
        if start and start in keep and start not in ckpt.kept_states(out):
            ckpt.keep_state(out, start)
    return start, wall_before, window


def save_checkpoint(
    model: torch.nn.Module, out: Path, name: str, meta: dict, held, device: torch.device
) -> None:
    """Weights + sidecar ``{step, fraction, loss_window, loss_window_steps, loss_batch,
    heldout_loss, examples, ...}`` (``meta`` plus the held-out loss measured now)."""
    meta = {**meta, "heldout_loss": heldout_loss(model, held, device)}
    ckpt.save_checkpoint(model, out, name, meta)


def _seeded_model(cfg: RunConfig, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The MAE on ``device``, built after seeding python, numpy and torch from
    ``train.seed``, and its parameter counts."""
    from audioscale.models import accounting
    from audioscale.models.mae import build_mae

    _seed_all(cfg.train.seed)
    model = build_mae(cfg.model, cfg.frontend).to(device)
    return model, accounting.count_params(model)


def _start_folder(out: Path, cfg: RunConfig, resume: bool) -> None:
    if not resume:
        _clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))


def _execution(device: torch.device, t: TrainConfig, info: ddp.DistInfo) -> dict:
    return {
        "device": str(device),
        "precision": "bf16" if _uses_bf16(device, t.precision) else "fp32",
        "compile": t.compile,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "world_size": info.world_size,
    }


# ----------------------------------------------------------------------------- training


def pretrain(
    cfg: RunConfig, out_dir: str | Path, progress: bool = True, resume: bool = True
) -> TrainResult:
    """Pretrain an MAE as ``cfg`` says into ``out_dir`` (see the module docstring).

    ``resume=True``: a finished folder returns its result at once; an interrupted one
    continues from ``train_state.pt``. ``resume=False`` starts over."""
    out = _run_folder(out_dir)
    p = plan(cfg)
    cfg = p.cfg
    if resume:
        _check_same_run(out, cfg)
        if (out / "done.json").is_file() and ckpt.final_intact(out):
            return _finished(out)
    rows = select_rows(cfg)  # a missing or bad pool fails here, before anything is written
    with _session(cfg) as (device, info):
        return _train(cfg, p, rows, out, device, info, progress, resume)


def extend_trunk(
    cfg: RunConfig, out_dir: str | Path, upto: int, keep: set[int], checkpoints: set[int],
    progress: bool = True,
) -> None:  # fmt: skip
    """Train the constant-lr trunk of WSD run ``cfg`` in ``out_dir`` up to step ``upto``
    (``train.trunk``): resumed from its ``train_state.pt``, weights checkpoints at
    ``checkpoints`` and ``keep``, and a copy of the training state at each step of ``keep`` (and at
    ``upto``) under ``states/``, where the branches start from. No final checkpoint."""
    out = _run_folder(out_dir)
    p = plan(cfg)
    unbudgeted = {"steps": upto, "examples": None, "hours": None, "flops": None}
    trunk_cfg = p.cfg.model_copy(update={"train": p.cfg.train.model_copy(update=unbudgeted)})
    cps = sorted(c for c in checkpoints | keep | {upto} if c <= upto)  # weights at every
    # branch point too: the un-cooled trunk can be measured beside its cooled branches
    budget = {"kind": "steps", "value": upto}
    p = replace(p, cfg=trunk_cfg, steps=upto, cooldown=0, checkpoint_steps=cps, budget=budget)
    rows = select_rows(p.cfg)
    with _session(p.cfg) as (device, info):
        _train(p.cfg, p, rows, out, device, info, progress, True, keep={*keep, upto})


def _run_folder(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} is a file, not a run folder")
    return out


@contextmanager
def _session(cfg: RunConfig) -> Iterator[tuple[torch.device, ddp.DistInfo]]:
    """The device, the process group (torchrun) and the thread count of one training."""
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
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        yield device, info
    finally:
        torch.set_num_threads(old_threads)
        ddp.teardown(info)


def _train(
    cfg: RunConfig,
    p: TrainPlan,
    rows: tuple,
    out: Path,
    device: torch.device,
    info: ddp.DistInfo,
    progress: bool,
    resume: bool,
    keep: set[int] | None = None,
) -> TrainResult | None:
    """The training loop. ``keep`` (a trunk, ``extend_trunk``): the steps whose training
    state is kept under ``states/``; a trunk ends without a final checkpoint (None)."""
    t0, t = time.perf_counter(), cfg.train
    if info.is_main:
        _start_folder(out, cfg, resume)
    train_cache, held_cache, train_rows = _build_caches(cfg, rows, info, progress)
    have_held = held_cache is not None and held_cache.n_items > 0
    held = fixed_clips(held_cache, p.clip_frames, HELDOUT_CLIPS) if have_held else None
    model, params = _seeded_model(cfg, device)
    opt = build_optimizer(model, t, p.lr, device)
    if info.is_main:
        card = model_card(cfg, p, params, train_cache, train_rows, _execution(device, t, info))
        atomic_save_json(out / "model_card.json", card)
    start, wall_before, window = _resume(out, model, opt, info, device, resume, keep or set())
    net = ddp.wrap(model, info, device)
    net = torch.compile(net) if t.compile else net
    ds = ClipDataset(train_cache, p.clip_frames, t.seed, t.batch_size, info.rank, info.world_size)
    loader = make_loader(ds, start, p.steps, cfg.data.num_workers, pin_memory=device.type == "cuda")
    sched, keep = p.schedule, keep or set()
    seen = partial(counters, p, train_cache.total_seconds)
    wall = lambda: wall_before + time.perf_counter() - t0  # noqa: E731
    model.train()
    t_state = time.perf_counter()
    with MetricsLog(out, p, info, start, progress) as log:
        for step, batch in zip(range(start, p.steps), loader, strict=True):
            lr = sched.lr_at(step)
            mel = batch.to(device, non_blocking=True)
            noise = mask_noise(t.seed, step, device, info, ds.local_batch, p.tokens_per_example)
            window.add(train_step(net, opt, mel, noise, lr, t.precision, t.grad_clip))
            done = step + 1
            log.advance()
            if done % t.log_every == 0 or (done == p.steps and not keep):  # a trunk logs as
                log.line(done, window.close(), lr, seen(done), wall())  # its branches will
            if done in keep:  # every rank: the open window goes into the kept state
                window.fold()
            state_due = window.n == 0 and done < p.steps and _due(t_state, t.state_every_s)
            if done in p.checkpoint_steps:  # every rank: the window fold is a collective
                meta = {"step": done, "fraction": done / p.steps, **window.summary()}
                if info.is_main:
                    meta.update(seen(done))
                    save_checkpoint(model, out, ckpt.checkpoint_name(done), meta, held, device)
            if info.is_main and (done in p.checkpoint_steps or done in keep or state_due):
                save_train_state(out, done, wall(), model, opt, window)
                if done in keep:
                    ckpt.keep_state(out, done)
                t_state = time.perf_counter()
    if keep:
        return None
    return _finish(p, out, model, opt, window, held, device, info, wall(), params, train_cache)


def _finish(p, out, model, opt, window, held, device, info, wall_s, params, cache) -> TrainResult:
    """Final checkpoint, state and ``done.json`` (rank 0); the result on every rank."""
    meta = {"step": p.steps, "fraction": 1.0, **window.summary()}  # a collective
    result = TrainResult(
        run_dir=str(out),
        steps=p.steps,
        **counters(p, cache.total_seconds, p.steps),
        data_hours=cache.total_seconds / 3600.0,
        final_loss=window.last,
        heldout_loss=None,
        wall_s=wall_s,
        params=params,
        lr=p.lr,
        batch_size=p.cfg.train.batch_size,
        skipped_files=len(cache.skipped),
    )
    if info.is_main:
        result.heldout_loss = heldout_loss(model, held, device)
        meta.update(heldout_loss=result.heldout_loss, **counters(p, cache.total_seconds, p.steps))
        ckpt.save_checkpoint(model, out, "final", meta)
        save_train_state(out, p.steps, wall_s, model, opt, window)
        done_json = result.to_dict()
        done_json.update(
            heldout_clips=0 if held is None else len(held),
            tokens_per_example=p.tokens_per_example,
            flops_per_example=p.flops_per_example,
        )
        atomic_save_json(out / "done.json", done_json)
    ddp.barrier(info)
    return result
