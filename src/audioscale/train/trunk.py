"""WSD trunks and branches: the runs of a sweep that differ only in their budget share
one constant-lr trunk, and each budget is a short cooldown branched off it.

Why it is exact: under ``schedule: wsd`` the lr before a run's decay start does not
depend on its budget (train/schedule.py, with a budget-free warm-up: train/recipe.py),
and the batch and the mask of step ``k`` are functions of ``(seed, k)`` (trainer module
docstring). So a WSD run of ``T`` steps is, update for update, its trunk up to any step
``k`` at or before its decay start, then its own schedule from ``k`` on: resuming the
trunk's training state of step ``k`` in the run's folder gives the weights a run from
scratch gives, bit for bit on CPU (tests/test_trunk.py). A branch therefore keeps the
run id of the run it equals (``RunConfig.run_hash``), and the trunk has its own identity
(``RunConfig.trunk_identity``: the run's identity without the budget, the cooldown and
the checkpoint fractions).

Trunk folder (``extend_trunk`` trains it; a sweep keeps it under ``STUDY/trunks/``)::

    trunk.json                 {"trunk_id", "identity"}
    config.yaml, model_card.json, metrics.jsonl, train_state.{pt,json}   as a run folder
    checkpoints/step_*.safetensors   the weights at the branches' checkpoint steps and
                                     branch points (the un-cooled trunk, measurable)
    states/step_*/train_state.{json,pt}   the training state at each branch point

A branch (``train_branch``): under the trunk's lock (an exclusive ``flock`` on
``.lock``: any process of any node sharing the folder), the trunk is extended to the
run's decay start when it has not reached it (keeping the state at every decay start of
the sweep's branches, and the weights at each branch's checkpoint steps up to its decay
start); the lock is released and the run folder is seeded from the latest kept state
``k`` at or before the decay start whose earlier checkpoints the trunk holds intact: those
checkpoints (linked, their sidecars' ``fraction`` rewritten for this budget), the
trunk's log lines up to ``k``, ``branch.json`` and the training state last (its presence
marks the folder seeded). Then the run trains on from ``k`` as any resumed run. A later
sweep that adds a budget reuses the trunk: it extends it only when the new decay start
lies beyond it, and otherwise starts from the nearest kept state below. Faults: a
corrupt kept state or trunk checkpoint is dropped (branches start from an earlier state),
a corrupt trunk training state is replaced by the latest intact kept one
(``restore_state``): the trunk trains again from there, to the same bits.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from audioscale.config import RunConfig
from audioscale.errors import ConfigError, CorruptArtefactError
from audioscale.train import checkpoint as ckpt
from audioscale.train.plan import TrainPlan, plan
from audioscale.utils import atomic_save_json, atomic_write_text, verify

TRUNK_FILE = "trunk.json"
BRANCH_FILE = "branch.json"
LOCK_FILE = ".lock"


def branch_points(branches: Sequence[RunConfig]) -> tuple[set[int], set[int]]:
    """The trunk steps ``branches`` need: every decay start (kept training states) and
    every checkpoint step at or before a branch's decay start (kept weights). A branch
    the planner refuses (a budget too small for its warm-up) is left out: its own run
    fails with the reason, the others go on."""
    keep, checkpoints = set(), set()
    for cfg in branches:
        try:
            p = plan(cfg)
        except ConfigError:
            continue
        keep.add(p.decay_start)
        checkpoints |= {c for c in p.checkpoint_steps if c <= p.decay_start}
    return keep, checkpoints


@contextmanager
def trunk_lock(trunk_dir: Path) -> Iterator[None]:
    """Exclusive use of a trunk folder (blocking; released when the process dies)."""
    trunk_dir.mkdir(parents=True, exist_ok=True)
    with open(trunk_dir / LOCK_FILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_trunk(trunk_dir: Path, cfg: RunConfig) -> None:
    """Write ``trunk.json`` for a new trunk; refuse a folder that holds another trunk."""
    path, ident = trunk_dir / TRUNK_FILE, cfg.trunk_identity()
    tid = cfg.trunk_hash()
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("trunk_id")
        except (OSError, ValueError):
            old = None
        if old == tid:
            return
        if old is not None:
            raise ConfigError("trunk", f"{trunk_dir} holds trunk {old}, not {tid}")
    atomic_save_json(path, {"trunk_id": tid, "identity": ident})


def reached(trunk_dir: Path) -> int:
    """The last step whose training state the trunk keeps (0: none)."""
    kept = ckpt.kept_states(trunk_dir)
    return kept[-1] if kept else 0


def _checkpoint(trunk_dir: Path, step: int) -> Path:
    return trunk_dir / ckpt.CKPT_DIR / f"{ckpt.checkpoint_name(step)}.safetensors"


def _intact_state(trunk_dir: Path, step: int) -> bool:
    """Whether the kept state of ``step`` passes its digest; a corrupt one is named on
    stderr and dropped (branches then start from an earlier one)."""
    d = ckpt.kept_state_dir(trunk_dir, step)
    try:
        expected = json.loads((d / ckpt.STATE_DIGEST).read_text(encoding="utf-8"))
        verify(d / ckpt.STATE_FILE, {k: expected[k] for k in ("size", "sha256")}, "state")
    except (OSError, ValueError, KeyError, CorruptArtefactError) as e:
        print(f"audioscale: {d}: kept training state unusable ({e}); dropped", file=sys.stderr)
        shutil.rmtree(d, ignore_errors=True)
        return False
    return True


def _intact_checkpoint(trunk_dir: Path, step: int) -> bool:
    """Whether the trunk holds the checkpoint of ``step`` and it passes its sidecar's
    digest; a corrupt one is named on stderr and dropped (never linked into a branch
    again: a branch that repairs its copy then trains the step itself)."""
    path = _checkpoint(trunk_dir, step)
    try:
        verify(path, ckpt.read_sidecar(path)["weights"], "checkpoint")
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no sidecar: not a checkpoint the trunk holds
    except CorruptArtefactError as e:
        print(f"audioscale: {e.path}: {e.reason}; dropped from the trunk", file=sys.stderr)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return False
    return True


def seed_point(trunk_dir: Path, p: TrainPlan) -> int:
    """The latest kept trunk state at or before ``p``'s decay start whose checkpoints
    before it the trunk holds intact and that is intact; 0 when none (train from scratch)."""
    checked: dict[int, bool] = {}

    def intact(c: int) -> bool:
        if c not in checked:
            checked[c] = _intact_checkpoint(trunk_dir, c)
        return checked[c]

    for k in reversed(ckpt.kept_states(trunk_dir)):
        if k > p.decay_start:
            continue
        if all(intact(c) for c in p.checkpoint_steps if c <= k) and _intact_state(trunk_dir, k):
            return k
    return 0


def restore_state(trunk_dir: Path) -> None:
    """Replace the trunk's training state (corrupt) by its latest intact kept state, or
    drop it when none is (the trunk then trains again from step 0, to the same bits)."""
    for name in (ckpt.STATE_FILE, ckpt.STATE_DIGEST):
        (trunk_dir / name).unlink(missing_ok=True)
    for k in reversed(ckpt.kept_states(trunk_dir)):
        if _intact_state(trunk_dir, k):
            _copy_state(ckpt.kept_state_dir(trunk_dir, k), trunk_dir)
            return


def _copy_state(src: Path, out: Path) -> None:
    """``src``'s ``train_state.{json,pt}`` into ``out``: the digest, then the state (last:
    its presence marks the folder resumable)."""
    shutil.copyfile(src / ckpt.STATE_DIGEST, out / ckpt.STATE_DIGEST)
    tmp = out / f".{ckpt.STATE_FILE}.seed.tmp"
    shutil.copyfile(src / ckpt.STATE_FILE, tmp)
    tmp.replace(out / ckpt.STATE_FILE)


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content: a hard link where the file system allows it."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def seed_branch(trunk_dir: Path, out: Path, p: TrainPlan, k: int) -> None:
    """Make ``out`` a run of plan ``p`` interrupted at step ``k`` of the trunk."""
    (out / ckpt.CKPT_DIR).mkdir(parents=True, exist_ok=True)
    for c in (c for c in p.checkpoint_steps if c <= k):
        src = _checkpoint(trunk_dir, c)
        dst = out / ckpt.CKPT_DIR / src.name
        _link(src, dst)
        side = ckpt.read_sidecar(src) | {"fraction": c / p.steps}
        atomic_save_json(dst.with_suffix(".json"), side)
    lines = (trunk_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    keep = [ln for ln in lines if _step_of(ln) is not None and _step_of(ln) <= k]
    atomic_write_text(out / "metrics.jsonl", "".join(ln + "\n" for ln in keep))
    branch = {"trunk_id": p.cfg.trunk_hash(), "trunk_dir": str(trunk_dir), "branched_at": k}
    atomic_save_json(out / BRANCH_FILE, branch)
    _copy_state(ckpt.kept_state_dir(trunk_dir, k), out)  # last: it marks the folder seeded


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_branch(run_dir: str | Path) -> dict | None:
    """``branch.json`` of a run folder (its trunk and the step it left it), or None."""
    try:
        return json.loads((Path(run_dir) / BRANCH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def train_branch(
    cfg: RunConfig,
    out_dir: str | Path,
    trunk_dir: str | Path,
    branches: Sequence[RunConfig] = (),
    progress: bool = True,
):
    """Train WSD run ``cfg`` in ``out_dir`` as a branch of the trunk in ``trunk_dir``
    (module docstring); ``branches``: the configs of every run sharing the trunk, so
    that the trunk keeps what each of them needs. Returns the trainer's ``TrainResult``."""
    from audioscale.train.trainer import extend_trunk, pretrain

    out, trunk_dir = Path(out_dir), Path(trunk_dir)
    p = plan(cfg)
    if cfg.train.schedule != "wsd":
        raise ConfigError("train.schedule", "only wsd runs branch off a trunk")
    seeded = (out / "done.json").is_file() or (out / ckpt.STATE_FILE).is_file()
    if not seeded:
        with trunk_lock(trunk_dir):
            check_trunk(trunk_dir, cfg)
            if reached(trunk_dir) < p.decay_start:
                keep, checkpoints = branch_points([*branches, cfg])
                if not (trunk_dir / ckpt.STATE_FILE).is_file():  # a kill in restore_state
                    restore_state(trunk_dir)
                try:
                    extend_trunk(cfg, trunk_dir, p.decay_start, keep, checkpoints, progress)
                except CorruptArtefactError as e:
                    if Path(e.path) != trunk_dir / ckpt.STATE_FILE:
                        raise
                    print(f"audioscale: {e.path}: {e.reason}; the trunk resumes from its "
                          "last kept state", file=sys.stderr)  # fmt: skip
                    restore_state(trunk_dir)
                    extend_trunk(cfg, trunk_dir, p.decay_start, keep, checkpoints, progress)
            k = seed_point(trunk_dir, p)
        if k:
            out.mkdir(parents=True, exist_ok=True)
            seed_branch(trunk_dir, out, p, k)
        else:  # from scratch: no trunk of an earlier seeding (a repair) is named any more
            (out / BRANCH_FILE).unlink(missing_ok=True)
    return pretrain(cfg, out, progress=progress, resume=True)
