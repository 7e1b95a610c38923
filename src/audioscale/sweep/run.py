"""One run's pipeline, as scheduled: pretrain → evaluation stages → result.json.

``run_job(job, run_dir, ctx)`` is what an executor's worker calls. It runs the trainer
and then the evaluation stage's measurements (``audioscale.evaluate``) one by one; every
stage writes a marker json into the run folder when it finishes, so a restarted run
skips what is done:

```
RUN_DIR/done.json                       pretraining finished (written by the trainer)
RUN_DIR/eval/key.json                   the eval_key the markers below were written under
RUN_DIR/eval/spectral/<checkpoint>.json RankMe & co. on the study pool at that checkpoint
RUN_DIR/eval/spectral_train.json        the same on crops of the run's own training data
RUN_DIR/eval/spectral_heldout.json      ... and on crops of its pool's heldout split
RUN_DIR/eval/heldout_ref.json           held-out loss at the reference mask and clip length
RUN_DIR/eval/spectral_gap.json          train slice vs eval pool RankMe at equal N
RUN_DIR/eval/probes.json                probe scores of the final checkpoint
RUN_DIR/result.json                     everything above, the record the store takes
RUN_DIR/error.json / error.log          the one-line reason and traceback of a failure
```

What each stage measures, and how, is documented where it is measured:
``evaluate.context`` (the eval pool), ``evaluate.spectral``, ``evaluate.slices`` (train
and heldout slices, the equal-N gap), ``evaluate.heldout`` (the reference held-out loss),
``evaluate.probes``, ``evaluate.baseline``; ``evaluate.keys`` says when finished markers
are stale. The final checkpoint's task-clip embeddings are extracted once per task and
serve the RankMe pool, the probes and the gap (on-disk embedding cache under the study's
``cache/embeddings``, so a restart between stages re-extracts nothing). Epochs, tokens
and hours seen come from the trainer's done.json.

A corrupt artefact of the run folder (a checkpoint or the training state failing its
recorded sha256, a marker that does not parse) is discarded and its work redone
(``execute_repairing``); corrupt caches are rebuilt where they are read.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from audioscale.config import RunConfig
from audioscale.errors import AudioscaleError, CorruptArtefactError, storage_error
from audioscale.evaluate.baseline import baseline_encoder, measure_baseline
from audioscale.evaluate.context import EvalContext
from audioscale.evaluate.heldout import reference_heldout_loss
from audioscale.evaluate.info import trained_info
from audioscale.evaluate.keys import eval_key, is_current
from audioscale.evaluate.markers import load_marker, read_marker
from audioscale.evaluate.probes import probe_rows, task_embeddings
from audioscale.evaluate.records import RunInfo, check_keys
from audioscale.evaluate.slices import (
    HELDOUT_SLICE,
    TRAIN_SLICE,
    gap_metrics,
    run_train_rows,
    slice_cap,
    slice_info,
    slice_metrics,
)
from audioscale.evaluate.spectral import FINAL, checkpoints, measure_checkpoint
from audioscale.sweep.spec import TRAINED_KINDS, trunk_name
from audioscale.utils import atomic_save_json, verify

# --------------------------------------------------------------------------- stages


def _stage(path: Path, fn, *args: Any) -> Any:
    """Run ``fn`` unless its marker json exists; store its result with its wall time."""
    if (marker := read_marker(path)) is not None:
        return marker
    t0 = time.time()
    out = fn(*args)
    out = {"value": out, "wall_s": time.time() - t0}
    atomic_save_json(path, out)
    return out


class _Stages:
    """The evaluation stages of one trained run: each runs through its marker
    (``_stage``) and adds its wall time; the final checkpoint's task embeddings are
    extracted at most once, and only for a stage still to run that uses them."""

    def __init__(self, run_dir: Path, ctx: EvalContext, wall_s: float):
        self.run_dir, self.ctx, self.walls = run_dir, ctx, [wall_s]
        self.tasks: dict | None = None

    def run(self, marker: str, fn, *args: Any) -> Any:
        out = _stage(self.run_dir / "eval" / marker, fn, *args)
        self.walls.append(out["wall_s"])
        return out["value"]

    def tasks_for(self, marker: str, wanted: bool = True) -> dict | None:
        """The task embeddings, extracted now when ``wanted``, the study has tasks, none
        were extracted yet and ``marker``'s stage has not run."""
        if wanted and self.tasks is None and self.ctx.task_dirs:
            if read_marker(self.run_dir / "eval" / marker) is None:
                from audioscale.embed.ours import RunEncoder

                self.tasks = task_embeddings(RunEncoder(self.run_dir, checkpoint=FINAL), self.ctx)
        return self.tasks


def _spectral(st: _Stages) -> list[dict]:
    """One spectral row per stored checkpoint, the final one last."""
    rows = []
    for c in checkpoints(st.run_dir):
        is_final = c["name"] == FINAL
        marker = f"spectral/{c['name']}.json"
        tasks = st.tasks_for(marker, wanted=is_final)
        rows.append(st.run(marker, measure_checkpoint, st.run_dir, c, st.ctx, tasks) | {
            "checkpoint": c["name"], "step": c["step"], "fraction": c["fraction"],
            "is_final": is_final, "loss": c["loss"],
        })  # fmt: skip
    return rows


def _slices(st: _Stages, cfg: RunConfig, final: dict) -> dict[str, dict]:
    """The train and heldout slice rows (empty dicts for an empty slice)."""
    out = {}
    for which, marker in ((TRAIN_SLICE, "spectral_train.json"),
                          (HELDOUT_SLICE, "spectral_heldout.json")):  # fmt: skip
        n_clips = slice_cap(final, st.ctx)
        out[which] = st.run(marker, slice_metrics, st.run_dir, cfg, n_clips, st.ctx, which) or {}
    return out


def trunk_dir(run_dir: str | Path, cfg: RunConfig) -> Path:
    """Where the WSD trunk of ``cfg`` lies: ``STUDY/trunks/<trunk name>`` beside
    ``STUDY/runs/<run id>`` (``sweep.spec.trunk_name``)."""
    return Path(run_dir).parent.parent / "trunks" / trunk_name(cfg)


def train(cfg: RunConfig, run_dir: Path, branches: tuple, progress: bool) -> None:
    """Pretrain (resuming); a WSD run that shares its trunk with ``branches`` (the sweep's
    runs of one trunk identity) branches off the study's trunk (``train.trunk``)."""
    if branches:
        from audioscale.train.trunk import train_branch

        train_branch(cfg, run_dir, trunk_dir(run_dir, cfg), branches, progress)
    else:
        from audioscale.train.trainer import pretrain

        pretrain(cfg, run_dir, progress=progress, resume=True)


def execute_run(
    cfg: RunConfig, run_dir: str | Path, ctx: EvalContext, progress: bool = False,
    branches: tuple = (),
):  # fmt: skip
    """Pretrain (``train``), measure every checkpoint, probe the final one; return the
    result dict that ``Store.record`` takes (``run_id`` is filled in by ``run_job``)."""
    from audioscale.train import tblog
    from audioscale.train.trunk import read_branch

    run_dir = Path(run_dir)
    if not (run_dir / "done.json").is_file():
        train(cfg, run_dir, branches, progress)
    done = load_marker(run_dir / "done.json")
    card = load_marker(run_dir / "model_card.json")
    st = _Stages(run_dir, ctx, float(done.get("wall_s") or 0.0))
    spectral = _spectral(st)
    final = next((s for s in spectral if s["is_final"]), None)
    if final is None:
        raise AudioscaleError(f"{run_dir}: pretraining left no final checkpoint")
    held = {c["step"]: c["heldout_loss"] for c in checkpoints(run_dir)}
    tblog.checkpoint_curves(run_dir, [s | {"heldout_loss": held.get(s["step"])} for s in spectral])
    extra = {k: final[k] for k in ("checkpoint", "step", "fraction", "is_final", "loss")}
    sl = _slices(st, cfg, final)
    spectral += [row | extra for row in sl.values() if row]
    probes, suite = [], {}
    if ctx.task_dirs:
        tasks = st.tasks_for("probes.json")
        probes, suite = st.run("probes.json", probe_rows, cfg.name, tasks, ctx)
    info = trained_info(cfg, done, card, run_train_rows(cfg), ctx, read_branch(run_dir)) | suite
    info |= st.run("heldout_ref.json", reference_heldout_loss, run_dir, ctx)
    info |= slice_info(sl[TRAIN_SLICE], sl[HELDOUT_SLICE])
    if sl[TRAIN_SLICE]:
        tasks = st.tasks_for("spectral_gap.json", wanted=ctx.level == "clip")
        gap = st.run("spectral_gap.json", gap_metrics, run_dir, cfg, slice_cap(final, ctx),
                     ctx, tasks)  # fmt: skip
        info |= gap or {}
    info["wall_s"] = float(sum(st.walls))
    check_keys(RunInfo, info, f"{run_dir} info")
    return {
        "run_id": None,
        "kind": "trained",
        "info": info,
        "train_metrics": read_jsonl(run_dir / "metrics.jsonl"),
        "spectral": spectral,
        "probes": probes,
    }


def execute_baseline(job: Any, run_dir: str | Path, ctx: EvalContext) -> dict:
    """Random-init encoder, log-mel statistics or an external pretrained encoder: measured
    and probed like a final checkpoint (``evaluate.baseline``)."""
    t0 = time.time()
    encoder, info, ctx = baseline_encoder(job.kind, job.config, job.encoder, ctx)
    row, probes, measured = measure_baseline(job.config.name, encoder, ctx)
    info |= measured | {"wall_s": time.time() - t0}
    check_keys(RunInfo, info, f"{job.run_id} info")
    return {"run_id": job.run_id, "kind": job.kind, "info": info, "train_metrics": [],
            "spectral": [row], "probes": probes}  # fmt: skip


# --------------------------------------------------------------------------- the job


def read_jsonl(path: Path) -> list[dict]:
    """The lines of a jsonl file (the trainer's metrics.jsonl); [] when absent."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the trainer rewrites on resume
            continue
    return out


def one_line(e: BaseException) -> str:
    msg = str(e) if isinstance(e, AudioscaleError) else f"{type(e).__name__}: {e}"
    return " ".join(msg.split())[:500]


REPAIRS = 2  # corrupt artefacts of one run redone before it counts as failed


def execute_repairing(job: Any, run_dir: Path, ctx: EvalContext, progress: bool) -> dict:
    """``execute_run`` / ``execute_baseline``; a corrupt artefact of the run folder (a
    checkpoint, the training state, a stage marker) is discarded and its work redone
    (``checkpoint.discard_corrupt``: retrained from the last good state), up to
    ``REPAIRS`` times, instead of failing the run for good."""
    for attempt in range(REPAIRS + 1):
        try:
            if job.kind in TRAINED_KINDS:
                return execute_run(job.config, run_dir, ctx, progress, job.branches)
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
    if (result := read_marker(result_path)) is not None:
        if result.get("run_id") == job.run_id and is_current(result, ctx):
            return result
        if not is_current(result, ctx):
            result_path.unlink()
            shutil.rmtree(run_dir / "eval", ignore_errors=True)
    key_path = run_dir / "eval" / "key.json"
    if (old := read_marker(key_path)) is not None and old.get("eval_key") != key:
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
