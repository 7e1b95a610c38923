"""data check + import-folder over a folder mixing good and bad files of every kind."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioscale.audio.io import load_audio
from audioscale.cli import main
from audioscale.data.check import check_path
from audioscale.data.importer import import_folder, stratified_split
from audioscale.data.manifest import load_task, read_manifest
from audioscale.errors import DataError

LIMIT = 3.0  # lowered too-long limit (seconds) so the long file stays small


def tone(freq, sr, seconds=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


def build_mixed(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Two classes of audio with good and bad files; returns (good: path → label,
    bad: path → kind), paths relative to root, as check/import display them."""
    good, bad = {}, {}
    dog, cat = root / "dog", root / "cat"
    dog.mkdir(parents=True)
    (cat / "deep").mkdir(parents=True)
    for sr in (8000, 16000, 22050, 44100, 96000, 192000):
        sf.write(dog / f"sr{sr}.wav", tone(440, sr), sr)
        good[f"dog/sr{sr}.wav"] = "dog"
    sf.write(dog / "stereo.wav", tone(300, 16000, channels=2), 16000)
    good["dog/stereo.wav"] = "dog"
    for fmt, kw, sr in [
        ("flac", {}, 16000),
        ("ogg", {}, 16000),
        ("mp3", {}, 16000),
        ("opus", dict(format="OGG", subtype="OPUS"), 48000),
    ]:
        sf.write(cat / f"c.{fmt}", tone(600, sr), sr, **kw)
        good[f"cat/c.{fmt}"] = "cat"
    for i in range(3):
        sf.write(cat / "deep" / f"n{i}.wav", tone(700 + 50 * i, 16000), 16000)
        good[f"cat/deep/n{i}.wav"] = "cat"
    weird = os.fsencode(str(cat)) + b"/miaou-\xe9\xff.wav"
    with open(weird, "wb") as f:
        sf.write(f, tone(800, 16000), 16000, format="WAV")
    good["cat/miaou-\ufffd\ufffd.wav"] = "cat"

    raw = (dog / "sr16000.wav").read_bytes()
    (dog / "empty.wav").write_bytes(b"")
    bad["dog/empty.wav"] = "empty"
    sf.write(dog / "zero.wav", np.zeros(0, np.float32), 16000)
    bad["dog/zero.wav"] = "empty"
    (dog / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    bad["dog/trunc.wav"] = "corrupt"
    (cat / "text.wav").write_text("definitely not audio\n" * 30)
    bad["cat/text.wav"] = "not-audio"
    x = tone(440, 16000)
    x[10] = np.nan
    sf.write(cat / "nan.wav", x, 16000, subtype="FLOAT")
    bad["cat/nan.wav"] = "nan"
    sf.write(dog / "long.wav", tone(440, 16000, seconds=LIMIT + 1), 16000)
    bad["dog/long.wav"] = "too-long"
    (cat / "notes.txt").write_text("recording notes")
    bad["cat/notes.txt"] = "not-audio"
    os.symlink(cat / "vanished.wav", cat / "dangling.wav")
    bad["cat/dangling.wav"] = "unreadable"
    sf.write(dog / "silent.wav", np.zeros(8000, np.float32), 16000)  # flagged, not bad
    return good, bad


@pytest.fixture()
def mixed(tmp_path):
    src = tmp_path / "src"
    good, bad = build_mixed(src)
    return src, good, bad


def test_check_folder_reports_every_file(mixed):
    src, good, bad = mixed
    rep = check_path(src, limit_seconds=LIMIT)
    rows = {r["path"]: r for r in rep.rows}
    assert set(rows) == set(good) | set(bad) | {"dog/silent.wav"}
    for p in good:
        assert rows[p]["status"] == "ok", rows[p]
    for p, kind in bad.items():
        assert rows[p]["status"] == "bad" and rows[p]["kind"] == kind, rows[p]
        assert rows[p]["reason"]
    assert rows["dog/silent.wav"]["status"] == "warn" and rows["dog/silent.wav"]["kind"] == "silent"
    assert rows["dog/sr192000.wav"]["sample_rate"] == 192000
    assert rows["dog/stereo.wav"]["channels"] == 2
    s = rep.summary
    assert (s["files"], s["ok"], s["warn"], s["bad"]) == (len(rows), len(good), 1, len(bad))
    assert s["kinds"]["not-audio"] == 2 and s["kinds"]["empty"] == 2
    assert s["hours_usable"] == pytest.approx((len(good) + 1) * 0.5 / 3600, rel=0.02)


def test_check_zip_members_and_single_file(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 16000), 16000)
    with zipfile.ZipFile(tmp_path / "pack.pk3", "w") as z:
        z.write(tmp_path / "a.wav", "snd/a.wav")
        z.writestr("snd/b.ogg", b"garbage bytes")
        z.writestr("maps/level.txt", "ignored: not an audio member")
    (tmp_path / "a.wav").unlink()
    (tmp_path / "broken.zip").write_bytes(b"PK no zip")
    rows = {r["path"]: r for r in check_path(tmp_path).rows}
    assert rows["pack.pk3::snd/a.wav"]["status"] == "ok"
    assert rows["pack.pk3::snd/b.ogg"]["kind"] == "not-audio"
    assert rows["broken.zip"]["kind"] == "corrupt" and len(rows) == 3
    with zipfile.ZipFile(tmp_path / "pack.pk3") as z:
        z.extract("snd/a.wav", tmp_path)
    single = check_path(tmp_path / "snd" / "a.wav")
    assert single.mode == "file" and single.rows[0]["status"] == "ok"


def test_check_manifest_and_task_problems(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 16000), 16000)
    (tmp_path / "task.yaml").write_text("name: t\ndomain: speech\nmetric: accuracy\n")
    (tmp_path / "manifest.csv").write_text(
        "path,label,split\na.wav,x,train\nmissing.wav,y,test\na.wav,x,test\n"
    )
    rep = check_path(tmp_path)
    assert rep.mode == "manifest"
    assert [r["status"] for r in rep.rows] == ["ok", "bad", "warn"]
    assert rep.rows[1]["kind"] == "unreadable" and "listed twice" in rep.rows[2]["reason"]
    assert len(rep.errors) == 1 and "listed twice" in rep.errors[0]


def test_import_folder_keeps_every_good_file(mixed, tmp_path):
    src, good, bad = mixed
    out = tmp_path / "task"
    rep = import_folder(src, out, name="pets", seed=0, limit_seconds=LIMIT)
    skipped = {r.path: r for r in rep.skipped}
    assert set(skipped) == set(bad) | {"dog/silent.wav"}
    for p, kind in bad.items():
        assert skipped[p].kind == kind and skipped[p].reason
    assert skipped["dog/silent.wav"].kind == "silent"
    assert rep.n_kept == len(good) and rep.n_files == len(good) + len(bad) + 1
    task = load_task(out)
    assert task.name == "pets" and task.domain == "environment" and task.labels == ["cat", "dog"]
    rows = read_manifest(out / "manifest.csv")
    assert {r["source"]: r["label"] for r in rows} == good
    for r in rows:
        info = sf.info(r["path"])
        assert (info.samplerate, info.channels) == (16000, 1)
        assert Path(r["path"]).is_relative_to(out / "audio" / r["label"])
        assert abs(r["duration"] - 0.5) < 0.05 and len(r["sha1"]) == 40
        r["path"].encode("utf-8")  # odd names became portable ones
    # stratified 70/10/20 per class: dog 7 files → 5/1/1, cat 8 → 5/1/2
    assert rep.counts == {
        "test": {"cat": 2, "dog": 1},
        "train": {"cat": 5, "dog": 5},
        "valid": {"cat": 1, "dog": 1},
    }
    # deterministic, and converted audio equals a direct load
    rep2 = import_folder(src, tmp_path / "again", name="pets", seed=0, limit_seconds=LIMIT)
    assert rep2.counts == rep.counts
    assert read_manifest(tmp_path / "again" / "manifest.csv")[0]["sha1"] == rows[0]["sha1"]
    by_src = {r["source"]: r["path"] for r in rows}
    np.testing.assert_allclose(
        load_audio(by_src["dog/sr44100.wav"]), load_audio(src / "dog/sr44100.wav"), atol=1 / 32768
    )
    with pytest.raises(DataError, match="already holds a task"):
        import_folder(src, out)


def test_import_split_folders_and_errors(tmp_path):
    src = tmp_path / "src"
    for split, n in [("train", 3), ("val", 1), ("test", 2)]:
        for label in ("a", "b"):
            (src / split / label).mkdir(parents=True)
            for i in range(n):
                sf.write(src / split / label / f"{i}.wav", tone(300 + 100 * i, 16000), 16000)
    (src / "train" / "stray.wav").write_bytes(b"")
    rep = import_folder(src, tmp_path / "out", domain="speech", keep_silent=True)
    assert rep.layout == "split-folders"
    assert rep.counts == {s: {"a": n, "b": n} for s, n in [("test", 2), ("train", 3), ("valid", 1)]}
    assert [r.kind for r in rep.skipped] == ["no-label"]
    assert load_task(tmp_path / "out").domain == "speech"
    with pytest.raises(DataError, match="domain"):
        import_folder(src, tmp_path / "x", domain="noise")
    with pytest.raises(DataError, match="inside SRC"):
        import_folder(src, src / "out")
    (src / "test").rename(src / "other")
    with pytest.raises(DataError, match="no 'test' folder"):
        import_folder(src, tmp_path / "y")


def test_stratified_split_properties():
    items = {"a": [f"a{i}" for i in range(20)], "b": [f"b{i}" for i in range(10)], "c": ["c0"]}
    s = stratified_split(items, seed=0)
    count = lambda lab, sp: sum(1 for k, v in s.items() if k[0] == lab and v == sp)  # noqa: E731
    assert [count("a", x) for x in ("train", "valid", "test")] == [14, 2, 4]
    assert [count("b", x) for x in ("train", "valid", "test")] == [7, 1, 2]
    assert s["c0"] == "train"
    assert s == stratified_split({k: v[::-1] for k, v in items.items()}, seed=0)  # order-free
    assert s != stratified_split(items, seed=1)
    # one class's split does not move when another class changes
    s2 = stratified_split({"a": items["a"], "b": items["b"][:5]}, seed=0)
    assert {k: v for k, v in s2.items() if k[0] == "a"} == {
        k: v for k, v in s.items() if k[0] == "a"
    }


def test_cli_check_and_import(mixed, tmp_path, capsys):
    src, good, bad = mixed
    assert main(["data", "check", str(src), "--json", "--limit-seconds", str(LIMIT)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["summary"]["bad"] == len(bad) and len(obj["rows"]) == len(good) + len(bad) + 1
    assert main(["data", "check", str(src), "--limit-seconds", str(LIMIT)]) == 0
    text = capsys.readouterr().out
    assert "trunc.wav" in text and "not-audio" in text and f"{len(bad)} bad" in text
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audioscale: error:") and err.count("\n") == 1
    out = tmp_path / "imp"
    args = ["data", "import-folder", str(src), "--out", str(out), "--name", "pets", "--seed", "3"]
    assert main(args + ["--json", "--limit-seconds", str(LIMIT)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["n_kept"] == len(good) and obj["name"] == "pets"
    assert main(args) == 2  # already there
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force", "--limit-seconds", str(LIMIT)]) == 0
    assert "kept" in capsys.readouterr().out
