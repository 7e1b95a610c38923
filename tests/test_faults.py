"""Faults at every write, corrupt artefacts and interrupts (DESIGN.md, "Reliability").

Following SQLite's I/O-error tests ("How SQLite Is Tested", section 3.3): a tiny sweep
runs with a real ``OSError(ENOSPC)`` injected at its k-th durable write
(``audioscale.faults``), for every k up to the n writes of a clean run; each time the
command ends with one line and exit 2, and a rerun with no fault completes with every
run once, an intact store and results equal to the clean run's. Then every kind of
artefact truncated and bit-flipped, the three user cases of issue #26 as one-line CLI
errors, and exit 2 for a sweep in which a run failed. The sweeps run in this process
(``--executor inline``): the fault semantics are the executors' shared ones, and the
whole file stays fast.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sweep_helpers import flaky_job, make_corpus, tiny_spec

from audioscale import faults
from audioscale.cli import main
from audioscale.sweep.local import set_threads
from audioscale.sweep.store import Store

MAX_KS = 80  # above this many writes, a seeded sample of MAX_KS k's (at least 50)
VOLATILE = {"wall_s"}  # timings are the only values allowed to differ
TRAIN_VOLATILE = {"ex_per_s", "extra"}  # per-line rates and wall times of metrics.jsonl


def write_spec(
    corpus: Path, study: Path, steps: list[int] | None = None, settings: dict | None = None
) -> Path:
    """The tiniest sweep that runs every stage: one atto run of 4 steps (a checkpoint at
    step 2), kNN probes, the log-mel baseline; its feature cache inside the study."""
    axes = {"steps": steps or [4]}
    spec = tiny_spec(corpus, axes=axes, baselines={"random_init": False})
    if settings:
        spec["study"] = settings
    spec["base"]["train"].update(checkpoint_fractions=[0.5], log_every=2)
    spec["base"]["eval"]["protocols"] = ["knn"]
    spec["base"]["data"]["cache_dir"] = str(study / "cache" / "features")
    path = study.parent / f"{study.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_args(spec: Path, study: Path) -> list[str]:
    return ["sweep", "--config", str(spec), "--out", str(study), "--executor", "inline", "--json"]


def outcome(study: Path) -> dict:
    """What a sweep leaves that must not depend on faults: the runs and their states,
    the results table, the checkpoint metrics and the training curves (timings aside);
    the store must pass SQLite's integrity check."""
    db = sqlite3.connect(study / "study.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    with Store(study / "study.db") as store:
        runs = store.runs()
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in store.results()]
        curves = {
            r["run_id"]: [
                {k: v for k, v in m.items() if k not in TRAIN_VOLATILE}
                for m in store.train_metrics(r["run_id"])
            ]
            for r in runs
        }
        return {
            "runs": sorted((r["run_id"], r["status"]) for r in runs),
            "results": sorted(rows, key=lambda r: r["run_id"]),
            "checkpoints": store.checkpoint_metrics(),
            "curves": curves,
        }


@dataclass
class Clean:
    corpus: Path
    study: Path
    writes: int
    outcome: dict


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Clean:
    """One clean sweep, its writes counted (the n of the injection test)."""
    set_threads(1)
    root = tmp_path_factory.mktemp("faults")
    corpus = make_corpus(root / "corpus")
    study = root / "clean"
    counter = root / "writes"
    os.environ[faults.ENV_COUNTER] = str(counter)
    try:
        assert main(sweep_args(write_spec(corpus, study), study)) == 0
    finally:
        del os.environ[faults.ENV_COUNTER]
    got = outcome(study)
    assert [s for _, s in got["runs"]] == ["done", "done"]
    return Clean(corpus, study, faults.count(counter), got)


def test_a_fault_at_every_write_loses_nothing(clean, tmp_path, monkeypatch, capsys):
    n = clean.writes
    ks = list(range(1, n + 1))
    if n > MAX_KS:
        ks = sorted(random.Random(26).sample(ks, MAX_KS))
    problems = []
    for k in ks:
        study = tmp_path / f"k{k}"
        spec = write_spec(clean.corpus, study)
        monkeypatch.setenv(faults.ENV_AT, str(k))
        monkeypatch.setenv(faults.ENV_COUNTER, str(tmp_path / f"count{k}"))
        code = main(sweep_args(spec, study))
        monkeypatch.delenv(faults.ENV_AT)
        monkeypatch.delenv(faults.ENV_COUNTER)
        err = capsys.readouterr().err
        one_line = err.count("\n") == 1 and err.startswith("audioscale: error: ")
        if code != 2 or not one_line or "(injected fault); free space and rerun" not in err:
            problems.append(f"k={k}: exit {code}, stderr {err!r}")
            continue
        if "Traceback" not in (study / "audioscale.log").read_text():
            problems.append(f"k={k}: no traceback in the study's log")
        code = main(sweep_args(spec, study))
        capsys.readouterr()
        if code != 0:
            problems.append(f"k={k}: rerun exit {code}")
        elif outcome(study) != clean.outcome:
            problems.append(f"k={k}: results differ from a clean run's")
        shutil.rmtree(study)
    print(f"\nfault injection: {n} writes in a clean run, {len(ks)} injection points")
    assert not problems, "\n".join(problems)
    assert n >= 50 and len(ks) >= 50


def test_a_fault_in_a_worker_process_stops_the_sweep_not_the_run(clean, tmp_path, monkeypatch):
    """The local executor: the counter is shared with its spawned worker, and a fault
    there (k = 17: the run's first checkpoint, in a clean run's order) stops the sweep
    with the worker's one line; the run is pending again, never failed."""
    study = tmp_path / "study"
    spec = write_spec(clean.corpus, study)
    monkeypatch.setenv(faults.ENV_AT, "17")
    monkeypatch.setenv(faults.ENV_COUNTER, str(tmp_path / "count"))
    args = ["sweep", "--config", str(spec), "--out", str(study), "--workers", "1", "--json"]
    proc = subprocess.run([sys.executable, "-m", "audioscale", *args], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{study}/runs/" in proc.stderr and "(injected fault); free space" in proc.stderr
    with Store(study / "study.db") as store:
        assert store.counts()["failed"] == 0 and store.counts()["running"] == 0
    monkeypatch.delenv(faults.ENV_AT)
    monkeypatch.delenv(faults.ENV_COUNTER)
    assert main(sweep_args(spec, study)) == 0
    assert outcome(study) == clean.outcome


# --------------------------------------------------------------------- corrupt artefacts


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def copy_study(src: Path, dst: Path) -> Path:
    """A copy of a study whose runs' configs point at the copy's feature cache."""
    shutil.copytree(src, dst)
    for cfg in dst.glob("runs/*/config.yaml"):
        cfg.write_text(cfg.read_text().replace(str(src), str(dst)))
    return dst


# artefact → (glob under the study, what the test drops so the sweep reads it again)
ARTEFACTS = {
    "final checkpoint of a done run": ("runs/atto*/checkpoints/final.safetensors", ()),
    "final checkpoint": ("runs/atto*/checkpoints/final.safetensors", ("result", "eval")),
    "step checkpoint": ("runs/atto*/checkpoints/step_*.safetensors", ("result", "eval")),
    "training state": ("runs/atto*/train_state.pt", ("result", "eval", "final")),
    "embedding cache": ("cache/embeddings/*.f32", ("result", "eval")),
    "log-mel cache": ("cache/embeddings/mel/*/shard_*.f32", ("result", "eval", "embeddings")),
    "feature cache": ("cache/features/*/shard_*.f16", ("result", "eval")),
}


def _redo(study: Path, drop: tuple[str, ...]) -> None:
    """Make the sweep read the run's artefacts again, as a crash or a changed
    evaluation would: drop its result (and evaluation, embeddings, final checkpoint)."""
    if not drop:
        return
    run = next(study.glob("runs/atto*"))
    (run / "result.json").unlink()
    if "eval" in drop:
        shutil.rmtree(run / "eval")
    if "embeddings" in drop:  # the log-mel cache is read only to compute embeddings
        for p in study.glob("cache/embeddings/*.*"):
            p.unlink()
    if "final" in drop:
        for name in ("done.json", "checkpoints/final.safetensors", "checkpoints/final.json"):
            (run / name).unlink()
    with Store(study / "study.db") as store:
        store.mark_pending([run.name])


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("kind", list(ARTEFACTS))
def test_a_corrupt_artefact_is_named_and_its_work_redone(clean, tmp_path, capsys, kind, damage):
    study = copy_study(clean.study, tmp_path / "study")
    pattern, drop = ARTEFACTS[kind]
    paths = sorted(study.glob(pattern))
    assert paths, pattern
    for p in paths:
        damage(p)
    _redo(study, drop)
    capsys.readouterr()
    assert main(sweep_args(write_spec(clean.corpus, study), study)) == 0
    err = capsys.readouterr().err
    named = [line for line in err.splitlines() if any(str(p) in line for p in paths)]
    assert named and all(line.startswith("audioscale: ") for line in named), err
    assert outcome(study) == clean.outcome


def test_a_corrupt_stage_marker_is_redone(clean, tmp_path, capsys):
    study = copy_study(clean.study, tmp_path / "study")
    marker = next(study.glob("runs/atto*/eval/probes.json"))
    _truncate(marker)
    _redo(study, ("result",))
    assert main(sweep_args(write_spec(clean.corpus, study), study)) == 0
    assert str(marker) in capsys.readouterr().err
    assert outcome(study) == clean.outcome


# --------------------------------------------------------------------- the user's view


@pytest.mark.parametrize("command", ["probe", "rankme"])
def test_a_truncated_checkpoint_is_one_line(clean, tmp_path, capsys, command):
    run = tmp_path / "run"
    shutil.copytree(next(clean.study.glob("runs/atto*")), run)
    _truncate(run / "checkpoints" / "final.safetensors")
    task = str(clean.corpus / "tasks" / "tone")
    args = ["--task", task] if command == "probe" else ["--data", task]
    assert main([command, "--model", str(run), *args, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{run}/checkpoints/final.safetensors: checkpoint is" in err
    assert "retrains it from the last good state" in err


def test_a_failed_run_exits_2_and_is_listed(clean, tmp_path, monkeypatch, capsys):
    import audioscale.sweep.run as run_module

    monkeypatch.setattr(run_module, "run_job", flaky_job)  # the 8-step run fails
    study = tmp_path / "study"
    spec = write_spec(clean.corpus, study, steps=[8, 12], settings={"executor": "inline"})
    assert main(["sweep", "--config", str(spec), "--out", str(study), "--json"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "1 run(s) failed: atto-hall-s8-" in err[0], err
    with Store(study / "study.db") as store:
        assert store.counts()["done"] == 2  # the 12-step run and the baseline are kept


def test_sigterm_stops_a_sweep_with_one_line_and_a_rerun_resumes(clean, tmp_path, capsys):
    study = tmp_path / "study"
    spec = write_spec(clean.corpus, study)
    cmd = [sys.executable, "-m", "audioscale", "sweep", "--config", str(spec),
           "--out", str(study), "--workers", "1", "--json"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while proc.poll() is None and not list(study.glob("runs/*/config.yaml")):
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "audioscale: interrupted: rerun the same command to resume"
    )
    with Store(study / "study.db") as store:
        assert store.counts()["running"] == 0
        for r in store.runs("done"):  # nothing marked done that is not
            assert (study / "runs" / r["run_id"] / "result.json").is_file()
    assert main(sweep_args(spec, study)) == 0
    assert outcome(study) == clean.outcome


def test_a_second_interrupt_stops_at_once(tmp_path):
    from audioscale.cli import session

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with session.study_session(tmp_path):
        with pytest.raises(session.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is session._hard_stop  # the second one
        assert signal.getsignal(signal.SIGTERM) is session._hard_stop
        assert session.signal_received == signal.SIGTERM
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_completes(clean, tmp_path, capsys):
    """A real ENOSPC: the study on a 40 MB tmpfs nearly filled by a ballast file (root
    only; skipped where mounting is not permitted; always unmounted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40M", "tmpfs", str(mnt)],
                         capture_output=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"mount not permitted here: {res.stderr.decode().strip()}")
    try:
        study = mnt / "study"
        spec = write_spec(clean.corpus, study)
        ballast = mnt / "ballast"
        free = shutil.disk_usage(mnt).free
        ballast.write_bytes(b"\0" * (free - 600_000))
        code = main(sweep_args(spec, study))
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert "no space left on device" in err and "free space and rerun the same" in err
        print(f"\nfull disk: {err.strip()}")
        ballast.unlink()
        assert main(sweep_args(spec, study)) == 0
        assert outcome(study) == clean.outcome
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (OSError(28, "No space left on device", "/s/x"), "/s/x: no space left on device; free"),
        (OSError(13, "Permission denied", "/s/x"), "/s/x: permission denied; make the folder"),
        (OSError(30, "Read-only file system", "/s/x"), "/s/x: read-only file system; use a"),
        (OSError(24, "Too many open files", "/s/x"), "/s/x: too many open files; raise the"),
        (FileNotFoundError(2, "No such file", "/s/x"), "/s/x: no such file (removed while"),
        (sqlite3.OperationalError("database or disk is full"), "/s/db: no space left on dev"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "/s/db: read-only"),
    ],
)
def test_every_os_fault_is_one_line_with_the_path_and_what_to_do(exc, says):
    from audioscale.errors import storage_error

    msg = str(storage_error(exc, "/s/db"))
    assert msg.startswith(says) and "\n" not in msg
    assert msg.endswith("rerun the same command: finished runs are kept")


def test_other_errors_are_not_storage_faults():
    from audioscale.errors import storage_error

    assert storage_error(ValueError("x")) is None
    assert storage_error(sqlite3.OperationalError("no such table: runs")) is None


# --------------------------------------------------------------------- review fixes


@pytest.mark.parametrize("fails", ["atomic_save_json", "atomic_write_bytes"])
def test_a_fault_between_the_training_state_and_its_digest_keeps_a_good_state(
    tmp_path, monkeypatch, fails
):
    """train_state.pt and train_state.json are two writes: a fault (or a kill) between
    them must leave a state that resumes, never one rejected as corrupt (which made the
    sweep train the run again from step 0)."""
    import torch

    from audioscale.errors import CorruptArtefactError
    from audioscale.train import checkpoint as ck

    ck.save_state(tmp_path, {"step": 2, "w": torch.zeros(64)})
    real = getattr(ck, fails)

    def full(path, *a, **k):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(ck, fails, full)
    with pytest.raises(OSError):
        ck.save_state(tmp_path, {"step": 4, "w": torch.ones(64)})
    monkeypatch.setattr(ck, fails, real)
    assert ck.load_state(tmp_path)["step"] == 2
    ck.save_state(tmp_path, {"step": 6, "w": torch.ones(64)})  # and the next save is checked
    assert ck.load_state(tmp_path)["step"] == 6
    _flip(tmp_path / ck.STATE_FILE)  # a corrupt state is still caught
    with pytest.raises(CorruptArtefactError):
        ck.load_state(tmp_path)


def test_an_unchanged_artefact_is_hashed_once_per_process(tmp_path, monkeypatch):
    """verify() is on hot paths (each run of a sweep worker opens the training feature
    cache, GBs, three times): an unchanged file is hashed once per process, and a changed
    one (new bytes, even of the same size) is hashed again and caught."""
    from audioscale import utils
    from audioscale.errors import CorruptArtefactError

    path = tmp_path / "shard.f16"
    path.write_bytes(os.urandom(1 << 16))
    expected = utils.digest(path)
    old = time.time() - 60
    os.utime(path, (old, old))  # not "racy": written a minute ago
    hashed = []
    real = utils.digest
    monkeypatch.setattr(utils, "digest", lambda p, *a: hashed.append(p) or real(p, *a))
    for _ in range(3):
        utils.verify(path, expected, "feature cache shard")
    assert len(hashed) == 1
    _flip(path)
    with pytest.raises(CorruptArtefactError, match="sha256"):
        utils.verify(path, expected, "feature cache shard")
    _flip(path)  # flipped back: intact again, but just written, so hashed every time
    utils.verify(path, expected, "feature cache shard")
    utils.verify(path, expected, "feature cache shard")
    assert len(hashed) == 4


def test_a_corrupt_study_db_is_one_line_and_the_advice_recovers(clean, tmp_path, capsys):
    """A study.db that is not a database (a bad disk, a stray copy) was a traceback."""
    study = copy_study(clean.study, tmp_path / "study")
    for p in study.glob("study.db*"):
        p.unlink()
    (study / "study.db").write_bytes(random.Random(0).randbytes(8192))
    spec = write_spec(clean.corpus, study)
    for args in (sweep_args(spec, study), ["status", str(study)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{study}/study.db: corrupt database" in err and "move it aside" in err
    (study / "study.db").rename(study / "study.db.corrupt")  # what the line says to do
    assert main(sweep_args(spec, study)) == 0
    assert outcome(study) == clean.outcome


def test_a_worker_interrupted_while_it_starts_ignores_it():
    """A Ctrl-C reaches the whole process group, the workers included; one that came
    while a worker was still importing (before it ignores SIGINT) killed it with a
    KeyboardInterrupt traceback on the terminal. Its start now holds the signal."""
    import multiprocessing as mp

    from audioscale.sweep.local import Worker

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when a shell started us in the background
    w = Worker(mp.get_context("spawn"), print, 1, None)
    try:
        os.kill(w.proc.pid, signal.SIGINT)  # long before it has imported anything
        w.give("job", "run_dir", "ctx")
        assert w.conn.poll(60)
        assert w.conn.recv() == ("ok", None)
    finally:
        w.stop()
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert signal.getsignal(signal.SIGINT) == before  # restored


def test_a_corrupt_feature_cache_is_named_once(clean, tmp_path, capsys):
    """build() checks the cache before and again under its lock: the corrupt shard was
    named twice (two lines for one fault)."""
    from audioscale.config import FrontendConfig
    from audioscale.data.featcache import FeatureCache
    from audioscale.data.manifest import load_pool

    rows = load_pool(clean.corpus / "pool" / "manifest.csv")[:4]
    cache = FeatureCache.build(rows, FrontendConfig(), tmp_path, progress=False)
    _flip(cache.root / cache.shards[0])
    capsys.readouterr()
    FeatureCache.build(rows, FrontendConfig(), tmp_path, progress=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "building the feature cache again" in err, err


def test_an_os_error_without_a_number_is_one_line(monkeypatch, capsys):
    """A library's OSError with no errno (storage_error leaves it alone) still ends the
    command in one line, never a traceback."""
    import audioscale.cli as cli

    def fails(**_):
        raise OSError("cannot map\nthe file")

    monkeypatch.setattr(cli, "app", fails)
    assert cli.main(["status", "x"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "audioscale: error: ?: cannot map the file; fix the cause and rerun the same "
        "command: finished runs are kept\n"
    )
