"""The Ray executor on a local Ray instance (ray.init(num_cpus=2)): results recorded by the
driver, failures recorded with their reason, a lost worker's run retried, and a real tiny
sweep that gives the same results as the local executor. tests/test_ray_cluster.py runs it
on a multi-node cluster."""

from __future__ import annotations

import pytest
import sweep_helpers
from sweep_helpers import lossy_job, make_corpus, tiny_spec

from audioscale.sweep.ray_executor import attempts
from audioscale.sweep.runner import run_sweep
from audioscale.sweep.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local instance whose auth token is its own: Ray 2.59+ turns token auth on for a
    local instance (RAY_AUTH_MODE=token in this process's environment, restored after)
    and makes the token in ~/.ray/auth_token, so HOME is a temporary folder meanwhile."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(tmp_path_factory.mktemp("ray-home")))
        for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.setenv(var, "")  # records the value to restore
            env.delenv(var)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray.cloudpickle.register_pickle_by_value(sweep_helpers)  # workers cannot import tests/
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_failures_and_lost_workers(local_ray, corpus, tmp_path):
    spec = tiny_spec(corpus, axes={"steps": [2, 8, 16]}, baselines={"random_init": False})
    out = tmp_path / "study"
    s = run_sweep(spec, out, executor="ray", workers=2, progress=False, job_fn=lossy_job)
    assert s["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 1}
    assert [f["error"] for f in s["failed"]] == ["ValueError: boom at step 3"]
    assert (out / "runs").is_dir() and any(out.glob("lost-*"))  # s16 was lost once, retried
    tries = {d.name.split("-")[2]: len(attempts(d)) for d in (out / "runs").glob("atto-*")}
    assert tries == {"s2": 1, "s8": 1, "s16": 2}  # one line per attempt in ray_node.jsonl
    with Store(out / "study.db") as store:
        rankme = {r["name"]: r["rankme"] for r in store.results()}
    assert rankme == {"atto-hall-s2": 3.0, "atto-hall-s16": 17.0, "logmel-stats": 1.0}


def test_real_sweep_on_ray_matches_local(local_ray, corpus, tmp_path):
    spec = tiny_spec(corpus, axes={"steps": [8]}, baselines={"random_init": False})
    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    s = run_sweep(spec, ray_dir, executor="ray", workers=2, progress=False)
    assert s["counts"]["done"] == 2 and s["exports"]["csv"].endswith("results.csv")
    run_sweep(spec, local_dir, executor="local", workers=2, progress=False)

    def table(d):
        with Store(d / "study.db") as store:
            return sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in store.results()),
                          key=lambda r: r["run_id"])  # fmt: skip

    assert table(ray_dir) == table(local_dir)


def test_wsd_sweep_on_ray_shares_one_trunk_and_matches_local(local_ray, corpus, tmp_path):
    """Two budgets of one WSD trunk as two Ray tasks at once: the second waits on the
    trunk's lock or starts from its kept state, whichever node runs it; the results
    equal the local executor's to the bit."""
    spec = tiny_spec(corpus, axes={"steps": [8, 16]}, baselines={"random_init": False,
                     "logmel_stats": False})  # fmt: skip
    spec["base"]["train"].update(schedule="wsd", warmup_steps=2, cooldown_fraction=0.25)
    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    s = run_sweep(spec, ray_dir, executor="ray", workers=2, progress=False)
    assert s["counts"]["done"] == 2
    run_sweep(spec, local_dir, executor="local", workers=2, progress=False)
    assert len(list(ray_dir.glob("trunks/*/trunk.json"))) == 1

    def table(d):
        with Store(d / "study.db") as store:
            rows = [{k: v for k, v in r.items() if k != "wall_s"} for r in store.results()]
        return sorted(rows, key=lambda r: r["run_id"])

    ray_rows = table(ray_dir)
    assert ray_rows == table(local_dir)
    assert sorted(r["branched_at"] for r in ray_rows) == [6, 12]
