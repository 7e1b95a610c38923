"""data.manifest: CSV round trips, task/pool validation, file-list hashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audioscale.data.manifest import (
    file_list_hash,
    load_pool,
    load_task,
    read_manifest,
    write_manifest,
)
from audioscale.errors import DataError


def test_roundtrip_relative_absolute_zip_and_non_utf8(tmp_path):
    (tmp_path / "audio").mkdir()
    weird = os.fsdecode(os.fsencode(str(tmp_path)) + b"/audio/caf\xe9.wav")
    rows = [
        dict(path=str(tmp_path / "audio" / "a.wav"), label="dog", duration=1.5),
        dict(path="/usr/share/sounds/x.wav", label="cat", duration=None),
        dict(path=f"{tmp_path}/audio/s.pk3::sfx/door.ogg", label="door", duration=2.0),
        dict(path=weird, label='café, "quoted"', duration=0.25, labels=["ignored list"]),
    ]
    write_manifest(tmp_path / "manifest.csv", rows)
    text = (tmp_path / "manifest.csv").read_bytes()
    assert text.startswith(b"path,label,duration\naudio/a.wav,dog,1.5\n")
    assert b"/usr/share/sounds/x.wav" in text and b"audio/s.pk3::sfx/door.ogg" in text
    back = read_manifest(tmp_path / "manifest.csv")
    assert [r["path"] for r in back] == [r["path"] for r in rows]
    assert [r["duration"] for r in back] == [1.5, None, 2.0, 0.25]
    assert back[3]["label"] == 'café, "quoted"' and "labels" not in back[3]
    # moving the folder keeps relative paths valid
    os.rename(tmp_path / "manifest.csv", tmp_path / "audio" / "m.csv")
    moved = read_manifest(tmp_path / "audio" / "m.csv")
    assert moved[0]["path"] == str(tmp_path / "audio" / "audio" / "a.wav")


@pytest.mark.parametrize(
    "content,msg",
    [
        ("", "empty"),
        ("file,label\na.wav,x\n", "no 'path' column"),
        ("path,label\na.wav,x\nb.wav\n", "row 3: 1 fields"),
        ("path,duration\na.wav,long\n", "row 2: column 'duration' is not a number"),
        ("path,label\n,x\n", "row 2: empty path"),
    ],
)
def test_read_manifest_errors_name_file_and_row(tmp_path, content, msg):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataError, match=msg) as e:
        read_manifest(tmp_path / "m.csv")
    assert "m.csv" in str(e.value)


def _task(d: Path, yaml_text: str, csv_text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "task.yaml").write_text(yaml_text)
    (d / "manifest.csv").write_text(csv_text)
    return d


GOOD_YAML = "name: pets\ndomain: environment\nmetric: accuracy\nmultilabel: false\n"
GOOD_CSV = "path,label,split\na.wav,dog,train\nb.wav,cat,train\nc.wav,dog,valid\nd.wav,cat,test\n"


def test_load_task(tmp_path):
    t = load_task(_task(tmp_path / "t", GOOD_YAML + "description: hi\nsource: x\n", GOOD_CSV))
    assert (t.name, t.domain, t.metric, t.multilabel) == ("pets", "environment", "accuracy", False)
    assert t.labels == ["cat", "dog"] and list(t.splits) == ["train", "valid", "test"]
    assert [Path(r["path"]).name for r in t.splits["train"]] == ["a.wav", "b.wav"]
    assert t.rows[0]["labels"] == ["dog"] and t.description == "hi" and t.meta["source"] == "x"
    assert t.folds == []


def test_load_task_multilabel_and_folds(tmp_path):
    y = "name: tags\ndomain: music\nmetric: mAP\nmultilabel: true\n"
    c = "path,label,split\na.wav,rock;guitar,fold2\nb.wav, jazz ;,fold1\nc.wav,rock,fold10\n"
    t = load_task(_task(tmp_path / "t", y, c))
    assert t.labels == ["guitar", "jazz", "rock"]
    assert t.rows[0]["labels"] == ["rock", "guitar"] and t.rows[1]["labels"] == ["jazz"]
    assert list(t.splits) == ["fold1", "fold2", "fold10"] == t.folds


@pytest.mark.parametrize(
    "yaml_text,csv_text,msg",
    [
        (GOOD_YAML.replace("environment", "noise"), GOOD_CSV, "key 'domain'"),
        (GOOD_YAML.replace("accuracy", "f1"), GOOD_CSV, "key 'metric'"),
        (GOOD_YAML.replace("false", "maybe"), GOOD_CSV, "key 'multilabel'"),
        (GOOD_YAML.replace("false", "true"), GOOD_CSV, "multilabel tasks use metric 'mAP'"),
        ("name: x\nmetric: accuracy\n", GOOD_CSV, "key 'domain' is missing"),
        ("- a\n", GOOD_CSV, "mapping"),
        ("a: [\n", GOOD_CSV, "not valid YAML"),
        (GOOD_YAML, GOOD_CSV.replace("valid", "dev"), "row 4: split 'dev'"),
        (GOOD_YAML, GOOD_CSV.replace("c.wav,dog", "c.wav,"), "row 4: empty label"),
        (GOOD_YAML, GOOD_CSV.replace("c.wav", "a.wav"), "row 4: path listed twice"),
        (GOOD_YAML, GOOD_CSV.replace("d.wav,cat,test", "d.wav,cat,train"), "no 'test' split"),
        (GOOD_YAML, GOOD_CSV.replace("valid", "fold1"), "mix"),
        (GOOD_YAML, "path,label\na.wav,x\n", "no 'split' column"),
        (GOOD_YAML, "path,label,split\n", "no rows"),
        (GOOD_YAML, "path,label,split\na.wav,x,fold1\n", "at least two folds"),
    ],
)
def test_load_task_errors(tmp_path, yaml_text, csv_text, msg):
    with pytest.raises(DataError, match=msg):
        load_task(_task(tmp_path / "t", yaml_text, csv_text))


def test_load_task_missing_parts(tmp_path):
    with pytest.raises(DataError, match="task folder not found"):
        load_task(tmp_path / "nope")
    (tmp_path / "t").mkdir()
    with pytest.raises(DataError, match="task.yaml not found"):
        load_task(tmp_path / "t")
    (tmp_path / "t" / "task.yaml").write_text(GOOD_YAML)
    with pytest.raises(DataError, match="manifest not found"):
        load_task(tmp_path / "t")


def test_load_pool_folder_or_csv(tmp_path):
    (tmp_path / "pool").mkdir()
    text = "path,duration,source,split\na.wav,2.0,speech,train\nb.wav,1.5,music,heldout\n"
    (tmp_path / "pool" / "manifest.csv").write_text(text)
    rows = load_pool(tmp_path / "pool")
    assert rows == load_pool(tmp_path / "pool" / "manifest.csv")
    assert [r["duration"] for r in rows] == [2.0, 1.5] and rows[1]["split"] == "heldout"
    (tmp_path / "pool" / "manifest.csv").write_text(text.replace("heldout", "test"))
    with pytest.raises(DataError, match="row 3: split 'test'"):
        load_pool(tmp_path / "pool")
    (tmp_path / "pool" / "manifest.csv").write_text(text.replace("1.5", "0"))
    with pytest.raises(DataError, match="row 3: duration"):
        load_pool(tmp_path / "pool")
    (tmp_path / "pool" / "manifest.csv").write_text("path,split\na.wav,train\n")
    with pytest.raises(DataError, match="no 'duration' column"):
        load_pool(tmp_path / "pool")


def test_file_list_hash(tmp_path):
    for n in "ab":
        (tmp_path / f"{n}.wav").write_bytes(b"x" * 10)
    rows = [dict(path=str(tmp_path / "a.wav")), dict(path=str(tmp_path / "b.wav"))]
    h = file_list_hash(rows)
    assert h == file_list_hash([dict(r) for r in rows]) and len(h) == 16
    assert h != file_list_hash(rows[::-1])  # order fixes cache indices
    assert h != file_list_hash(rows[:1])
    assert h != file_list_hash([rows[0], dict(rows[1], max_seconds=1.0)])
    os.utime(tmp_path / "b.wav", ns=(1, 1))
    h2 = file_list_hash(rows)
    assert h2 != h
    # with sha1 columns the hash ignores mtimes
    with_sha = [dict(r, sha1="0" * 40) for r in rows]
    h3 = file_list_hash(with_sha)
    os.utime(tmp_path / "a.wav", ns=(5, 5))
    assert file_list_hash(with_sha) == h3 and file_list_hash(rows) != h2
    assert file_list_hash([dict(path=str(tmp_path / "gone.wav"))])  # missing files still hash
