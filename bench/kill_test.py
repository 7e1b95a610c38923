"""Crash-safety benchmark: SIGKILL a sweep at random points, restart it, repeat; at the end
every run must be in the store exactly once with the results of an uninterrupted sweep.

    .venv/bin/python bench/kill_test.py [--kills 10] [--workers 2] [--seed 0]

Kill points: each restart draws a random delay (1 s to 0.4 x the reference sweep's wall
time) and a mode: ``time`` kills at
the delay (anywhere: start-up, feature cache, training, checkpoint writes, evaluation,
exports); ``store-write`` arms at the delay and kills at the next store write (the
moment ``study.db-wal`` changes: a run marked running, a result recorded, meta).
The sweep: 4 tiny trained runs (atto/femto × 32/96 steps) + random-init and log-mel
baselines on a synthetic corpus (tests/sweep_helpers.py), 2 workers. The uninterrupted
reference runs first in its own study folder. Prints one JSON object and writes it to
bench/out/kill_test.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sweep_helpers import make_corpus, tiny_spec  # noqa: E402

from audioscale.sweep.store import Store  # noqa: E402

VOLATILE = {"wall_s"}


def start(spec: Path, out: Path, workers: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "audioscale", "sweep", "--config", str(spec), "--out",
           str(out), "--workers", str(workers), "--json"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env)


def wal_stamp(out: Path) -> tuple:
    p = out / "study.db-wal"
    try:
        st = p.stat()
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return ()


def kill_once(
    spec: Path, out: Path, workers: int, log: Path, rng: random.Random, span: float
) -> str:
    """Start the sweep, kill it at one random point within ``span`` s; returns what happened."""
    proc = start(spec, out, workers, log)
    mode = rng.choice(["time", "store-write"])
    t0 = time.time()
    deadline = t0 + rng.uniform(1.0, span)
    stamp = None
    while proc.poll() is None:
        now = time.time()
        if now >= deadline and mode == "time":
            break
        if now >= deadline and mode == "store-write":  # armed: kill at the next write
            if stamp is None:
                stamp = wal_stamp(out)
            elif wal_stamp(out) != stamp or now - deadline > 60:
                break
        time.sleep(0.002 if stamp is not None else 0.05)
    if proc.poll() is not None:
        return "finished"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return f"killed ({mode}, {time.time() - t0:.1f} s after start)"


def table(out: Path) -> tuple[list[dict], list[dict], dict, list[dict]]:
    with Store(out / "study.db") as store:
        rows = sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in store.results()),
                      key=lambda r: r["run_id"])  # fmt: skip
        ck = sorted(store.checkpoint_metrics(), key=lambda r: (r["run_id"], r["step"]))
        steps = {r["run_id"]: len(store.train_metrics(r["run_id"])) for r in store.runs()}
        return rows, ck, steps, store.runs()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "kill_test")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = args.out
    if work.exists():
        import shutil

        shutil.rmtree(work)
    corpus = make_corpus(work / "corpus")
    spec = tiny_spec(corpus, axes={"size": ["atto", "femto"], "steps": [32, 96]})
    spec_path = work / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    log = work / "log.txt"

    t0 = time.time()
    ref = start(spec_path, work / "reference", args.workers, log)
    assert ref.wait() == 0, "the uninterrupted reference sweep failed; see " + str(log)
    ref_wall = time.time() - t0

    t0 = time.time()
    events = []
    while len([e for e in events if e.startswith("killed")]) < args.kills:
        span = max(2.0, 0.4 * ref_wall)  # the reference's wall time sets the scale
        events.append(kill_once(spec_path, work / "killed", args.workers, log, rng, span))
        if events[-1] == "finished":
            break
    final = start(spec_path, work / "killed", args.workers, log).wait()
    killed_wall = time.time() - t0

    want, got = table(work / "reference"), table(work / "killed")
    ids = [r["run_id"] for r in got[3]]
    report = {
        "kills": sum(e.startswith("killed") for e in events),
        "kills_store_write": sum("store-write" in e for e in events),
        "events": events,
        "final_exit_code": final,
        "runs": len(ids),
        "runs_unique": len(set(ids)) == len(ids),
        "all_done": all(r["status"] == "done" for r in got[3]),
        "results_equal": got[0] == want[0],
        "checkpoint_metrics_equal": got[1] == want[1],
        "train_metric_rows_equal": got[2] == want[2],
        "reference_wall_s": round(ref_wall, 1),
        "killed_wall_s": round(killed_wall, 1),
    }
    report["survived"] = report["kills"] if all(
        report[k] for k in ("runs_unique", "all_done", "results_equal",
                            "checkpoint_metrics_equal", "train_metric_rows_equal")
    ) and final == 0 else 0  # fmt: skip
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "kill_test.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
