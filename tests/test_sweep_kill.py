"""Crash safety, short version: SIGKILL the sweep process (and so its workers) three times
at points of progress (training, evaluation, store writes), restart it each time; at the
end every run is in the store exactly once with the results of an uninterrupted run.
bench/kill_test.py is the long version with random kill points."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sweep_helpers import make_corpus, tiny_spec

from audioscale.evaluate.context import build_eval_context
from audioscale.sweep.local import set_threads
from audioscale.sweep.run import run_job
from audioscale.sweep.spec import load_sweep
from audioscale.sweep.store import Store

VOLATILE = {"wall_s"}  # timings are the only values allowed to differ


def progress(study: Path) -> int:
    """Files that mark finished work (checkpoints, stage markers, results) + done runs."""
    n = sum(1 for _ in study.glob("runs/*/checkpoints/*.json"))
    n += sum(1 for _ in study.glob("runs/*/eval/**/*.json"))
    n += sum(1 for _ in study.glob("runs/*/result.json"))
    if (study / "study.db").is_file():
        db = sqlite3.connect(study / "study.db", timeout=30)
        try:
            n += db.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
        except sqlite3.OperationalError:  # schema not there yet
            pass
        db.close()
    return n


def start(spec: Path, out: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "audioscale", "sweep", "--config", str(spec), "--out", str(out),
           "--workers", "1", "--json"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env)


def kill_and_finish(spec: Path, out: Path, log: Path, when: list, count) -> int:
    """SIGKILL a sweep once per entry of ``when`` (a predicate on the study folder, or
    None: as soon as ``count(out)`` grows), then let it finish; returns the kills made."""
    kills = 0
    for wanted in when:
        before = count(out)
        proc = start(spec, out, log)
        while proc.poll() is None and not (wanted() if wanted else count(out) > before):
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    proc = start(spec, out, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    return kills


def clean(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows),
                  key=lambda r: r["run_id"])  # fmt: skip


def test_kill9_restart_equals_uninterrupted(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    spec = tiny_spec(corpus, axes={"steps": [12]}, baselines={"random_init": False})
    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    assert kill_and_finish(spec_path, out, tmp_path / "log.txt", [None] * 3, progress) >= 2

    # the uninterrupted reference, in this process, one torch thread like the workers
    set_threads(1)
    sweep = load_sweep(spec)
    ref_dir = tmp_path / "reference"
    ctx = build_eval_context(sweep.base, cache_dir=ref_dir / "cache" / "embeddings")
    with Store(ref_dir / "study.db") as ref:
        ref.add_runs(sweep.jobs)
        for job in sweep.jobs:
            ref.record(run_job(job, ref_dir / "runs" / job.run_id, ctx))
        expected = clean(ref.results())
        expected_ck = ref.checkpoint_metrics()

    with Store(out / "study.db") as store:
        runs = store.runs()
        assert sorted(r["run_id"] for r in runs) == sorted(j.run_id for j in sweep.jobs)
        assert all(r["status"] == "done" for r in runs)
        assert clean(store.results()) == expected
        assert store.checkpoint_metrics() == expected_ck
        n_metrics = len(store.train_metrics(sweep.jobs[0].run_id))
    assert n_metrics == 3  # steps 4, 8, 12: none lost, none duplicated

    # stage markers: drop a finished run's evaluation, re-run its job: the same numbers
    job = sweep.trained[0]
    run_dir = ref_dir / "runs" / job.run_id
    old = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").unlink()
    shutil.rmtree(run_dir / "eval")
    new = run_job(job, run_dir, ctx)
    for key in ("spectral", "probes", "train_metrics"):
        assert new[key] == old[key]
    assert new["info"] | {"wall_s": 0} == old["info"] | {"wall_s": 0}


WSD = {"schedule": "wsd", "warmup_steps": 2, "cooldown_fraction": 0.25}
TRUNK_COLUMNS = {"trunk_id", "branched_at", "own_steps"}  # what a branch adds to a run


def trunk_progress(study: Path) -> int:
    """``progress`` plus the trunks' checkpoints and kept states."""
    n = progress(study)
    n += sum(1 for _ in study.glob("trunks/*/checkpoints/*.json"))
    return n + sum(1 for _ in study.glob("trunks/*/states/*/train_state.pt"))


def reference(spec: dict, out: Path, branches: bool) -> tuple[list[dict], list[dict]]:
    """Results and checkpoint metrics of the spec's jobs run one after another in this
    process; ``branches=False``: every WSD run from scratch (no trunk)."""
    set_threads(1)
    sweep = load_sweep(spec)
    ctx = build_eval_context(sweep.base, cache_dir=out / "cache" / "embeddings")
    with Store(out / "study.db") as ref:
        ref.add_runs(sweep.jobs)
        for job in sweep.jobs:
            job = job if branches else dataclasses.replace(job, branches=())
            ref.record(run_job(job, out / "runs" / job.run_id, ctx))
        return clean(ref.results()), ref.checkpoint_metrics()


def test_kill9_in_trunks_and_branches_equals_uninterrupted_and_scratch(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    spec = tiny_spec(corpus, axes={"steps": [8, 16]}, baselines={"random_init": False})
    spec["base"]["train"].update(WSD)
    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    in_trunk = lambda: any(out.glob("trunks/*/checkpoints/*.json"))  # noqa: E731
    in_branch = lambda: any(  # noqa: E731
        not (b.parent / "done.json").exists() for b in out.glob("runs/*/branch.json")
    )
    when = [in_trunk, in_branch, None, None]
    assert kill_and_finish(spec_path, out, tmp_path / "log.txt", when, trunk_progress) >= 2
    assert len(list(out.glob("trunks/*"))) == 1  # one trunk for the two budgets

    expected, expected_ck = reference(spec, tmp_path / "reference", branches=True)
    with Store(out / "study.db") as store:
        assert all(r["status"] == "done" for r in store.runs())
        got = clean(store.results())
        assert got == expected
        assert store.checkpoint_metrics() == expected_ck
    trained = [r for r in got if r["kind"] == "trained"]
    assert sorted(r["branched_at"] for r in trained) == [6, 12]
    assert {r["schedule"] for r in trained} == {"wsd"}

    scratch, scratch_ck = reference(spec, tmp_path / "scratch", branches=False)
    drop = lambda rows: [{k: v for k, v in r.items() if k not in TRUNK_COLUMNS} for r in rows]  # noqa: E731
    assert len(got) == len(scratch)
    pairs = zip(drop(got), drop(scratch), strict=True)
    diff = [(a["run_id"], k, a[k], b.get(k)) for a, b in pairs for k in a if a[k] != b.get(k)]
    assert not diff  # a branch is its run from scratch, bit for bit
    assert [r["branched_at"] for r in scratch if r["kind"] == "trained"] == [0, 0]
    assert expected_ck == scratch_ck
