"""A run's pipeline and the local executor, end to end on a tiny synthetic corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sweep_helpers import flaky_job, make_corpus, tiny_spec

from audioscale.cli import main
from audioscale.evaluate import records
from audioscale.evaluate.context import build_eval_context, pool_overlap
from audioscale.evaluate.slices import run_train_rows
from audioscale.sweep.runner import run_sweep
from audioscale.sweep.spec import load_sweep
from audioscale.sweep.store import Store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def study(corpus, tmp_path_factory):
    """One real sweep through the CLI: 2 trained runs + random-init + log-mel baselines."""
    import yaml

    spec = corpus / "sweep.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(corpus)))
    out = tmp_path_factory.mktemp("study")
    code = main(["sweep", "--config", str(spec), "--out", str(out), "--workers", "2", "--json"])
    assert code == 0
    return out


def test_sweep_records_every_run_with_metrics_and_probes(study):
    with Store(study / "study.db") as store:
        assert store.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 0}
        rows = {r["kind"]: r for r in store.results()}
        ck = store.checkpoint_metrics()
        runs = store.runs()
    assert set(rows) == {"trained", "random-init", "baseline"}
    trained = [r for r in runs if r["kind"] == "trained"]
    assert len(trained) == 2 and all(r["attempts"] == 1 for r in runs)
    t = rows["trained"]
    pool_n = 8 + 2 * 2 * 8  # heldout files + every task clip
    for r in rows.values():
        assert 1.0 <= r["rankme"] <= r["rankme_K"] and r["rankme_N"] == pool_n
        assert r["rankme_pool"] == t["rankme_pool"]  # one shared pool, named
        assert 0.0 <= r["suite"] <= 1.0 and r["task.tone.linear"] is not None
        assert r["pool_overlap"] is False
    assert t["params"] > 0 and t["epochs"] > 0 and t["steps"] in (8, 12)
    assert t["examples_seen"] == t["steps"] * 8 and t["data_hours"] == pytest.approx(24 / 3600)
    # the gap compares RankMe at equal N: the 40-clip pool is subsampled to the 8 crops
    assert t["rankme_gap_N"] == t["rankme_train_N"] == 8 < t["rankme_N"]
    assert t["rankme_gap_train"] == pytest.approx(t["rankme_train"])
    assert t["rankme_gap"] == pytest.approx(t["rankme_gap_train"] - t["rankme_gap_pool"])
    assert t["rankme_gap_pool"] < t["rankme"]  # fewer rows, lower RankMe
    # held-out loss at the reference mask ratio and clip length; the run's own beside it
    assert t["heldout_mask_ratio"] == 0.75 and t["heldout_clip_frames"] == 200
    assert t["heldout_loss"] > 0 and t["heldout_loss_own"] > 0
    assert t["heldout_loss"] != pytest.approx(t["heldout_loss_own"], rel=1e-6)  # 2 s vs 1 s
    # train and heldout slices: 1-s crops (the pool's median clip), as many as the 8
    # heldout crops allow, so the two values are comparable
    assert t["rankme_train_N"] == 8 and 1.0 <= t["rankme_heldout"] <= 8.0
    assert t["rankme_gap_heldout"] == pytest.approx(t["rankme_train"] - t["rankme_heldout"])
    assert rows["random-init"]["width"] == 64 and rows["random-init"]["steps"] == 0
    # checkpoints at 1/4, 1/2 and the end for each trained run
    assert sorted(c["fraction"] for c in ck) == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    assert all(math.isfinite(c["rankme"]) and c["loss"] is not None for c in ck)
    csv_text = (study / "results.csv").read_text()
    assert csv_text.count("\n") == 5 and "rankme_gap" in csv_text
    # what run.py writes is declared in evaluate.records, and the CSV header derives from it
    fixed = records.ResultRow.names()
    assert csv_text.splitlines()[0].split(",")[: len(fixed)] == fixed
    results = [json.loads(p.read_text()) for p in study.glob("runs/*/result.json")]
    assert len(results) == 4
    for res in results:
        assert set(res["info"]) <= set(records.RunInfo.names())
        assert all(set(s) <= set(records.SpectralRow.names()) for s in res["spectral"])
        assert all(set(p) <= set(records.ProbeRow.names()) for p in res["probes"])
    assert (study / "results.parquet").is_file() and (study / "sweep.yaml").is_file()


def test_rerun_skips_finished_runs_and_status(study, corpus, capsys):
    before = Store(study / "study.db").results()
    summary = run_sweep(study / "sweep.yaml", study, workers=2, progress=False)
    assert summary["counts"]["done"] == 4
    with Store(study / "study.db") as store:
        assert [r["attempts"] for r in store.runs()] == [1, 1, 1, 1]  # nothing re-executed
        assert store.results() == before
    capsys.readouterr()
    assert main(["status", str(study), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["done"] == 4 and st["eta_s"] == 0.0 and st["failed"] == []


def test_pool_overlap_is_computed(corpus):
    sweep = load_sweep(tiny_spec(corpus))
    cfg = sweep.trained[0].config
    train = run_train_rows(cfg)
    held = build_eval_context(sweep.base)
    assert pool_overlap(held.pool_rows, train) is False
    same = build_eval_context(sweep.base, split="train", include_tasks=False)
    assert pool_overlap(same.pool_rows, train) is True


def test_failures_are_recorded_never_stop_the_sweep_and_retry(corpus, tmp_path):
    spec = tiny_spec(corpus, axes={"steps": [4, 8, 16]}, baselines={"logmel_stats": False})
    out = tmp_path / "study"
    s = run_sweep(spec, out, workers=2, progress=False, job_fn=flaky_job)
    assert s["counts"] == {"pending": 0, "running": 0, "done": 2, "failed": 2}
    reasons = {f["run_id"].split("-")[2]: f["error"] for f in s["failed"]}
    assert reasons == {"s4": "worker exited with code 3 and no result",
                       "s8": "ValueError: boom at step 3"}  # fmt: skip
    # without --retry-failed nothing changes; with it, the fixed run now passes
    assert run_sweep(spec, out, progress=False, job_fn=flaky_job)["counts"]["failed"] == 2
    (out / "fixed").touch()
    s = run_sweep(spec, out, retry_failed=True, progress=False, job_fn=flaky_job)
    assert s["counts"]["done"] == 3 and [f["run_id"][:7] for f in s["failed"]] == ["atto-ha"]
    with Store(out / "study.db") as store:
        attempts = {r["run_id"].split("-")[2]: r["attempts"] for r in store.runs()}
    assert attempts["s8"] == 2 and attempts["s16"] == 1


def test_cli_errors_are_one_line(corpus, tmp_path, capsys):
    import yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_spec(corpus, axes={"model.widht": [64]})))
    assert main(["sweep", "--config", str(bad), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audioscale: error:") and "model.widht" in err and "\n" not in err
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "not a study folder" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_spec(corpus)))
    assert main(["sweep", "--config", str(good), "--out", str(good)]) == 2  # --out a file
    assert "is a file" in capsys.readouterr().err


def test_study_command_fits_and_reports(study, capsys):
    """`audioscale study FILE --out DIR` on a finished sweep: nothing re-runs, fits.json
    and report.html are written, the JSON names them and the headline."""
    capsys.readouterr()
    assert main(["study", str(study / "sweep.yaml"), "--out", str(study), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["counts"]["done"] == 4 and res["failed"] == []
    assert (study / "report.html").is_file() and (study / "fits.json").is_file()
    assert res["headline"]["n_runs"] == 2 and "verdict" in res["headline"]
    # per-clip outcomes of every run (trained and baselines) give SEs and paired intervals
    with Store(study / "study.db") as store:
        stored, rows = store.outcomes(), store.results()
    assert len(stored) == 4 and all(r["suite_se"] > 0 for r in rows)
    fits = json.loads((study / "fits.json").read_text())
    p = fits["paired"]
    assert p["runs_with_outcomes"] == 4 and p["protocol"] == "linear"
    for r in rows:  # the fit's SE is the one recorded at evaluation (same clips, same seed)
        assert p["suite_se"][r["run_id"]]["se"] == pytest.approx(r["suite_se"], rel=1e-9)
    pairs = p["vs_own_random_init"]["pairs"]
    assert len(pairs) == 2 and all(x["ci"] is not None and x["outcome"] for x in pairs)
    print("\n".join(res["headline"]["claims"]))  # the sample headline of the report
    assert any(c.startswith("Trained runs that clearly beat") for c in res["headline"]["claims"])
    assert "Paired comparisons over test clips" in (study / "report.html").read_text()


def _sweep_one_worker(root, spec: dict, out):
    """Write ``spec`` next to the corpus and run it through the CLI with one worker."""
    import yaml

    cfg = root / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    assert main(["sweep", "--config", str(cfg), "--out", str(out), "--workers", "1"]) == 0
    return out


def test_corrupt_files_never_kill_a_sweep(tmp_path):
    """One truncated pool file, one text-as-wav pool file and one corrupt task clip: every
    run still finishes, and the bad files are skipped with their reasons, not hidden."""

    root = make_corpus(tmp_path / "corpus", n_train=12, n_heldout=4, per_class=6)
    pool = root / "pool" / "audio"
    (pool / "train_000.wav").write_bytes((pool / "train_000.wav").read_bytes()[:300])
    (pool / "train_001.wav").write_text("this is not audio\n")
    (root / "tasks" / "tone" / "low_0.wav").write_bytes(b"RIFF\x00\x00garbage")
    spec = tiny_spec(root, axes={"steps": [6]})
    spec["baselines"] = {"random_init": False, "logmel_stats": True}
    with Store(_sweep_one_worker(root, spec, tmp_path / "study") / "study.db") as store:
        assert store.counts()["done"] == 2 and store.counts()["failed"] == 0
        rows = store.results()
    for r in rows:
        assert math.isfinite(r["rankme"]) and 0.0 <= r["suite"] <= 1.0
    # the feature cache recorded the two bad pool files with their reasons
    items = [
        e
        for index in (root / "cache" / "features").rglob("index.json")
        for e in json.loads(index.read_text())["items"]
    ]
    skipped = [e for e in items if e.get("status") != "ok"]
    assert {e["path"].rsplit("/", 1)[-1] for e in skipped} >= {"train_000.wav", "train_001.wav"}
    assert all(e.get("reason") for e in skipped)


def test_changed_pool_re_evaluates_finished_runs_without_retraining(tmp_path):
    """Every run of a study is measured on the study's current pool: when the pool's
    manifest gains files, a rerun evaluates finished runs again (keeping their training)
    instead of leaving them in the results table on the old pool and N."""
    import numpy as np
    import soundfile as sf

    root = make_corpus(tmp_path / "c", n_train=8, n_heldout=4, per_class=4)
    spec = tiny_spec(root, axes={"steps": [4]},
                     baselines={"random_init": False, "logmel_stats": False})  # fmt: skip
    out = tmp_path / "study"
    run_sweep(spec, out, workers=1, progress=False)
    run_dir = next((out / "runs").iterdir())
    trained_at = (run_dir / "done.json").stat().st_mtime_ns
    manifest = root / "pool" / "manifest.csv"
    extra = [f"audio/extra_{i}.wav,1.0,synth,heldout" for i in range(3)]
    for i in range(3):
        x = 0.1 * np.random.default_rng(i).standard_normal(16000)
        sf.write(root / "pool" / "audio" / f"extra_{i}.wav", x.astype(np.float32), 16000)
    manifest.write_text(manifest.read_text() + "\n".join(extra) + "\n")
    run_sweep(spec, out, workers=1, progress=False)
    with Store(out / "study.db") as store:
        pool, n_pool = store.meta()["eval_pool"], store.meta()["eval_pool_n"]
        (row,) = store.results()
        assert store.runs()[0]["attempts"] == 2
    assert row["rankme_pool"] == pool and row["rankme_N"] == n_pool
    assert (run_dir / "done.json").stat().st_mtime_ns == trained_at  # not retrained


def test_frame_level_rankme_streams_in_a_sweep(tmp_path):
    """eval.rankme_level=frame: every frame of the pool is measured (n = frames, not clips),
    through the streaming Gram route; the train/heldout slices still run."""

    root = make_corpus(tmp_path / "corpus", n_train=8, n_heldout=4, per_class=4)
    spec = tiny_spec(root, axes={"steps": [6]})
    spec["base"]["eval"]["rankme_level"] = "frame"
    spec["baselines"] = {"random_init": False, "logmel_stats": False}
    with Store(_sweep_one_worker(root, spec, tmp_path / "study") / "study.db") as store:
        (row,) = store.results()
    n_clips = 4 + 2 * 2 * 4  # heldout files + task clips, 1 s each
    assert row["rankme_N"] > 10 * n_clips  # 25 tokens per second of audio
    assert 1.0 <= row["rankme"] <= row["rankme_K"] and row["rankme_train"] is not None


def test_rankme_gap_at_equal_n_removes_the_sample_size_effect():
    """One Gaussian for both sides: at unequal N (90 vs 1,024 rows) RankMe differs by
    several units; subsampled to equal N the gap is near 0."""
    from audioscale.metrics import rankme
    from audioscale.sampling import subsample

    rng = np.random.default_rng(0)
    z = rng.standard_normal((1024, 64)) * np.geomspace(1, 0.01, 64)
    train, pool = z[:90], z[90:]
    assert rankme(train) - rankme(pool) < -3  # the confound
    eq = subsample(pool, len(train), 0, "permutation")
    assert eq.shape == train.shape and abs(rankme(train) - rankme(eq)) < 1.5
    assert np.array_equal(subsample(pool, 90, 0, "permutation"), eq)  # deterministic
    assert np.array_equal(subsample(pool, 5000, 0, "permutation"), pool)  # never grows


def test_reference_heldout_loss_does_not_depend_on_the_runs_mask_ratio(study, tmp_path):
    """The same weights scored at the run's own mask ratio differ by ratio; the reference
    loss is the same whatever ratio the run's config names."""
    import shutil

    import torch
    import yaml

    from audioscale.evaluate.context import EvalContext
    from audioscale.evaluate.heldout import REF_MASK_RATIO, reference_heldout_loss
    from audioscale.train.checkpoint import load_mae

    done = sorted((study / "runs").glob("*/done.json"))  # trained runs only have one
    src = done[0].parent
    ctx = EvalContext(pool_name="p", pool_rows=[], task_dirs=[], device="cpu")
    base = reference_heldout_loss(src, ctx)
    other = tmp_path / "run"
    shutil.copytree(src, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["model"]["mask_ratio"] = 0.5
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    moved = reference_heldout_loss(other, ctx)
    assert moved["heldout_loss"] == pytest.approx(base["heldout_loss"], rel=1e-6)
    assert base["heldout_mask_ratio"] == REF_MASK_RATIO
    model, _ = load_mae(other)
    x = torch.randn(4, 64, base["heldout_clip_frames"]) * 10 - 45
    with torch.no_grad():
        own = [float(model(x, mask_ratio=r, generator=torch.Generator().manual_seed(0)).loss)
               for r in (0.5, 0.75, 0.9)]  # fmt: skip
    assert len({round(v, 6) for v in own}) == 3  # the ratio changes the score
