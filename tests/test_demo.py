"""The demo corpus: layout, splits, pool disjointness, determinism, reuse, audio format."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioscale.data import demo
from audioscale.data.manifest import load_pool, load_task, read_manifest
from audioscale.data.synth import SoundfontRenderer, espeak, parse_wav_bytes
from audioscale.errors import DataError
from audioscale.utils import sha1_file

FOLD_TASKS = ("lang-id", "speaker-id", "sfx-category")  # real sources: K-fold (#24)
EXPECTED_LABELS = {
    "lang-id": 5,
    "speaker-id": 15,
    "spoken-digit": 10,
    "instrument-family": 16,
    "pitch": 8,
}


@pytest.fixture(scope="module")
def synth() -> SoundfontRenderer:
    return SoundfontRenderer()


@pytest.fixture(scope="module")
def tasks(demo_small) -> dict:
    return {t: load_task(demo_small / "tasks" / t) for t in demo.DEMO_TASKS}


@pytest.fixture(scope="module")
def pool(demo_small) -> list[dict]:
    return load_pool(demo_small / "pool")


def _origins(rows) -> set[str]:
    return {o for r in rows for o in r["origin"].split(";")}


# --------------------------------------------------------------------------- layout


def test_layout_and_tasks(demo_small, tasks):
    assert (demo_small / "summary.json").is_file()
    for name, t in tasks.items():
        assert t.name == name and t.domain == demo.TASK_DOMAINS[name]
        assert t.metric == "accuracy" and t.multilabel is False
        if name in FOLD_TASKS:
            assert 2 <= len(t.folds) <= demo.SIZES["small"].folds and set(t.splits) == set(t.folds)
        else:
            assert set(t.splits) == {"train", "valid", "test"}
        assert 25 <= len(t.rows) <= 150, (name, len(t.rows))
        assert set(t.rows[0]) >= {"path", "label", "split", "group", "duration", "sha1"}
        assert max(r["duration"] for r in t.rows) <= demo.CLIP_SECONDS + 1e-6
        if name in EXPECTED_LABELS:
            assert len(t.labels) == EXPECTED_LABELS[name]
    assert len(tasks["sfx-category"].labels) >= 6


def test_stratified_splits(tasks):
    """Every label in every split, train the largest, valid ≈ test; K-fold tasks: every
    label in at least two folds (so each is trained on whenever it is tested)."""
    for name, t in tasks.items():
        per = {s: Counter(r["label"] for r in rows) for s, rows in t.splits.items()}
        if name in FOLD_TASKS:
            for label in t.labels:
                assert sum(per[f][label] > 0 for f in t.folds) >= 2, (name, label)
            continue
        for label in t.labels:
            tr, va, te = (per[s][label] for s in ("train", "valid", "test"))
            assert te >= 1 and va >= 1, (name, label)
            assert tr >= te, (name, label, tr, te)
        n_test, n_train = len(t.splits["test"]), len(t.splits["train"])
        assert 0.1 <= n_test / len(t.rows) <= 0.3, name
        assert n_train / len(t.rows) >= 0.5, name


def test_splits_disjoint_by_group(tasks):
    for name, t in tasks.items():
        groups = {s: {r["group"] for r in rows} for s, rows in t.splits.items()}
        for a in groups:
            for b in groups:
                assert a == b or not groups[a] & groups[b], (name, a, b)
        paths = [r["path"] for r in t.rows]
        assert len(set(paths)) == len(paths)
    # spoken digits: voice *variants* (not only language+variant) unseen in training
    var = {
        s: {r["group"].split("+")[1] for r in rows}
        for s, rows in tasks["spoken-digit"].splits.items()
    }
    assert not var["train"] & (var["valid"] | var["test"])
    # instrument family and pitch share one program split: test programs unseen in train
    progs = {
        s: {r["group"] for t in ("instrument-family", "pitch") for r in tasks[t].splits[s]}
        for s in ("train", "valid", "test")
    }
    assert not progs["train"] & progs["test"]


def test_pitch_labels_match_rendered_key(tasks):
    for r in tasks["pitch"].rows:
        key = int(Path(r["path"]).name.split("-k")[1].split("-")[0])
        assert r["label"] == demo.pitch_label(key)
    assert demo.pitch_label(36) == "C2-F2" and demo.pitch_label(42) == "F#2-B2"
    assert demo.pitch_label(83) == "F#5-B5"


# --------------------------------------------------------------------------- pool


def test_pool_layout(demo_small, pool):
    sources = Counter(r["source"] for r in pool)
    assert set(sources) == {"asterisk", "hedgewars", "espeak", "soundfont", "ufoai"}
    hours = sum(r["duration"] for r in pool) / 3600
    assert 0.03 < hours < 0.5  # a few minutes
    held = [r for r in pool if r["split"] == "heldout"]
    assert 0.03 <= len(held) / len(pool) <= 0.3
    for src in sources:
        assert any(r["split"] == "heldout" for r in pool if r["source"] == src)
    s = json.loads((demo_small / "summary.json").read_text())
    assert s["pool"]["clips"] == len(pool)
    assert abs(s["pool"]["hours"] - hours) < 1e-3
    for t in demo.DEMO_TASKS:
        rows = read_manifest(demo_small / "tasks" / t / "manifest.csv")
        assert s["tasks"][t]["clips"] == len(rows)


def test_pool_disjoint_from_tasks(tasks, pool):
    """No task file in the pool; no valid/test group (prompt, phrase, sfx group, espeak
    variant, soundfont program) either; for a K-fold task every group is a test group."""
    pool_origins = _origins(pool)
    for name, t in tasks.items():
        real = {
            r["origin"]
            for r in t.rows
            if r["origin"].split(":")[0] in ("asterisk", "hedgewars", "ufoai")
        }
        assert not real & pool_origins, name
        held = t.folds or ["valid", "test"]
        test_origins = {r["origin"] for s in held for r in t.splits[s]}
        assert not test_origins & pool_origins, name
    # same prompt in another language, same phrase by another voice, near-duplicates
    for name, src in (
        ("lang-id", "asterisk"),
        ("speaker-id", "hedgewars"),
        ("sfx-category", "ufoai"),
    ):
        held_groups = {r["group"] for r in tasks[name].rows}  # K-fold: every clip is tested
        for o in pool_origins:
            if not o.startswith(src + ":"):
                continue
            rel = o.split(":", 1)[1]
            if src == "asterisk":
                group = rel.split("/", 1)[1].rsplit(".", 1)[0]
            elif src == "hedgewars":
                group = demo.phrase_group(rel.split("/")[1].rsplit(".", 1)[0])
            else:
                group = demo.sfx_group(rel)
            assert group not in held_groups, (name, o)
    digit_test_vars = {
        r["group"].split("+")[1] for s in ("valid", "test") for r in tasks["spoken-digit"].splits[s]
    }
    pool_vars = {o.split("+")[1] for o in pool_origins if o.startswith("espeak:")}
    assert pool_vars and not pool_vars & digit_test_vars
    test_progs = {
        r["origin"]
        for t in ("instrument-family", "pitch")
        for s in ("valid", "test")
        for r in tasks[t].splits[s]
    }
    pool_progs = {o for o in pool_origins if o.startswith("soundfont:")}
    assert pool_progs and not pool_progs & test_progs


# --------------------------------------------------------------------------- audio


def test_audio_is_16k_mono_nonsilent(demo_small, tasks, pool):
    rng = np.random.default_rng(0)
    rows = [r for t in tasks.values() for r in t.rows] + pool
    for i in rng.choice(len(rows), size=40, replace=False):
        r = rows[i]
        info = sf.info(r["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        x, _ = sf.read(r["path"], dtype="float32")
        assert abs(len(x) / 16000 - r["duration"]) < 1e-3
        assert np.abs(x).max() >= demo.SILENT_PEAK
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 1e-4
        assert sha1_file(r["path"]) == r["sha1"]


def test_plan_and_render_are_deterministic(demo_small, synth, tasks, pool):
    """Replanning gives the same files; re-rendering a clip of every kind gives the same bytes."""
    plan, _ = demo.make_plan(demo.DemoSources(), "small", 0, synth)
    built = {str(demo_small / j.dest) for j in plan.jobs}
    listed = {r["path"] for t in tasks.values() for r in t.rows} | {r["path"] for r in pool}
    assert listed <= built  # silent/failed jobs may be missing from the manifests
    summary = json.loads((demo_small / "summary.json").read_text())
    outputs = [p.split()[1].rstrip(":") for p in summary["problems"] if p.startswith("skipped ")]
    skipped = {p for p in outputs if p.startswith(("pool/", "tasks/"))}
    assert {str(demo_small / p) for p in skipped} == built - listed
    sha = {r["path"]: r["sha1"] for t in tasks.values() for r in t.rows}
    sha.update({r["path"]: r["sha1"] for r in pool})
    seen = set()
    for job in plan.jobs:
        key = (job.manifest.split("/")[-1], job.kind)
        path = str(demo_small / job.dest)
        if key in seen or path not in sha:
            continue
        seen.add(key)
        data = demo.wav_bytes(demo.render(job, synth))
        import hashlib

        assert hashlib.sha1(data).hexdigest() == sha[path], job.dest
    assert len(seen) >= 8
    other, _ = demo.make_plan(demo.DemoSources(), "small", 1, synth)
    assert {j.dest for j in other.jobs} != {j.dest for j in plan.jobs}


def test_rerun_reuses_and_repairs(demo_small, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo_small, out)
    before = {p: p.read_bytes() for p in out.rglob("manifest.csv")}
    rows = read_manifest(out / "tasks" / "spoken-digit" / "manifest.csv")
    Path(rows[0]["path"]).unlink()  # deleted clip
    Path(rows[1]["path"]).write_bytes(b"RIFF garbage")  # corrupted clip
    stray = out / "pool" / "audio" / "espeak" / "stale-0000.wav"
    stray.write_bytes(b"old")
    s = demo.build_demo(out, size="small", seed=0, progress=False)
    assert s.rendered == 2
    assert s.reused == sum(d["clips"] for d in s.tasks.values()) + s.pool["clips"] - 2
    assert s.removed == 1 and not stray.exists()
    after = {p: p.read_bytes() for p in out.rglob("manifest.csv")}
    assert after == before  # the repaired clips are bit-identical
    assert demo.validate_demo(out) == []
    mtime = (out / "summary.json").stat().st_mtime_ns
    again = demo.ensure_demo(out, "small", 0, progress=False)
    assert again.tasks == s.tasks and (out / "summary.json").stat().st_mtime_ns == mtime


def test_cli_demo_json(demo_small, tmp_path, capsys):
    from audioscale.cli import main

    out = tmp_path / "demo"
    shutil.copytree(demo_small, out)
    assert (
        main(["data", "demo", "--out", str(out), "--size", "small", "--json", "--no-progress"]) == 0
    )
    got = json.loads(capsys.readouterr().out)
    assert (
        got["size"] == "small"
        and got["rendered"] == 0
        and set(got["tasks"]) == set(demo.DEMO_TASKS)
    )
    assert main(["data", "demo", "--out", str(out), "--size", "huge"]) == 2
    assert "huge" in capsys.readouterr().err


# --------------------------------------------------------------------------- sources


def test_missing_packages_fail_with_apt_hint(tmp_path):
    src = demo.DemoSources(hedgewars=tmp_path / "nope", ufoai=tmp_path / "none.pk3")
    with pytest.raises(DataError) as e:
        demo.check_sources(src)
    msg = str(e.value)
    assert "hedgewars-data" in msg and "ufoai-sound" in msg and "apt-get install" in msg
    assert "\n" not in msg


def _real_asterisk(lg: str):
    folder = demo.asterisk_dir(demo.DemoSources(), lg)
    assert folder is not None, f"asterisk-core-sounds-{lg}-wav is not installed"
    return folder


def test_missing_optional_language_is_reported(tmp_path):
    root = tmp_path / "sounds"
    root.mkdir()
    for lg in ("en", "es", "fr", "it"):
        (root / lg).symlink_to(_real_asterisk(lg))
    langs, voices, problems = demo.check_sources(demo.DemoSources(asterisk=root))
    assert langs == ["en", "es", "fr", "it"] and len(voices) == 15
    assert any("asterisk-core-sounds-ru-wav" in p for p in problems)
    for lg in ("es", "fr", "it"):
        (root / lg).unlink()
    with pytest.raises(DataError, match="asterisk-core-sounds-ru-wav"):
        demo.check_sources(demo.DemoSources(asterisk=root))


def test_asterisk_voice_folders_and_short_links_read_the_same(tmp_path):
    """The -wav packages install voice folders; the short names are optional links."""
    voices, links = tmp_path / "voices", tmp_path / "links"
    voices.mkdir()
    links.mkdir()
    for lg in ("en", "ru"):
        (voices / demo.ASTERISK_VOICES[lg]).symlink_to(_real_asterisk(lg))
        (links / lg).symlink_to(_real_asterisk(lg))
    got = {}
    for name, root in (("voices", voices), ("links", links)):
        src = demo.DemoSources(asterisk=root)
        assert demo.check_sources(src)[0] == ["en", "ru"]
        files = demo.asterisk_files(src, ["en", "ru"], [])
        got[name] = [(f.origin, f.label, f.group, f.duration) for f in files]
        assert demo.source_folders(src, ["en"])["asterisk:en"].startswith(str(root))
    assert got["voices"] == got["links"] and len(got["voices"]) > 100


# --------------------------------------------------------------------------- helpers


def test_split_helpers():
    assert demo.split_counts(20) == {"train": 14, "valid": 3, "test": 3}
    assert demo.split_counts(8) == {"train": 6, "valid": 1, "test": 1}
    rng = np.random.default_rng(0)
    sizes = {f"g{i}": int(n) for i, n in enumerate(rng.integers(1, 8, size=15))}
    split = demo.assign_sized(sizes, np.random.default_rng(1))
    assert set(split) == set(sizes)
    total = sum(sizes.values())
    for s in ("valid", "test"):
        n = sum(sizes[g] for g, v in split.items() if v == s)
        assert 1 <= n <= 0.3 * total
    a = demo.assign_equal(["b", "a", "c", "d"], np.random.default_rng(3))
    b = demo.assign_equal(["d", "c", "b", "a"], np.random.default_rng(3))
    assert a == b  # input order never matters


def test_assign_folds_balances_labels_and_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = {f"g{i:02d}": Counter({f"c{i % 3}": int(rng.integers(1, 5))}) for i in range(30)}
    folds = demo.assign_folds(groups, 5, np.random.default_rng(1))
    assert set(folds) == set(groups) and set(folds.values()) == {f"fold{i}" for i in range(1, 6)}
    for c in ("c0", "c1", "c2"):
        per = Counter()
        for g, f in folds.items():
            per[f] += groups[g][c]
        # greedy least-filled: folds differ by at most the largest group (4 clips)
        assert max(per.values()) - min(per.values()) <= 4, (c, per)
    shuffled = dict(reversed(list(groups.items())))
    assert demo.assign_folds(shuffled, 5, np.random.default_rng(1)) == folds
    assert demo.assign_folds(groups, 5, np.random.default_rng(2)) != folds


def test_parse_streamed_wav():
    pcm = (np.sin(np.arange(2205) / 5) * 8000).astype("<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16)
    data = b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE" + fmt
    data += b"data" + struct.pack("<I", 0x7FFFF000) + pcm + b"\x01"  # odd trailing byte
    x, sr = parse_wav_bytes(data)
    assert sr == 22050 and len(x) == 2205
    assert np.allclose(x, np.frombuffer(pcm, "<i2") / 32768.0)


def _f0(x: np.ndarray, sr: int = 16000) -> float:
    """Fundamental by autocorrelation peak between 50 Hz and 1 kHz."""
    x = x - x.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1 :]
    lo, hi = sr // 1000, sr // 50
    return sr / (lo + int(np.argmax(ac[lo:hi])))


def test_soundfont_pitch_and_determinism(synth):
    a4 = synth.note(0, 69, 100, 0.6, 0.0)[1600:6400]  # piano A4
    assert abs(_f0(a4) - 440.0) < 440.0 * 0.03
    c3 = synth.note(73, 48, 100, 0.6, 0.0)[1600:6400]  # flute C3
    assert abs(_f0(c3) - 130.81) < 130.81 * 0.03
    first = synth.note(40, 60, 100, 0.5, 0.2)
    synth.note(33, 40, 127, 1.0, 0.5)
    assert np.array_equal(first, synth.note(40, 60, 100, 0.5, 0.2))
    assert not synth.audible(43, 72)  # FluidR3 contrabass is silent up there
    assert synth.audible(43, 40)


def test_espeak_digit():
    x = espeak("7", "en-us+m3", 170, 50)
    assert x.dtype == np.float32 and 0.2 < len(x) / 16000 < 2.0
    assert np.abs(x).max() > 0.05
    with pytest.raises(DataError, match="espeak-ng voice"):
        espeak("7", "qqqzz")


@pytest.fixture(scope="module")
def full_plan(synth):
    return demo.make_plan(demo.DemoSources(), "full", 0, synth)[0]


def _rows(plan, task: str) -> dict[str, dict]:
    return {j.dest: j.row for j in plan.jobs if j.manifest == f"tasks/{task}"}


def test_full_tasks_are_sized_for_a_suite_se_of_0_01(full_plan):
    """#24: K-fold real tasks test every clip once; the synthetic tasks' test splits are
    topped up. Binomial SE at accuracy 0.5 on the synthetic tasks and at the log-mel
    baseline's on the real ones (bench/RESULTS.md) stays under 0.01 for the suite."""
    n = {}
    for task in demo.DEMO_TASKS:
        rows = _rows(full_plan, task).values()
        splits = Counter(r["split"] for r in rows)
        if task in FOLD_TASKS:
            assert sorted(splits) == [f"fold{i}" for i in range(1, 6)], task
            assert max(splits.values()) <= 1.5 * min(splits.values()), (task, splits)
            n[task] = len(rows)
        else:
            n[task] = splits["test"]
    assert (n["spoken-digit"], n["instrument-family"], n["pitch"]) == (960, 960, 800)
    assert min(n[t] for t in FOLD_TASKS) >= 190, n
    p = {"lang-id": 0.9, "speaker-id": 0.58, "sfx-category": 0.42}
    se2 = [p.get(t, 0.5) * (1 - p.get(t, 0.5)) / n[t] for t in demo.DEMO_TASKS]
    assert np.sqrt(sum(se2)) / len(se2) < 0.01


def test_task_sizes_leave_the_pool_and_earlier_clips_alone(full_plan, synth, monkeypatch):
    """Folds and test top-ups change no pool job, no train/valid clip, and only add test
    clips; the real tasks hold the same clips whatever K."""
    spec = dataclasses.replace(
        demo.SIZES["full"],
        folds=3,
        digit_test_takes=1,
        family_test_per_class=1,
        pitch_test_per_class=2,
    )
    monkeypatch.setitem(demo.SIZES, "full", spec)
    small_k, _ = demo.make_plan(demo.DemoSources(), "full", 0, synth)
    pool = [(j.dest, j.spec) for j in full_plan.jobs if j.manifest == "pool"]
    assert pool == [(j.dest, j.spec) for j in small_k.jobs if j.manifest == "pool"]
    for task in demo.DEMO_TASKS:
        big, few = _rows(full_plan, task), _rows(small_k, task)
        if task in FOLD_TASKS:
            assert set(big) == set(few)
            assert {r["split"] for r in few.values()} == {"fold1", "fold2", "fold3"}
            continue
        assert set(few) < set(big) and all(big[d] == r for d, r in few.items())
        assert {big[d]["split"] for d in set(big) - set(few)} == {"test"}


def test_large_size_keeps_the_tasks_and_enlarges_the_pool(synth, full_plan):
    """--size large (GPU studies): the very same task clips as full, more pool synthesis."""
    full = full_plan
    large, _ = demo.make_plan(demo.DemoSources(), "large", 0, synth)

    def split(plan):
        tasks = {j.dest for j in plan.jobs if j.manifest.startswith("tasks/")}
        pool = [j for j in plan.jobs if not j.manifest.startswith("tasks/")]
        return tasks, pool

    (full_tasks, full_pool), (large_tasks, large_pool) = split(full), split(large)
    assert full_tasks == large_tasks
    assert len(large_pool) > 2 * len(full_pool)
    assert demo.SIZES["large"].pool_target_hours >= 3 * demo.SIZES["full"].pool_target_hours


def test_espeak_output_is_the_first_that_two_runs_agree_on(monkeypatch):
    from audioscale.data import synth as synth_mod

    outputs = iter([b"odd", b"usual", b"usual", b"never"])
    calls = []

    def fake(cmd, voice):
        calls.append(cmd)
        return next(outputs)

    monkeypatch.setattr(synth_mod, "_run_espeak", fake)
    assert synth_mod._agreed_output(["espeak-ng"], "en") == b"usual"
    assert len(calls) == 3
    outputs = iter([b"a", b"a"])
    assert synth_mod._agreed_output(["espeak-ng"], "en") == b"a"
