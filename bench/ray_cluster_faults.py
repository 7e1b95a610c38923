"""Ray cluster fault benchmark: a tiny sweep on a loopback Ray cluster (a head and two
worker nodes, separate ``ray start`` processes, token auth), once undisturbed and then
``--faults`` times with the worker node of the longest run SIGKILLed (its raylet) while
that run trains, and a replacement worker node started at once; every sweep's store must
equal the local executor's (wall times aside) with every run once. Prints a markdown table
(bench/RESULTS_ray.md holds one) and writes bench/out/ray_cluster_faults.json.

    .venv/bin/python bench/ray_cluster_faults.py [--faults 2]

The sweep: 4 tiny trained runs (atto, 8 / 12 / 16 / 160 steps, checkpoints at 1/4 and 1/2)
on the synthetic corpus of tests/sweep_helpers.py, no baselines. Worker nodes have one CPU
each (the machine's two cores), the head none, so two runs go at once and none on the head.
The kill comes when the 160-step run has its first checkpoint and no done.json. Load is
the 1-minute load average, sampled every second while a sweep runs (the machine's other
work included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sweep_helpers import make_corpus, tiny_spec  # noqa: E402

from audioscale.sweep.ray_cluster import LoopbackCluster  # noqa: E402
from audioscale.sweep.ray_executor import attempts  # noqa: E402
from audioscale.sweep.store import Store  # noqa: E402

STEPS = [8, 12, 16, 160]
TARGET = max(STEPS)  # the run whose node is killed
VOLATILE = {"wall_s"}


class LoadSampler:
    """The 1-minute load average every second, in a thread, while in the ``with`` block."""

    def __enter__(self) -> LoadSampler:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"load_mean": round(sum(s) / len(s), 2), "load_max": round(max(s), 2)}


def sweep_cmd(spec: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "audioscale", "sweep", "--config", str(spec), "--out", str(out),
            "--json", *extra]  # fmt: skip


def table(out: Path) -> dict:
    """What must equal the local executor's: results (wall times aside), checkpoint
    metrics, train-metric rows per run; and the runs with their states."""
    with Store(out / "study.db") as store:
        rows = sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in store.results()),
                      key=lambda r: r["run_id"])  # fmt: skip
        ck = sorted(store.checkpoint_metrics(), key=lambda r: (r["run_id"], r["step"]))
        runs = store.runs()
        steps = {r["run_id"]: len(store.train_metrics(r["run_id"])) for r in runs}
    return {"results": rows, "checkpoints": ck, "train_rows": steps,
            "runs": [(r["run_id"], r["status"]) for r in runs]}  # fmt: skip


def target_dir(out: Path) -> Path | None:
    found = sorted(out.glob(f"runs/*-s{TARGET}-*"))
    return found[0] if found else None


def wait_training(out: Path, proc: subprocess.Popen, timeout: float = 300.0) -> Path:
    """Until the target run has a step checkpoint and no done.json (it is training)."""
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        run = target_dir(out)
        if run and any(run.glob("checkpoints/step_*.json")) and not (run / "done.json").exists():
            if attempts(run):
                return run
        time.sleep(0.05)
    raise RuntimeError(f"the {TARGET}-step run was never seen training (sweep rc {proc.poll()})")


def on_cluster(cluster: LoopbackCluster, spec: Path, out: Path, fault: bool) -> dict:
    """One sweep through the CLI on the cluster; with ``fault``, kill the target run's
    worker node while it trains and start a replacement worker node."""
    extra = ["--executor", "ray", "--ray-address", cluster.address]
    log, err = out.with_suffix(".out"), out.with_suffix(".err")
    t0 = time.time()
    info: dict = {"faults": 0}
    with LoadSampler() as load:
        proc = cluster.popen(sweep_cmd(spec, out, extra), log, err=err)
        if fault:
            run = wait_training(out, proc)
            node = cluster.node_of(attempts(run)[-1]["node_id"])
            t_kill = time.time()
            cluster.kill_node(node)
            info |= {"faults": 1, "killed": node.name, "kill_at_s": round(t_kill - t0, 1)}
            cluster.add_worker(cpus=1)
        rc = proc.wait()
    info |= {"rc": rc, "wall_s": round(time.time() - t0, 1), **load.summary()}
    if rc != 0:
        raise RuntimeError(f"sweep on the cluster failed (rc {rc}):\n{err.read_text()[-3000:]}")
    info["stderr"] = err.read_text().splitlines()
    info["runs_per_node"] = {}
    for run_dir in sorted(out.glob("runs/*")):
        for a in attempts(run_dir):
            name = getattr(cluster.node_of(a["node_id"]), "name", a["node_id"][:8])
            info["runs_per_node"][name] = info["runs_per_node"].get(name, 0) + 1
    if fault:
        tries = attempts(target_dir(out))
        info["target_attempts"] = len(tries)
        info["resumed_from_step"] = tries[-1]["resume_step"]
        info["recovery_s"] = round(tries[-1]["time"] - t_kill, 1)
    return info


def check(ref: dict, got: dict) -> dict:
    ids = [r for r, _ in got["runs"]]
    return {
        "runs_once": len(ids) == len(set(ids)) == len(ref["runs"]),
        "all_done": all(s == "done" for _, s in got["runs"]),
        "equal_local": all(got[k] == ref[k] for k in ("results", "checkpoints", "train_rows")),
    }


def markdown(report: dict) -> str:
    head = ("| sweep | where | wall s | load mean / max | faults (kill at s) | retried run | "
            "resumed from step | recovery s | runs per node | driver stderr lines | "
            "every run once, = local |")  # fmt: skip
    lines = [head, "|---" * 11 + "|"]
    for s in report["sweeps"]:
        ok = "yes" if s.get("runs_once", True) and s.get("equal_local", True) else "NO"
        per = ", ".join(f"{k} {v}" for k, v in sorted(s.get("runs_per_node", {}).items())) or "-"
        retried = f"{s['target_attempts']} attempts" if s.get("target_attempts") else "-"
        faults = f"{s['faults']} ({s['kill_at_s']})" if s["faults"] else "0"
        err = len(s["stderr"]) if "stderr" in s else "-"
        lines.append(
            f"| {s['name']} | {s['where']} | {s['wall_s']} | {s['load_mean']} / {s['load_max']} "
            f"| {faults} | {retried} | {s.get('resumed_from_step', '-')} "
            f"| {s.get('recovery_s', '-')} | {per} | {err} | {ok} |"
        )
    c = report["cluster"]
    lines += ["", f"Cluster: head + 2 worker nodes started in {c['start_s']} s; private network "
              f"namespace: {c['netns']}; node IPs {sorted(set(c['node_ips'].values()))}; "
              f"listening sockets {c['listeners']} (non-loopback: {c['non_loopback']}); "
              f"processes left after close: {c['left_after_close']}."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=2, help="faulted sweeps (one kill each)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ray_cluster_faults")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    work = args.out
    if work.exists():
        import shutil

        shutil.rmtree(work)
    corpus = make_corpus(work / "corpus")
    spec = tiny_spec(corpus, axes={"steps": STEPS},
                     baselines={"random_init": False, "logmel_stats": False})  # fmt: skip
    spec_path = work / "sweep.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    sweeps = []

    t0 = time.time()
    with LoadSampler() as load:
        cmd = sweep_cmd(spec_path, work / "local", ["--executor", "local", "--workers", "2"])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ref = table(work / "local")
    sweeps.append({"name": "local", "where": "local executor, 2 workers", "faults": 0,
                   "wall_s": round(time.time() - t0, 1), **load.summary()})  # fmt: skip

    cluster = LoopbackCluster()
    try:
        t0 = time.time()
        cluster.start(workers=2)
        start_s = round(time.time() - t0, 1)
        heard = cluster.listeners()
        info = {"start_s": start_s, "netns": cluster.netns, "node_ips": cluster.node_ips(),
                "listeners": len(heard),
                "non_loopback": [h for h in heard if not h[0].startswith("127.")]}  # fmt: skip
        for i in range(args.faults + 1):
            fault = i > 0
            out = work / (f"fault{i}" if fault else "clean")
            s = on_cluster(cluster, spec_path, out, fault)
            where = "Ray, head + 2 workers" + (", 1 killed + 1 new" if fault else "")
            sweeps.append({"name": out.name, "where": where, **s, **check(ref, table(out))})
    finally:
        cluster.close()
    info["left_after_close"] = len(cluster.pids())
    report = {"cluster": info, "sweeps": sweeps}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "ray_cluster_faults.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    keys = ("runs_once", "all_done", "equal_local")
    bad = [s["name"] for s in sweeps if not all(s.get(k, True) for k in keys)]
    if bad:
        sys.exit(f"sweeps that differ from the local executor's: {bad}")


if __name__ == "__main__":
    main()
