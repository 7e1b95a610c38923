"""``audioscale probe`` on the small demo corpus: both directions (a real baseline is
clearly above chance, a constant encoder is at chance), cache reuse, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audioscale.cli import main
from audioscale.config import FrontendConfig
from audioscale.embed.base import Encoder
from audioscale.probe.suite import evaluate

TASKS = {"lang-id", "speaker-id", "spoken-digit", "instrument-family", "pitch", "sfx-category"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("probe_cache")


@pytest.fixture(scope="module")
def logmel_json(demo_small, cache):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["probe", "--model", "logmel-stats", "--task", str(demo_small / "tasks"),
                     "--cache", str(cache), "--json"])  # fmt: skip
    assert code == 0
    return json.loads(buf.getvalue())


def test_logmel_stats_is_clearly_above_chance(logmel_json):
    out = logmel_json
    assert set(out["tasks"]) == TASKS
    assert set(out["domains"]) == {"speech", "music", "environment"}
    above = 0
    for res in out["tasks"].values():
        assert set(res) == {"linear", "knn"}
        for p in ("linear", "knn"):
            assert res[p]["metric"] == "accuracy" and res[p]["n_test"] >= 15
        best = max(res["linear"]["score"], res["knn"]["score"])
        above += best >= res["linear"]["chance"] + 0.15
    assert above >= 3
    chance = np.mean([r["linear"]["chance"] for r in out["tasks"].values()])
    assert out["suite"] > chance + 0.1
    assert out["suite"] == pytest.approx(out["suite_by_protocol"]["linear"])
    assert out["protocol_settings"]["knn"]["temperature"] == 0.07


class Constant(Encoder):
    """Every clip gets the same frames: no information about the label."""

    name, kind, sample_rate, dim, hop_seconds, n_layers = "constant", "baseline", 16000, 8, 0.01, 1
    pads_exactly = True

    def __init__(self):
        self.frontend_config = FrontendConfig()  # reuses the log-mel cache of the test above
        self.max_mel_frames, self.min_mel_frames = None, 1
        self.vec = torch.linspace(-1.0, 2.0, self.dim)

    def identity(self):
        return "constant-v1"

    def n_frames(self, n):
        return 1 + n // 160

    def n_frames_from_mel(self, t):
        return t

    def frames(self, wave, layers, lengths=None):
        return [self.vec.expand(wave.shape[0], 1 + wave.shape[1] // 160, -1) for _ in layers]

    def frames_from_mel(self, mel, layers, lengths=None):
        return [self.vec.expand(mel.shape[0], mel.shape[2], -1) for _ in layers]


def test_constant_encoder_scores_at_chance(demo_small, cache, logmel_json):
    from collections import Counter

    from audioscale.data.manifest import load_task

    res = evaluate(Constant(), [demo_small / "tasks"], cache_dir=cache, progress=False,
                   linear_kw={"epochs": 50})  # fmt: skip
    for name, r in res.tasks.items():
        task = load_task(demo_small / "tasks" / name)
        lin, knn = r["linear"], r["knn"]
        # standardised, every clip's features are zeros: the linear probe gives one
        # prediction for every test clip, so its score is one class's share of the test
        # split (of each fold's, for a K-fold task); kNN sees all similarities tied, so
        # its votes carry no label information
        for fold, score in zip(task.folds or ["test"], lin.get("fold_scores", [lin["score"]]),
                               strict=True):  # fmt: skip
            test = [row["label"] for row in task.rows if row["split"] == fold]
            shares = {0.0} | {n / len(test) for n in Counter(test).values()}  # 0: a class absent
            assert any(abs(score - v) < 1e-9 for v in shares), (name, fold, lin)
        assert lin["settings"]["features"] == knn["settings"]["features"] == "standardised"
        assert knn["score"] <= knn["chance"] + 0.1, (name, knn)
    assert res.suite < logmel_json["suite"] - 0.1


def test_second_run_reads_the_cache(demo_small, cache, logmel_json, monkeypatch, capsys):
    import audioscale.embed.engine as ex

    def no_extraction(*a, **k):
        raise AssertionError("extraction ran although the cache holds the embeddings")

    monkeypatch.setattr(ex.Engine, "__call__", no_extraction)
    code = main(["probe", "--model", "logmel-stats", "--task", str(demo_small / "tasks" / "pitch"),
                 "--cache", str(cache), "--protocol", "knn"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "pitch" in out and "suite" in out
    assert out.count("knn") >= 1 and "linear" not in out.split("suite")[0]


def test_probe_cli_errors_are_one_line(demo_small, tmp_path, capsys):
    task = str(demo_small / "tasks" / "pitch")
    assert main(["probe", "--model", "nonsense", "--task", task, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audioscale: error: unknown encoder") and err.count("\n") == 1
    assert main(["probe", "--model", "logmel-stats", "--task", task, "--protocol", "svm"]) == 2
    assert "protocol" in capsys.readouterr().err
    assert main(["probe", "--model", "logmel-stats", "--task", str(tmp_path / "none")]) == 2
    assert "task folder not found" in capsys.readouterr().err


def test_probe_refuses_an_encoder_that_fails_the_checker(demo_small, monkeypatch, capsys):
    import audioscale.embed.registry as reg

    class Bad(Constant):
        def frames(self, wave, layers, lengths=None):
            return [f[..., :3] for f in super().frames(wave, layers)]

    monkeypatch.setattr(reg, "get_encoder", lambda spec: Bad())
    code = main(["probe", "--model", "x", "--task", str(demo_small / "tasks" / "pitch")])
    assert code == 2
    assert "failed the checker" in capsys.readouterr().err
