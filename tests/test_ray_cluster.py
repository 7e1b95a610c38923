"""The Ray executor on a real multi-node cluster, and the one-line errors of joining one.

Without a cluster (seconds): a missing or old Ray, an address where nothing or something
else answers, a token setting that holds no token: each is exit code 2 and exactly one
line on stderr, or that line's AudioscaleError.

With a cluster (marked slow; 70 s on 2 idle cores, 2 min on 2 busy ones; part of
``make test``, alone with ``make test-cluster``, off with AUDIOSCALE_TEST_CLUSTER=0): a
head and two worker nodes, each its own ``ray start`` process, on loopback with token auth
(audioscale.sweep.ray_cluster.LoopbackCluster); a sweep of 4 tiny runs on it through
``audioscale sweep --ray-address``, undisturbed and with the worker node of its longest run
killed (SIGKILL on the raylet) mid-training, both equal to the local executor; a missing
and a wrong token, one line each; and no process left when it is torn down.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from sweep_helpers import make_corpus, tiny_spec

from audioscale.errors import AudioscaleError
from audioscale.sweep.runner import run_sweep
from audioscale.sweep.store import Store

ROOT = Path(__file__).resolve().parent.parent
STEPS = [8, 12, 16, 160]  # 4 tiny runs; the 160-step one trains long enough to be killed
CLUSTER = os.environ.get("AUDIOSCALE_TEST_CLUSTER", "1") != "0"
needs_cluster = pytest.mark.skipif(not CLUSTER, reason="AUDIOSCALE_TEST_CLUSTER=0")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raycluster")
    spec = tiny_spec(make_corpus(root / "corpus"), axes={"steps": STEPS},
                     baselines={"random_init": False, "logmel_stats": False})  # fmt: skip
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_args(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audioscale", "sweep", "--config", str(spec), "--out", str(out),
            "--executor", "ray", "--json", *extra]  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a sweep that exited 2 (fails on anything else)."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert proc.stdout == ""
    return lines[0]


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_ray(root: Path, body: str) -> dict:
    """An environment whose ``import ray`` finds ``body`` first (a missing or old Ray)."""
    (root / "ray").mkdir(parents=True)
    (root / "ray" / "__init__.py").write_text(body)
    return dict(os.environ, PYTHONPATH=str(root))


# --------------------------------------------------------------------------- no cluster


def test_min_version_is_the_extras_floor():
    from audioscale.sweep.ray_executor import RAY_MIN_VERSION

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["ray"] == [f"ray>={RAY_MIN_VERSION}"]


def test_unreachable_address_is_one_line(spec_file, tmp_path):
    port = free_port()
    line = one_line_error(run_cli(sweep_args(spec_file, tmp_path / "a", "--ray-address",
                                             f"127.0.0.1:{port}")))  # fmt: skip
    assert line == (
        f"audioscale: error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there "
        f"(connection refused); start its head with `ray start --head --port={port}`, "
        "or fix --ray-address"
    )
    env = dict(os.environ, RAY_ADDRESS=f"127.0.0.1:{port}")
    line = one_line_error(run_cli(sweep_args(spec_file, tmp_path / "b"), env))
    assert line.startswith(f"audioscale: error: RAY_ADDRESS 127.0.0.1:{port}: no Ray cluster")
    assert line.endswith("or fix RAY_ADDRESS")


@pytest.mark.parametrize("case", ["missing", "old"])
def test_missing_or_old_ray_is_one_line(spec_file, tmp_path, case):
    body = "raise ImportError('no ray')\n" if case == "missing" else "__version__ = '2.0.0'\n"
    proc = run_cli(sweep_args(spec_file, tmp_path / "s"), fake_ray(tmp_path / "fake", body))
    want = {
        "missing": "--executor ray needs Ray >= 2.9: pip install 'audioscale[ray]'",
        "old": "--executor ray needs Ray >= 2.9, this Python has Ray 2.0.0: "
        "pip install -U 'audioscale[ray]'",
    }
    assert one_line_error(proc) == "audioscale: error: " + want[case]


def test_token_settings_without_a_token(tmp_path, monkeypatch):
    """RAY_AUTH_MODE=token with no token anywhere, or RAY_AUTH_TOKEN_PATH at nothing: one
    line before Ray is asked (Ray aborts the process on the second)."""
    ray = pytest.importorskip("ray")
    from audioscale.sweep.ray_executor import check_cluster

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token there
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    address = f"127.0.0.1:{free_port()}"  # checked before the network
    with pytest.raises(AudioscaleError, match="^RAY_AUTH_MODE=token but no Ray auth token"):
        check_cluster(ray, address, "--ray-address")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "nothing"))
    with pytest.raises(AudioscaleError, match="^RAY_AUTH_TOKEN_PATH=.*nothing: no token"):
        check_cluster(ray, address, "--ray-address")
    with pytest.raises(AudioscaleError, match="not host:port"):
        check_cluster(ray, "headnode", "--ray-address")


def test_not_a_ray_head_is_one_line():
    """An HTTP server (the dashboard's port, say) answers TCP but not as a GCS: Ray would
    wait on it for minutes."""
    ray = pytest.importorskip("ray")
    from audioscale.sweep.ray_executor import check_cluster

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(AudioscaleError, match="something answers there, but not a Ray head"):
            check_cluster(ray, address, "--ray-address")
    finally:
        server.shutdown()
        server.server_close()


def test_ray_address_means_the_ray_executor(tmp_path, capsys):
    from audioscale.cli import main
    from audioscale.cli.sweep import ray_executor

    assert ray_executor(None, "10.0.0.5:6379") == "ray"
    assert ray_executor("local", None) == "local"
    args = ["sweep", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"),
            "--executor", "local", "--ray-address", "10.0.0.5:6379"]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "audioscale: error: config key '--ray-address': needs --executor ray, not local"
    ]


def test_cluster_messages_go_to_the_log(tmp_path, capsys):
    """What Ray pushes to the driver (printed on stdout by Ray) goes to the study's
    ray_driver.log, one line of it to stderr, a repeat once."""
    pytest.importorskip("ray")
    import ray._private.worker as worker

    from audioscale.sweep.ray_executor import route_messages

    original, log = worker.print_to_stdstream, tmp_path / "ray_driver.log"
    lines = ["\x1b[33m(raylet)\x1b[0m Raylet is terminated.", "  [state-dump] x"]
    with route_messages(log):
        for _ in range(2):
            worker.print_to_stdstream({"lines": lines, "pid": "raylet", "is_err": False}, False)
    assert worker.print_to_stdstream is original
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"ray: (raylet) Raylet is terminated. (see {log})"]
    assert log.read_text().count("[state-dump] x") == 2


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster():
    """Head (no CPUs) + 2 worker nodes of 1 CPU; torn down by process group, and checked."""
    pytest.importorskip("ray")
    from audioscale.sweep.ray_cluster import LoopbackCluster

    c = LoopbackCluster()
    try:
        c.start(workers=2)
        yield c
    finally:
        c.close()
        assert c.pids() == []  # every process it started is gone


@pytest.fixture(scope="module")
def local_table(spec_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "study"
    run_sweep(yaml.safe_load(spec_file.read_text()), out, executor="local", workers=2,
              progress=False)  # fmt: skip
    return table(out)


def table(out: Path) -> dict:
    """What must equal the local executor's (wall times aside), and the runs' states."""
    with Store(out / "study.db") as store:
        rows = sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in store.results()),
                      key=lambda r: r["run_id"])  # fmt: skip
        runs = store.runs()
        ck = sorted(store.checkpoint_metrics(), key=lambda r: (r["run_id"], r["step"]))
        return {
            "results": rows,
            "checkpoints": ck,
            "train_rows": {r["run_id"]: len(store.train_metrics(r["run_id"])) for r in runs},
            "runs": sorted((r["run_id"], r["status"]) for r in runs),
        }


def sweep_on(cluster, spec_file: Path, out: Path) -> subprocess.Popen:
    args = sweep_args(spec_file, out, "--ray-address", cluster.address)
    return cluster.popen(args, out.with_suffix(".out"), err=out.with_suffix(".err"))


def finish(proc: subprocess.Popen, out: Path) -> list[str]:
    """Wait for the sweep: exit 0 and one JSON object on stdout; returns its stderr lines."""
    rc = proc.wait(timeout=600)
    err = out.with_suffix(".err").read_text()
    assert rc == 0, err[-3000:]
    assert json.loads(out.with_suffix(".out").read_text())["counts"]["done"] == len(STEPS)
    return err.splitlines()


def assert_equal_local(out: Path, local: dict) -> None:
    got = table(out)
    assert [s for _, s in got["runs"]] == ["done"] * len(STEPS)  # every run once, done
    assert got == local


@needs_cluster
@pytest.mark.slow
def test_cluster_is_on_loopback(cluster):
    ips = set(cluster.node_ips().values())
    heard = cluster.listeners()
    assert heard and all(port > 0 for _, port, _ in heard)
    if not cluster.netns:
        pytest.skip(f"no network namespace here: Ray chose node IPs {ips}, listeners {heard}")
    assert ips == {"127.0.0.1"}
    assert {addr for addr, _, _ in heard} == {"127.0.0.1"}


@needs_cluster
@pytest.mark.slow
def test_sweep_on_two_worker_nodes_equals_local(cluster, spec_file, local_table, tmp_path):
    from audioscale.sweep.ray_executor import attempts

    out = tmp_path / "study"
    assert finish(sweep_on(cluster, spec_file, out), out) == []  # no Ray noise
    assert_equal_local(out, local_table)
    workers = {n.node_id for n in cluster.workers()}
    ran = [a for d in (out / "runs").iterdir() for a in attempts(d)]
    assert len(ran) == len(STEPS) and {a["node_id"] for a in ran} <= workers
    assert len({a["node_id"] for a in ran}) == 2  # both worker nodes ran runs


@needs_cluster
@pytest.mark.slow
def test_worker_node_killed_mid_run(cluster, spec_file, local_table, tmp_path):
    """SIGKILL the raylet of the node training the 160-step run, start a replacement node:
    the run is retried, resumes from its checkpoint, and the store equals the local one."""
    from audioscale.sweep.ray_executor import attempts

    out = tmp_path / "study"
    proc = sweep_on(cluster, spec_file, out)
    run = None
    deadline = time.time() + 300
    while run is None and proc.poll() is None and time.time() < deadline:
        found = list(out.glob(f"runs/*-s{max(STEPS)}-*"))
        if found and list(found[0].glob("checkpoints/step_*.json")) and attempts(found[0]):
            run = found[0] if not (found[0] / "done.json").exists() else None
        time.sleep(0.05)
    assert run is not None, "the long run was never seen training"
    first = attempts(run)[0]
    cluster.kill_node(cluster.node_of(first["node_id"]))
    cluster.add_worker(cpus=1)
    err = finish(proc, out)
    assert all(line.startswith("ray: ") for line in err), err  # Ray's news of the lost node
    assert_equal_local(out, local_table)
    tries = attempts(run)
    assert len(tries) == 2 and tries[1]["node_id"] != first["node_id"]
    assert tries[1]["resume_step"] >= 40  # the checkpoint at 1/4 of 160 steps
    assert all(len(attempts(d)) == 1 for d in (out / "runs").iterdir() if d != run)


@needs_cluster
@pytest.mark.slow
@pytest.mark.parametrize("case", ["none", "wrong"])
def test_missing_or_wrong_token_is_one_line(cluster, spec_file, tmp_path, case):
    env = cluster.env()
    if case == "none":
        env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    else:
        env["RAY_AUTH_TOKEN"] = "0" * 64
    log = tmp_path / "log.txt"
    proc = cluster.popen(sweep_args(spec_file, tmp_path / "s", "--ray-address", cluster.address),
                         log, env=env)  # fmt: skip
    rc = proc.wait(timeout=300)
    lines = log.read_text().splitlines()
    assert rc == 2 and len(lines) == 1, log.read_text()[-3000:]
    where = f"audioscale: error: --ray-address {cluster.address}: "
    if case == "none":
        assert lines[0] == where + (
            "the cluster requires a Ray auth token and none was sent: set RAY_AUTH_MODE=token "
            "and RAY_AUTH_TOKEN_PATH to the cluster's token (`ray get-auth-token` on the head "
            "prints it)"
        )
    else:
        assert lines[0] == where + (
            "the cluster rejected the Ray auth token from RAY_AUTH_TOKEN: use the token the "
            "cluster was started with (`ray get-auth-token` on the head prints it)"
        )


@needs_cluster
@pytest.mark.slow
def test_wsd_sweep_on_two_worker_nodes_shares_one_trunk(cluster, spec_file, tmp_path):
    """The four budgets as WSD branches of one trunk, run by whichever worker node Ray
    picks: the trunk folder is shared, its lock serialises the extensions, and the
    results equal the local executor's."""
    spec = yaml.safe_load(spec_file.read_text())
    spec["base"]["train"].update(schedule="wsd", warmup_steps=2, cooldown_fraction=0.25)
    path = tmp_path / "wsd.yaml"
    path.write_text(yaml.safe_dump(spec))
    out, local = tmp_path / "study", tmp_path / "local"
    finish(sweep_on(cluster, path, out), out)
    run_sweep(spec, local, executor="local", workers=2, progress=False)
    assert_equal_local(out, table(local))
    assert len(list(out.glob("trunks/*/trunk.json"))) == 1
    with Store(out / "study.db") as store:
        branched = sorted(r["branched_at"] for r in store.results())
    assert branched == [6, 9, 12, 120]  # decay starts of 8, 12, 16 and 160 steps
