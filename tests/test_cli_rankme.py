"""`audioscale rankme`: --embeddings and --model/--data routes, JSON contract, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audioscale.cli import main
from audioscale.metrics import rankme, spectrum_metrics
from audioscale.metrics.rankme import choose_route


def run_json(capsys, args):
    code = main(["rankme", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1  # exactly one JSON object on stdout
    return json.loads(lines[0])


def run_error(capsys, args):
    code = main(["rankme", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audioscale: error: "), err
    return lines[0]


@pytest.fixture
def emb_file(tmp_path):
    z = np.random.default_rng(0).standard_normal((500, 32)).astype(np.float32) + 0.5
    path = tmp_path / "emb.npy"
    np.save(path, z)
    return path, z


def test_embeddings_json(capsys, emb_file):
    path, z = emb_file
    r = run_json(capsys, ["--embeddings", str(path)])
    assert r["rankme"] == pytest.approx(rankme(z), rel=1e-12)
    ref = spectrum_metrics(z).to_dict()
    for key in ("alpha_req", "nesum", "stable_rank", "participation_ratio", "n", "k", "route"):
        assert r[key] == pytest.approx(ref[key]) if isinstance(ref[key], float) else ref[key]
    route = choose_route(500, 32)  # the measured crossover picks the route
    assert (r["n"], r["k"], r["route"], r["centred"], r["eps"]) == (500, 32, route, False, 1e-7)
    assert r["source"] == "embeddings" and r["pool"] == str(path)


def test_embeddings_options(capsys, emb_file):
    path, z = emb_file
    r = run_json(capsys, ["--embeddings", str(path), "--samples", "200", "--seed", "4"])
    assert (r["n"], r["samples"], r["seed"], r["pool_rows"]) == (200, 200, 4, 500)
    again = run_json(capsys, ["--embeddings", str(path), "--samples", "200", "--seed", "4"])
    assert again["rankme"] == r["rankme"]
    c = run_json(capsys, ["--embeddings", str(path), "--centred", "--route", "gram"])
    assert c["centred"] and c["route"] == "gram"
    assert c["rankme"] == pytest.approx(rankme(z - z.mean(0)), rel=1e-6)


def test_embeddings_human_output(capsys, emb_file):
    path, _ = emb_file
    assert main(["rankme", "--embeddings", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("RankMe ") and "N=500, K=32" in out and "alpha-ReQ" in out


def test_bad_embeddings_files(capsys, tmp_path):
    assert "not found" in run_error(capsys, ["--embeddings", str(tmp_path / "nope.npy")])
    text = tmp_path / "text.npy"
    text.write_text("hello")
    assert "not a readable .npy" in run_error(capsys, ["--embeddings", str(text)])
    np.save(tmp_path / "vec.npy", np.ones(10))
    assert "2-D" in run_error(capsys, ["--embeddings", str(tmp_path / "vec.npy")])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "obj.npy" in run_error(capsys, ["--embeddings", str(tmp_path / "obj.npy")])
    z = np.ones((40, 4))
    z[[1, 7], 0] = np.nan
    np.save(tmp_path / "nan.npy", z)
    assert "2 of 40 rows" in run_error(capsys, ["--embeddings", str(tmp_path / "nan.npy")])


def test_missing_arguments(capsys, emb_file):
    assert "--embeddings" in run_error(capsys, [])
    assert "--data" in run_error(capsys, ["--model", "logmel-stats"])
    path, _ = emb_file
    assert "either" in run_error(capsys, ["--embeddings", str(path), "--model", "x"])
    assert "--level" in run_error(capsys, ["--embeddings", str(path), "--level", "token"])


@pytest.fixture
def task_dir(tmp_path):
    """Ten 1 s synthetic clips (tones in noise) plus one file that is not audio."""
    rng = np.random.default_rng(1)
    lines = ["path,label,split"]
    t = np.arange(16000) / 16000
    for i in range(10):
        x = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.05 * rng.standard_normal(16000)
        sf.write(tmp_path / f"c{i}.wav", x.astype(np.float32), 16000)
        lines.append(f"c{i}.wav,tone{i % 3},{'train' if i < 7 else 'test'}")
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    lines.append("broken.wav,tone0,train")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_model_route_with_logmel_stats(capsys, task_dir):
    r = run_json(capsys, ["--model", "logmel-stats", "--data", str(task_dir)])
    assert (r["n"], r["k"], r["level"], r["source"]) == (10, 128, "clip", "model")
    assert r["clips_skipped"] == 1 and r["pool_rows"] == 11
    assert r["model"] == "logmel-stats" and 1 <= r["rankme"] <= 10
    f = run_json(capsys, ["--model", "logmel-stats", "--data", str(task_dir), "--level", "frame"])
    assert (f["k"], f["route"], f["level"]) == (64, "gram", "frame")
    assert f["n"] == 10 * 101  # 1 + 16000 // 160 frames per clip
    s = run_json(
        capsys,
        ["--model", "logmel-stats", "--data", str(task_dir / "manifest.csv"), "--split", "test"],
    )
    assert s["n"] == 3 and s["pool"].endswith("[test]")


def test_model_route_errors(capsys, task_dir, tmp_path):
    assert "unknown encoder" in run_error(capsys, ["--model", "nonsense", "--data", str(task_dir)])
    assert "no manifest" in run_error(
        capsys, ["--model", "logmel-stats", "--data", str(tmp_path / "none")]
    )
    assert "layer 3" in run_error(
        capsys, ["--model", "logmel-stats", "--data", str(task_dir), "--layer", "3"]
    )
