"""Your own data in one command: ``data import-pool``, ``import-hear``, ``import-xares``,
``import-csv``, named weighted suites and TensorBoard curves.

Every fixture is built here, in the exact layout of its source, from demo-corpus clips
(the small demo's ``spoken-digit`` task):

- HEAR 2021: the hear-preprocess task folder described on hearbenchmark.com ("HEAR 2021
  Rules", "Tasks"): ``task_metadata.json``, ``labelvocabulary.csv``, ``fold00.json`` …
  (file name → list of labels) and ``16000/<split>/<file>``.
- X-ARES: webdataset shards named by the xares wheel's own ``tasks/esc50_task.py``
  (``wds-audio-fold-<k>-*.tar``; per sample ``<key>.wav`` + ``<key>.json`` holding the
  ``label`` its ``label_processor`` reads).
- ESC-50 (``meta/esc50.csv``: filename, fold, target, category, esc10, src_file, take;
  ``audio/``) and UrbanSound8K (``metadata/UrbanSound8K.csv``: slice_file_name, fsID,
  start, end, salience, fold, classID, class; ``audio/fold<N>/``), as their READMEs list.

The imported pool trains the tiny run (atto, 3 steps) that then probes every imported
task end to end. Each bad-input case of the issue has its own assertion: one line per
problem naming the file and reason, the good clips imported, exit non-zero only when
nothing could be imported.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from audioscale.cli import main
from audioscale.data.manifest import load_pool, load_task

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ("1", "2", "3")
PER_LABEL = 5


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def clips(demo_small) -> dict[str, list[Path]]:
    """``PER_LABEL`` demo clips for each of three spoken digits."""
    task = load_task(demo_small / "tasks" / "spoken-digit")
    out: dict[str, list[Path]] = {lab: [] for lab in LABELS}
    for r in task.rows:
        if r["label"] in out and len(out[r["label"]]) < PER_LABEL:
            out[r["label"]].append(Path(r["path"]))
    assert all(len(v) == PER_LABEL for v in out.values())
    return out


# --------------------------------------------------------------------------- pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory, clips) -> Path:
    """``import-pool`` on a folder of demo clips, a zip of two more and four bad files."""
    root = tmp_path_factory.mktemp("pool")
    src = root / "my-audio"
    for lab, files in clips.items():
        for f in files:
            (src / "digits" / lab).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, src / "digits" / lab / f.name)
    with zipfile.ZipFile(src / "more.zip", "w") as zf:
        zf.write(clips["1"][0], "inner/a.wav")
        zf.writestr("inner/notes.txt", "not audio")
    (src / "bad").mkdir()
    (src / "bad" / "empty.wav").write_bytes(b"")
    (src / "bad" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 4)
    (src / "bad" / "silent.wav").write_bytes(_silent_wav())
    (src / "readme.txt").write_text("notes")
    return root


def _silent_wav() -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, dtype=np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_import_pool_keeps_good_files_lists_bad_ones(pool, capsys):
    code, _, err = run_cli(["data", "import-pool", str(pool / "my-audio"), "--out",
                            str(pool / "out"), "--heldout-fraction", "0.3"], capsys)  # fmt: skip
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    assert len(lines) == 3  # one line per bad file, naming file and reason
    assert any("empty.wav: empty:" in ln for ln in lines)
    assert any("corrupt.wav: corrupt:" in ln for ln in lines)
    assert any("silent.wav: silent:" in ln for ln in lines)
    rows = load_pool(pool / "out")
    assert len(rows) == 3 * PER_LABEL + 1
    assert any(r["path"].endswith("more.zip::inner/a.wav") for r in rows)
    assert {r["split"] for r in rows} == {"train", "heldout"}
    assert all(r["source"] == "my-audio" and r["duration"] > 0 for r in rows)
    assert "16 of 19 files kept" in err and "1 non-audio ignored" in err


def test_import_pool_rerun_scans_only_new_files_and_keeps_splits(pool, tmp_path, clips):
    from audioscale.data.import_pool import import_pool

    src = tmp_path / "grow"
    shutil.copytree(pool / "my-audio" / "digits", src)
    first = import_pool([src], tmp_path / "p", heldout_fraction=0.3)
    assert first.n_scanned == first.n_files == 3 * PER_LABEL
    before = {r["path"]: r["split"] for r in load_pool(tmp_path / "p")}
    shutil.copy(clips["2"][0], src / "new.wav")
    again = import_pool([src], tmp_path / "p", heldout_fraction=0.3)
    assert again.n_scanned == 1 and again.n_kept == 3 * PER_LABEL + 1
    after = {r["path"]: r["split"] for r in load_pool(tmp_path / "p")}
    assert all(after[p] == s for p, s in before.items())  # adding files moves no old one
    copied = import_pool([src], tmp_path / "c", copy=True)
    rows = load_pool(tmp_path / "c")
    assert all(Path(r["path"]).is_relative_to(tmp_path / "c" / "audio") for r in rows)
    assert copied.n_kept == len(rows) == 3 * PER_LABEL + 1


def test_import_pool_resumes_after_an_interrupt(pool, tmp_path, monkeypatch):
    import audioscale.data.import_pool as ip

    real, done = ip.scan_file, []

    def interrupted_after_7(args):
        if len(done) == 7:
            raise KeyboardInterrupt
        done.append(args)
        return real(args)

    src = pool / "my-audio" / "digits"
    monkeypatch.setattr(ip, "scan_file", interrupted_after_7)
    with pytest.raises(KeyboardInterrupt):
        ip.import_pool([src], tmp_path / "p", workers=1)
    monkeypatch.setattr(ip, "scan_file", real)
    rep = ip.import_pool([src], tmp_path / "p", workers=1)
    assert rep.n_scanned == 3 * PER_LABEL - 7 and rep.n_kept == 3 * PER_LABEL


def _tone(path: Path, hz: float, fmt: str | None = None, seconds: float = 1.0) -> None:
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), 16000, format=fmt)


def _peak_hz(path: str) -> float:
    import soundfile as sf

    x, sr = sf.read(path)
    return float(np.argmax(np.abs(np.fft.rfft(x))) * sr / len(x))


def test_import_pool_copy_rerun_never_reuses_another_files_wav(tmp_path):
    """Regression: --copy named a WAV by its stem and an existing WAV was kept, so a new
    ``a.flac`` sorted before ``a.wav`` took ``a.wav``'s old conversion (wrong audio), and a
    changed file kept its stale conversion."""
    from audioscale.data.import_pool import import_pool

    src = tmp_path / "src"
    src.mkdir()
    _tone(src / "a.wav", 440)
    _tone(src / "b.wav", 880)
    import_pool([src], tmp_path / "p", copy=True, workers=1)
    _tone(src / "a.flac", 220, "FLAC")
    import_pool([src], tmp_path / "p", copy=True, workers=1)
    rows = load_pool(tmp_path / "p")
    assert sorted(_peak_hz(r["path"]) for r in rows) == [220, 440, 880]
    _tone(src / "b.wav", 660, seconds=0.5)  # changed in place: converted again
    import_pool([src], tmp_path / "p", copy=True, workers=1)
    rows = load_pool(tmp_path / "p")
    assert sorted(_peak_hz(r["path"]) for r in rows) == [220, 440, 660]
    assert len(list((tmp_path / "p" / "audio" / "src").glob("*.wav"))) == 3  # stale one gone


def test_import_pool_rescans_when_the_length_limit_changes(tmp_path):
    """Regression: the scan cache ignored ``limit_seconds``, so files rejected as too long
    stayed rejected after a rerun with a higher limit."""
    from audioscale.data.import_pool import import_pool
    from audioscale.data.taskwrite import NothingImported

    src = tmp_path / "src"
    src.mkdir()
    _tone(src / "a.wav", 440, seconds=2.0)
    with pytest.raises(NothingImported):
        import_pool([src], tmp_path / "p", limit_seconds=1.0, workers=1)
    rep = import_pool([src], tmp_path / "p", limit_seconds=10.0, workers=1)
    assert rep.n_scanned == 1 and rep.n_kept == 1


def test_import_pool_nested_or_repeated_sources_give_one_row_per_file(tmp_path):
    """Regression: ``import-pool data data/sub`` listed each file of ``sub`` twice, under
    two relative paths, so one file could sit in both train and heldout."""
    from audioscale.data.import_pool import import_pool

    sub = tmp_path / "data" / "sub"
    sub.mkdir(parents=True)
    for i in range(8):
        _tone(sub / f"t{i}.wav", 300 + 50 * i)
    (tmp_path / "data" / "link.wav").symlink_to(sub / "t0.wav")
    srcs = [tmp_path / "data", sub, tmp_path / "data"]
    rep = import_pool(srcs, tmp_path / "p", heldout_fraction=0.5, workers=1)
    rows = load_pool(tmp_path / "p")
    assert len(rows) == rep.n_kept == 8 and rep.n_duplicates == 9
    assert len({Path(r["path"]).resolve() for r in rows}) == 8
    assert {r["source"] for r in rows} == {"data"}


def test_import_pool_rerun_under_another_spelling_scans_nothing(tmp_path, monkeypatch):
    """Regression: SRC paths were made absolute but not normalised, so ``../data`` from
    another folder rescanned every file and wrote ``x/../data/...`` paths."""
    from audioscale.data.import_pool import import_pool

    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _tone(tmp_path / "data" / "a.wav", 440)
    monkeypatch.chdir(tmp_path)
    assert import_pool(["data"], "p", workers=1).n_scanned == 1
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert import_pool(["../data"], "../p", workers=1).n_scanned == 0
    assert ".." not in load_pool(tmp_path / "p")[0]["path"]


def test_long_paths_make_short_wav_names(tmp_path):
    """Regression: --copy (and the task importers) named a WAV after the whole relative
    path, so a deep or long path hit "File name too long" and aborted the import."""
    from audioscale.data.import_csv import import_csv
    from audioscale.data.import_pool import import_pool

    deep = tmp_path / "src" / ("d" * 150)
    deep.mkdir(parents=True)
    _tone(deep / ("f" * 150 + ".wav"), 440)
    assert import_pool([tmp_path / "src"], tmp_path / "p", copy=True, workers=1).n_kept == 1
    long = "g" * 245 + ".wav"
    _tone(deep / long, 440)
    _tone(deep / "b.wav", 880)
    _write_csv(tmp_path / "m.csv", ["file", "label"], [[long, "a"], ["b.wav", "b"]])
    assert import_csv(tmp_path / "m.csv", deep, tmp_path / "t", "file", "label").n_kept == 2


def test_import_pool_with_nothing_usable_exits_non_zero(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.wav").write_bytes(b"")
    code, _, err = run_cli(["data", "import-pool", str(tmp_path / "src"), "--out",
                            str(tmp_path / "out")], capsys)  # fmt: skip
    assert code != 0 and "no usable audio" in err
    assert "skipped src/x.wav: empty:" in err  # the problems are listed before the error line
    from audioscale.data.import_pool import walk

    bad: list = []
    assert walk(tmp_path / "vanished", bad=bad) == ([], 0)  # a folder that cannot be listed
    assert bad[0].kind == "unreadable" and "vanished" in bad[0].path


@pytest.fixture(scope="module")
def run(pool, tmp_path_factory):
    """The tiny run (atto, 3 steps) pretrained on the imported pool."""
    from export_helpers import pretrain_tiny

    from audioscale.data.import_pool import import_pool

    root = tmp_path_factory.mktemp("run")
    import_pool([pool / "my-audio"], root / "pool", heldout_fraction=0.3)
    return pretrain_tiny(root / "pool", root)


def probe(run: Path, tasks: list[Path], suite: Path | None = None) -> dict:
    from audioscale.embed.registry import get_encoder
    from audioscale.probe.suite import evaluate

    res = evaluate(get_encoder(str(run)), tasks, suite=suite, device="cpu", progress=False)
    return res.to_json()


def _assert_probed(out: dict, name: str, n_test: int, metric: str = "accuracy") -> None:
    for p in ("linear", "knn"):
        r = out["tasks"][name][p]
        assert r["metric"] == metric and r["n_test"] == n_test
        assert 0.0 <= r["score"] <= 1.0


# --------------------------------------------------------------------------- HEAR 2021


def hear_task(root: Path, clips, bad: bool = True, **meta) -> Path:
    """A hear-preprocess k-fold scene task (3 folds); ``bad`` adds one of each problem."""
    d = root / "digits-v1.0.0-full"
    folds = ["fold00", "fold01", "fold02"]
    md = {"task_name": "digits", "version": "v1.0.0", "mode": "full",
          "embedding_type": "scene", "prediction_type": "multiclass",
          "split_mode": "new_split_kfold", "nfolds": 3, "splits": folds,
          "sample_duration": 1.0, "evaluation": ["top1_acc"]} | meta  # fmt: skip
    d.mkdir(parents=True)
    (d / "task_metadata.json").write_text(json.dumps(md))
    (d / "labelvocabulary.csv").write_text(
        "idx,label\n" + "".join(f"{i},{lab}\n" for i, lab in enumerate(LABELS))
    )
    labels = {f: {} for f in folds}
    for lab, files in clips.items():
        for i, f in enumerate(files[:3]):
            fold = folds[i % 3]
            (d / "16000" / fold).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, d / "16000" / fold / f"{lab}_{i}.wav")
            labels[fold][f"{lab}_{i}.wav"] = [int(lab) if lab == "3" else lab]  # ints occur
    if bad:
        labels["fold00"]["ghost.wav"] = ["1"]  # listed, not there
        (d / "16000" / "fold01" / "odd.wav").write_bytes(clips["1"][3].read_bytes())
        labels["fold01"]["odd.wav"] = ["7"]  # outside labelvocabulary.csv
        (d / "16000" / "fold02" / "broken.wav").write_bytes(b"RIFF\x00\x01\x00\x00WAVEfmt ")
        labels["fold02"]["broken.wav"] = ["2"]  # corrupt
        (d / "16000" / "fold02" / "empty.wav").write_bytes(b"")
        labels["fold02"]["empty.wav"] = ["3"]  # empty
        (d / "fold07.json").write_text(json.dumps({"x.wav": ["1"]}))  # unknown split
    for f in folds:
        (d / f"{f}.json").write_text(json.dumps(labels[f]))
    return d


def test_import_hear_folds_reports_each_problem_and_probes(tmp_path, clips, run, capsys):
    src = hear_task(tmp_path / "hear", clips)
    suite = tmp_path / "suite.yaml"
    code, _, err = run_cli(["data", "import-hear", str(src), "--out", str(tmp_path / "t"),
                            "--suite", str(suite)], capsys)  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    assert len(lines) == 5
    assert any("fold00/ghost.wav: missing:" in ln for ln in lines)
    assert any("fold01/odd.wav: unknown-label: label '7'" in ln for ln in lines)
    assert any("fold02/broken.wav: corrupt:" in ln for ln in lines)
    assert any("fold02/empty.wav: empty:" in ln for ln in lines)
    assert any("fold07.json: unknown-split:" in ln for ln in lines)
    assert "9 clips imported" in err
    task = load_task(tmp_path / "t")
    assert set(task.splits) == {"fold1", "fold2", "fold3"} and task.metric == "accuracy"
    assert yaml.safe_load(suite.read_text())["tasks"][0]["weight"] == 1
    _assert_probed(probe(run, [tmp_path / "t"]), "digits", 9)
    from audioscale.data.check import check_path
    from audioscale.data.import_pool import import_pool

    checked = check_path(tmp_path / "t")  # what `data check` says of the imported task
    assert checked.errors == [] and checked.summary["bad"] == 0
    assert import_pool([tmp_path / "t"], tmp_path / "p").n_kept == 9  # a task as a pool


def test_import_hear_multilabel_trainvaltest_uses_map(tmp_path, clips, run):
    from audioscale.data.import_hear import import_hear

    src = hear_task(tmp_path / "hear", clips, bad=False, prediction_type="multilabel",
                    split_mode="trainvaltest", evaluation=["mAP", "d_prime"])  # fmt: skip
    for old, new in (("fold00", "train"), ("fold01", "valid"), ("fold02", "test")):
        (src / f"{old}.json").rename(src / f"{new}.json")
        (src / "16000" / old).rename(src / "16000" / new)
    train = json.loads((src / "train.json").read_text())
    train[next(iter(train))] = ["1", "2"]  # a clip with two labels
    (src / "train.json").write_text(json.dumps(train))
    rep = import_hear(src, tmp_path / "t")
    assert rep.n_kept == 9 and not rep.skipped
    task = load_task(tmp_path / "t")
    assert task.multilabel and task.metric == "mAP" and set(task.splits) == {
        "train", "valid", "test"}  # fmt: skip
    assert task.meta["hear_evaluation"] == ["mAP", "d_prime"]
    _assert_probed(probe(run, [tmp_path / "t"]), "digits", 3, metric="mAP")


def test_import_hear_unreadable_label_file_loses_only_its_fold(tmp_path, clips):
    from audioscale.data.import_hear import import_hear

    src = hear_task(tmp_path / "hear", clips, bad=False)
    (src / "fold01.json").write_text('{"1_1.wav": ["1"]')  # cut short
    rep = import_hear(src, tmp_path / "t")
    assert rep.n_kept == 6 and [(p.path, p.kind) for p in rep.skipped] == [
        ("fold01.json", "bad-labels")]  # fmt: skip
    assert "cannot read" in rep.skipped[0].reason


@pytest.mark.parametrize(
    "meta, vocab, why",
    [
        ({"split_mode": "new_split_kfold"}, "idx,label\n0,a\n", "neither 'splits' nor"),
        ({"split_mode": "trainvaltest"}, "idx,name\n0,a\n", "no 'label' column"),
        ({"split_mode": "trainvaltest"}, b"idx,label\n0,caf\xe9\n", "cannot read"),
    ],
)
def test_import_hear_malformed_metadata_is_one_line(tmp_path, capsys, meta, vocab, why):
    """Regression: a k-fold task_metadata.json without ``splits``/``nfolds`` and a
    labelvocabulary.csv without a ``label`` column (or not UTF-8) raised tracebacks."""
    d = tmp_path / "t"
    (d / "16000").mkdir(parents=True)
    md = {"task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass"}
    (d / "task_metadata.json").write_text(json.dumps(md | meta))
    voc = d / "labelvocabulary.csv"
    voc.write_bytes(vocab) if isinstance(vocab, bytes) else voc.write_text(vocab)
    code, _, err = run_cli(["data", "import-hear", str(d), "--out", str(tmp_path / "o")], capsys)
    assert code != 0 and why in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_import_hear_multiclass_clip_with_two_labels_is_a_problem(tmp_path):
    """Regression: a multiclass clip listing two labels was imported as one made-up class
    ``"a;b"`` (the multilabel encoding) instead of being reported."""
    from audioscale.data.import_hear import import_hear

    d = tmp_path / "t"
    (d / "16000" / "train").mkdir(parents=True)
    md = {"task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass",
          "split_mode": "trainvaltest"}  # fmt: skip
    (d / "task_metadata.json").write_text(json.dumps(md))
    (d / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    _tone(d / "16000" / "train" / "x.wav", 440)
    _tone(d / "16000" / "train" / "y.wav", 880)
    (d / "train.json").write_text(json.dumps({"x.wav": ["a", "b"], "y.wav": ["b"]}))
    rep = import_hear(d, tmp_path / "o")
    assert rep.n_kept == 1 and [p.kind for p in rep.skipped] == ["bad-labels"]
    assert "2 labels in a multiclass task" in rep.skipped[0].reason
    assert [r["label"] for r in csv.DictReader(open(tmp_path / "o" / "manifest.csv"))] == ["b"]


def test_import_hear_event_task_is_one_line(tmp_path, clips, capsys):
    src = hear_task(tmp_path / "hear", clips, bad=False, embedding_type="event")
    code, _, err = run_cli(["data", "import-hear", str(src), "--out", str(tmp_path / "t")], capsys)
    assert code != 0
    assert err.strip().count("\n") == 0 and "not supported: timestamp" in err


# --------------------------------------------------------------------------- X-ARES


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def xares_esc50(root: Path, clips, bad: bool = True) -> Path:
    """Shards named by the wheel's esc50 TaskConfig: ``wds-audio-fold-<k>-000000.tar``."""
    root.mkdir(parents=True)
    for k in range(1, 6):
        members = {}
        for i, lab in enumerate(LABELS):
            key = f"{k}-{i}-{lab}"
            members[f"{key}.wav"] = clips[lab][k - 1].read_bytes()
            members[f"{key}.json"] = json.dumps({"label": int(lab), "fold": k}).encode()
        if bad and k == 1:
            members["nojson.wav"] = clips["1"][0].read_bytes()  # json missing
            members["far.wav"] = clips["1"][0].read_bytes()
            members["far.json"] = json.dumps({"label": 77}).encode()  # >= output_dim 50
            members["junk.wav"] = b"RIFF\x00\x01\x00\x00WAVEfmt "  # corrupt
            members["junk.json"] = json.dumps({"label": 2}).encode()
        _tar(root / f"wds-audio-fold-{k}-000000.tar", members)
    return root


def test_import_xares_reads_the_wheels_config_and_probes(tmp_path, clips, run, capsys):
    src = xares_esc50(tmp_path / "env" / "esc50", clips)
    suite = tmp_path / "suite.yaml"
    code, _, err = run_cli(["data", "import-xares", "esc50", "--from", str(src), "--out",
                            str(tmp_path / "t"), "--suite", str(suite)], capsys)  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    assert len(lines) == 3
    assert any("nojson: no-json:" in ln for ln in lines)
    assert any("::far: unknown-label: label rejected" in ln for ln in lines)
    assert any("::junk: corrupt:" in ln for ln in lines)
    task = load_task(tmp_path / "t")
    assert task.name == "xares-esc50" and set(task.splits) == {f"fold{k}" for k in range(1, 6)}
    assert task.labels == sorted(LABELS) and task.meta["eval_weight"] == 400
    assert yaml.safe_load(suite.read_text())["tasks"][0]["weight"] == 400
    _assert_probed(probe(run, [tmp_path / "t"]), "xares-esc50", 15)


def test_import_xares_truncated_shard_is_one_problem(tmp_path, clips):
    from audioscale.data.import_xares import import_xares

    src = xares_esc50(tmp_path / "esc50", clips, bad=False)
    shard = src / "wds-audio-fold-5-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # cut inside its first sample
    rep = import_xares("esc50", src, tmp_path / "t")
    assert rep.n_kept == 12
    (p,) = rep.skipped
    assert p.path == shard.name and p.kind == "corrupt" and "cannot be read" in p.reason


def test_import_xares_unsupported_task_is_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, _, err = run_cli(["data", "import-xares", "desed", "--from", str(tmp_path / "d")],
                           capsys)  # fmt: skip
    assert code != 0 and "not supported: frame task" in err and err.strip().count("\n") == 0


# --------------------------------------------------------------------------- CSVs


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def esc50(root: Path, clips) -> Path:
    """ESC-50: meta/esc50.csv + audio/<filename>; one row names a missing file, one an
    unknown fold, one repeats the first."""
    rows = []
    for i, lab in enumerate(LABELS):
        for k in range(1, 6):
            name = f"{k}-{1000 + i}-A-{i}.wav"
            (root / "audio").mkdir(parents=True, exist_ok=True)
            shutil.copy(clips[lab][k - 1], root / "audio" / name)
            rows.append([name, k, i, f"digit_{lab}", False, f"{1000 + i}", "A"])
    rows.append(["1-9999-A-0.wav", 1, 0, "digit_1", False, "9999", "A"])  # missing file
    (root / "audio" / "2-8888-A-0.wav").write_bytes(clips["1"][0].read_bytes())
    rows.append(["2-8888-A-0.wav", "x", 0, "digit_1", False, "8888", "A"])  # unknown fold
    rows.append(rows[0])  # the same file listed twice
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    _write_csv(root / "meta" / "esc50.csv", header, rows)
    return root


def test_import_csv_esc50_and_weighted_suite(tmp_path, clips, run, capsys):
    src = esc50(tmp_path / "ESC-50-master", clips)
    suite = tmp_path / "suite.yaml"
    code, _, err = run_cli(["data", "import-csv", str(src / "meta" / "esc50.csv"), "--audio",
                            str(src / "audio"), "--path-col", "filename", "--label-col",
                            "category", "--fold-col", "fold", "--out", str(tmp_path / "esc"),
                            "--suite", str(suite)], capsys)  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    assert len(lines) == 3
    assert any("row 17: 1-9999-A-0.wav: missing:" in ln for ln in lines)
    assert any("row 19: 1-1000-A-0.wav: duplicate: file already listed on row 2" in ln
               for ln in lines)  # fmt: skip
    assert any("row 18: 2-8888-A-0.wav: unknown-split: fold 'x'" in ln for ln in lines)
    task = load_task(tmp_path / "esc")
    assert len(task.rows) == 15 and set(task.splits) == {f"fold{k}" for k in range(1, 6)}
    # a second task with another weight, then the suite probe: plain and weighted means
    src2 = xares_esc50(tmp_path / "env", clips, bad=False)
    assert main(["data", "import-xares", "esc50", "--from", str(src2), "--out",
                 str(tmp_path / "xa"), "--suite", str(suite), "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    code, stdout, err = run_cli(["probe", "--model", str(run), "--suite", str(suite),
                                 "--no-cache", "--device", "cpu", "--json"], capsys)  # fmt: skip
    assert code == 0, err
    out = json.loads(stdout)
    assert out["suite_name"] == "suite" and out["suite_weighting"] == "suite"
    assert out["suite_weights"] == {"esc50": 1.0, "xares-esc50": 400.0}
    s = {t: out["tasks"][t]["linear"]["score"] for t in ("esc50", "xares-esc50")}
    assert out["suite"] == pytest.approx((s["esc50"] + s["xares-esc50"]) / 2)
    assert out["suite_weighted"] == pytest.approx((s["esc50"] + 400 * s["xares-esc50"]) / 401)


def test_import_csv_urbansound8k_folds_in_subfolders(tmp_path, clips, run):
    from audioscale.data.import_csv import import_csv

    root = tmp_path / "UrbanSound8K"
    rows = []
    for i, lab in enumerate(LABELS):
        for k in range(1, 4):
            name = f"{100 + i}-{k}-0-0.wav"
            (root / "audio" / f"fold{k}").mkdir(parents=True, exist_ok=True)
            shutil.copy(clips[lab][k], root / "audio" / f"fold{k}" / name)
            rows.append([name, 100 + i, 0.0, 1.0, 1, k, i, f"class_{lab}"])
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    _write_csv(root / "metadata" / "UrbanSound8K.csv", header, rows)
    rep = import_csv(root / "metadata" / "UrbanSound8K.csv", root / "audio", tmp_path / "t",
                     "slice_file_name", "class", fold_col="fold")  # fmt: skip
    assert rep.n_kept == 9 and not rep.skipped
    assert load_task(tmp_path / "t").labels == [f"class_{lab}" for lab in LABELS]
    _assert_probed(probe(run, [tmp_path / "t"]), "UrbanSound8K", 9)


def test_import_csv_with_nothing_importable_exits_non_zero(tmp_path, capsys):
    _write_csv(tmp_path / "m.csv", ["file", "label", "split"], [["gone.wav", "a", "train"]])
    (tmp_path / "audio").mkdir()
    code, _, err = run_cli(["data", "import-csv", str(tmp_path / "m.csv"), "--audio",
                            str(tmp_path / "audio"), "--path-col", "file", "--label-col",
                            "label", "--split-col", "split", "--out", str(tmp_path / "t")],
                           capsys)  # fmt: skip
    assert code != 0 and "nothing could be imported (1 problems)" in err
    assert "skipped m.csv row 2: gone.wav: missing:" in err  # the problem lines still shown


def test_import_csv_not_utf8_is_one_line(tmp_path, capsys):
    """Regression: a Latin-1 metadata CSV raised UnicodeDecodeError with a traceback."""
    (tmp_path / "m.csv").write_bytes(b"file,label\nx.wav,caf\xe9\n")
    (tmp_path / "audio").mkdir()
    code, _, err = run_cli(["data", "import-csv", str(tmp_path / "m.csv"), "--audio",
                            str(tmp_path / "audio"), "--path-col", "file", "--label-col",
                            "label", "--out", str(tmp_path / "t")], capsys)  # fmt: skip
    assert code != 0 and "m.csv: not UTF-8" in err and "Traceback" not in err


def test_probe_task_and_suite_naming_one_folder_load_it_once(tmp_path, monkeypatch):
    """Regression: ``probe --task tasks/x --suite S`` with S listing tasks/x (absolute
    once loaded) extracted and probed the task twice."""
    import audioscale.data.manifest as manifest
    import audioscale.embed.extract as extract
    from audioscale.data.import_csv import import_csv
    from audioscale.probe.suite import evaluate

    (tmp_path / "audio").mkdir()
    for i in range(4):
        _tone(tmp_path / "audio" / f"x{i}.wav", 300 + 100 * i)
    _write_csv(tmp_path / "m.csv", ["file", "label"], [[f"x{i}.wav", i % 2] for i in range(4)])
    import_csv(tmp_path / "m.csv", tmp_path / "audio", tmp_path / "tasks" / "x", "file", "label")
    (tmp_path / "s.yaml").write_text("tasks: [tasks/x]\n")
    loaded, real = [], manifest.load_task

    def counting(d):
        loaded.append(Path(d).resolve())
        return real(d)

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(manifest, "load_task", counting)
    monkeypatch.setattr(extract, "extract", stop)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Stop):
        evaluate(None, [Path("tasks/x")], suite=tmp_path / "s.yaml", progress=False)
    assert loaded == [(tmp_path / "tasks" / "x").resolve()]


def test_import_csv_float_folds_as_pandas_writes_them(tmp_path):
    """Regression: folds written as ``1.0`` (pandas, a column that once held NaN) were
    all "not a fold", so nothing was imported; ``0.0`` marks a 0-based column."""
    from audioscale.data.import_csv import import_csv

    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(4):
        _tone(tmp_path / "audio" / f"x{i}.wav", 300 + 100 * i)
        rows.append([f"x{i}.wav", i % 2, f"{i // 2}.0"])
    _write_csv(tmp_path / "m.csv", ["file", "label", "fold"], rows)
    rep = import_csv(tmp_path / "m.csv", tmp_path / "audio", tmp_path / "t", "file", "label",
                     fold_col="fold")  # fmt: skip
    assert rep.n_kept == 4 and not rep.skipped and sorted(rep.counts) == ["fold1", "fold2"]


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_files_hold_the_training_curves(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/examples_per_s"} <= tags
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [1, 2, 3]
    logged = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(logged, rel=1e-6)


def test_tensorboard_absent_is_one_info_line(tmp_path, monkeypatch, capsys):
    import builtins

    from audioscale.train import tblog

    real = builtins.__import__

    def no_tb(name, *a, **kw):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    monkeypatch.setattr(tblog, "_warned", False)
    assert tblog.open_writer(tmp_path) is None and tblog.open_writer(tmp_path) is None
    tblog.scalars(None, 1, {"train/loss": 1.0})
    tblog.checkpoint_curves(tmp_path, [{"step": 1, "rankme": 2.0}])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboard not installed" in err
    assert not (tmp_path / "tb").exists()


def test_tensorboard_broken_install_is_one_info_line(tmp_path, monkeypatch, capsys):
    """Regression: only ImportError was caught, so a tensorboard that fails on import in
    another way (protobuf mismatch: TypeError) crashed every training run."""
    import builtins

    from audioscale.train import tblog

    real = builtins.__import__

    def broken_tb(name, *a, **kw):
        if name.startswith("torch.utils.tensorboard"):
            raise TypeError("Descriptors cannot be created directly")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", broken_tb)
    monkeypatch.setattr(tblog, "_warned", False)
    assert tblog.open_writer(tmp_path) is None and tblog.open_writer(tmp_path) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboard unusable (Descriptors" in err


# --------------------------------------------------------------------------- sweep


def test_sweep_with_a_named_weighted_suite_writes_curves(tmp_path):
    """``eval.suite`` in a sweep: the stored suite scores name the suite and its weights;
    every run folder holds TensorBoard curves, checkpoints' RankMe and held-out loss too."""
    from sweep_helpers import make_corpus, tiny_spec

    from audioscale.data.suitefile import add_task
    from audioscale.sweep.runner import run_sweep
    from audioscale.sweep.store import Store

    root = make_corpus(tmp_path / "c", n_train=8, n_heldout=4, per_class=4)
    suite = tmp_path / "mine.yaml"
    add_task(suite, root / "tasks" / "tone", 3)
    add_task(suite, root / "tasks" / "noise")
    spec = tiny_spec(root, axes={"steps": [4]},
                     baselines={"random_init": False, "logmel_stats": False})  # fmt: skip
    spec["base"]["eval"] = {"suite": str(suite), "rankme_samples": 64}
    run_sweep(spec, tmp_path / "study", workers=1, progress=False)
    with Store(tmp_path / "study" / "study.db") as store:
        (row,) = store.results()
    assert row["suite_name"] == "mine" and row["suite_weights"] == "mine: tone=3, noise=1"
    probes = {p["task"]: p["score"] for p in json.loads(
        next((tmp_path / "study" / "runs").glob("*/eval/probes.json")).read_text()
    )["value"][0] if p["protocol"] == "linear"}  # fmt: skip
    assert row["suite_weighted"] == pytest.approx((3 * probes["tone"] + probes["noise"]) / 4)
    add_task(suite, root / "tasks" / "tone", 1)  # new weights: the stored score follows
    run_sweep(spec, tmp_path / "study", workers=1, progress=False)
    with Store(tmp_path / "study" / "study.db") as store:
        (again,) = store.results()
    assert again["suite_weights"] == "mine: noise=1, tone=1"
    assert again["suite_weighted"] == pytest.approx(again["suite"])
    if importlib.util.find_spec("tensorboard") is None:
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((tmp_path / "study" / "runs").iterdir()) / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "eval/rankme", "eval/heldout_loss"} <= tags
    assert [e.step for e in acc.Scalars("eval/rankme")] == [1, 2, 4]
