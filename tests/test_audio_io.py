"""audio.io: decoding, mixdown, resampling, zip members, every bad-file kind."""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import pytest
import soundfile as sf

from audioscale.audio import io as aio
from audioscale.audio.io import check_file, display_path, load_audio, probe_audio
from audioscale.errors import BadAudioError


def tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_wav_roundtrip_is_exact(tmp_path):
    x = (np.random.default_rng(0).integers(-32768, 32767, 16000) / 32768).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 96000, 192000])
def test_resampling_keeps_tone_and_length(tmp_path, sr):
    f = tmp_path / f"t{sr}.wav"
    sf.write(f, tone(1000.0, sr), sr, subtype="FLOAT")
    y = load_audio(f, sr=16000)
    assert len(y) == math.ceil(sr * 16000 / sr)  # resample_poly: ceil(n * up / down)
    assert abs(peak_freq(y, 16000) - 1000.0) <= 1.0
    mid = y[2000:-2000]  # away from the filter's edge transients
    assert abs(np.sqrt(np.mean(mid**2)) - 0.5 / np.sqrt(2)) < 0.005


def test_resample_rational_ratio_matches_scipy():
    from scipy.signal import resample_poly

    x = np.random.default_rng(1).standard_normal(4410).astype(np.float32)
    y = aio.resample(x, 44100, 16000)
    np.testing.assert_allclose(y, resample_poly(x.astype(np.float64), 160, 441), atol=1e-6)


def test_stereo_is_mean_of_channels(tmp_path):
    left, right = tone(440, 16000), tone(1000, 16000, amp=0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), (left + right) / 2, atol=1e-7)
    assert probe_audio(tmp_path / "s.wav").channels == 2
    assert "mixed down" in check_file(tmp_path / "s.wav").reason


def test_offset_and_max_seconds_slice_exactly(tmp_path, monkeypatch):
    x = np.random.default_rng(2).uniform(-1, 1, 48000).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(
        load_audio(tmp_path / "a.wav", offset_seconds=0.5, max_seconds=0.25), x[8000:12000]
    )
    monkeypatch.setattr(aio, "BLOCK_FRAMES", 1000)  # many blocks: same result
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), x)
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav", offset_seconds=1.0), x[16000:])
    with pytest.raises(BadAudioError) as e:
        load_audio(tmp_path / "a.wav", offset_seconds=5.0)
    assert e.value.kind == "empty"


def test_too_long_unless_capped(tmp_path):
    sf.write(tmp_path / "long.wav", np.zeros(16000 * 5, np.float32) + 0.1, 16000)
    with pytest.raises(BadAudioError) as e:
        load_audio(tmp_path / "long.wav", limit_seconds=2.0)
    assert e.value.kind == "too-long" and "limit" in e.value.reason
    assert len(load_audio(tmp_path / "long.wav", max_seconds=1.5, limit_seconds=2.0)) == 24000
    rep = check_file(tmp_path / "long.wav", limit_seconds=2.0)
    assert not rep.ok and rep.kind == "too-long" and rep.duration == 5.0


@pytest.mark.parametrize(
    "fmt,kw,sr",
    [
        ("flac", {}, 16000),
        ("ogg", {}, 16000),
        ("mp3", {}, 16000),
        ("opus", dict(format="OGG", subtype="OPUS"), 48000),
    ],
)
def test_compressed_formats_decode(tmp_path, fmt, kw, sr):
    f = tmp_path / f"a.{fmt}"
    try:
        sf.write(f, tone(1000, sr), sr, **kw)
    except (sf.LibsndfileError, TypeError, ValueError) as e:
        pytest.skip(f"libsndfile cannot write {fmt}: {e}")
    y = load_audio(f)
    assert abs(len(y) - 16000) <= 1600  # codecs may pad a little
    assert abs(peak_freq(y, 16000) - 1000) <= 2.0
    rep = check_file(f)
    assert rep.ok and not rep.silent and rep.sample_rate == sr


def test_zip_member(tmp_path):
    x = tone(500, 22050)
    sf.write(tmp_path / "m.wav", x, 22050)
    sf.write(tmp_path / "m.ogg", x, 22050)
    arc = tmp_path / "sounds.pk3"
    with zipfile.ZipFile(arc, "w") as z:
        z.write(tmp_path / "m.wav", "sfx/door/m.wav")
        z.write(tmp_path / "m.ogg", "sfx/door/m.ogg")
        z.writestr("textures/readme.txt", "not audio")
    direct = load_audio(tmp_path / "m.wav")
    np.testing.assert_array_equal(load_audio(f"{arc}::sfx/door/m.wav"), direct)
    assert check_file(f"{arc}::sfx/door/m.ogg").ok
    assert probe_audio(f"{arc}::sfx/door/m.wav").sample_rate == 22050
    for member, kind in [("nope.wav", "unreadable"), ("textures/readme.txt", "not-audio")]:
        with pytest.raises(BadAudioError) as e:
            load_audio(f"{arc}::{member}")
        assert e.value.kind == kind
    with pytest.raises(BadAudioError) as e:
        load_audio(f"{tmp_path}/missing.pk3::a.wav")
    assert e.value.kind == "unreadable"


def test_non_utf8_file_name(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff.wav")
    sf.write(open(name, "wb"), tone(440, 16000), 16000, format="WAV")
    assert len(load_audio(name)) == 16000
    rep = check_file(name)
    assert rep.ok and "\ufffd" in rep.path
    rep.path.encode("utf-8")  # printable
    open(name + "x", "wb").close()  # 0-byte, also non-UTF-8
    with pytest.raises(BadAudioError) as e:
        load_audio(name + "x")
    assert e.value.kind == "empty"
    str(e.value).encode("utf-8")
    assert "\ufffd" in display_path(name)


def _bad_files(d):
    x = tone(440, 16000)
    sf.write(d / "ok.wav", x, 16000)
    raw = (d / "ok.wav").read_bytes()
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "zero.wav", np.zeros(0, np.float32), 16000)
    (d / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    (d / "header_only.wav").write_bytes(raw[:30])
    (d / "text.wav").write_text("this is not audio\n" * 20)
    y = x.copy()
    y[100] = np.nan
    sf.write(d / "nan.wav", y, 16000, subtype="FLOAT")
    z = x.copy()
    z[5] = np.inf
    sf.write(d / "inf.wav", z, 16000, subtype="FLOAT")
    os.symlink(d / "gone.wav", d / "dangling.wav")
    return {
        "empty.wav": "empty",
        "zero.wav": "empty",
        "trunc.wav": "corrupt",
        "header_only.wav": "corrupt",
        "text.wav": "not-audio",
        "nan.wav": "nan",
        "inf.wav": "nan",
        "dangling.wav": "unreadable",
        "missing.wav": "unreadable",
    }


def test_every_bad_kind_raises_and_is_reported(tmp_path):
    expected = _bad_files(tmp_path)
    (tmp_path / "adir.wav").mkdir()
    expected["adir.wav"] = "unreadable"
    for name, kind in expected.items():
        with pytest.raises(BadAudioError) as e:
            load_audio(tmp_path / name)
        assert e.value.kind == kind, (name, e.value)
        assert name in str(e.value) and "\n" not in str(e.value)
        rep = check_file(tmp_path / name)
        assert not rep.ok and rep.kind == kind, (name, rep)
        assert rep.reason
    assert check_file(tmp_path / "ok.wav").ok


def test_truncated_flac_and_mp3_are_corrupt(tmp_path):
    x = np.random.default_rng(3).standard_normal(32000).astype(np.float32) * 0.1
    for fmt in ("flac", "mp3"):
        sf.write(tmp_path / f"a.{fmt}", x, 16000)
        raw = (tmp_path / f"a.{fmt}").read_bytes()
        (tmp_path / f"t.{fmt}").write_bytes(raw[: len(raw) // 2])
        assert check_file(tmp_path / f"a.{fmt}").ok
        rep = check_file(tmp_path / f"t.{fmt}")
        assert rep.kind == "corrupt", rep
        with pytest.raises(BadAudioError) as e:
            load_audio(tmp_path / f"t.{fmt}")
        assert e.value.kind == "corrupt"


def test_silent_is_flag_not_error(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(8000, np.float32), 16000)
    rep = check_file(tmp_path / "quiet.wav")
    assert rep.ok and rep.silent and rep.peak == 0.0 and "silent" in rep.reason
    assert len(load_audio(tmp_path / "quiet.wav")) == 8000
    sf.write(tmp_path / "loud.wav", tone(100, 16000, amp=0.01), 16000)
    assert not check_file(tmp_path / "loud.wav").silent


def test_probe_reads_header_only(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", np.zeros((22050, 3), np.float32), 22050)
    monkeypatch.setattr(aio, "_read_blocks", None)  # probing must not decode
    info = probe_audio(tmp_path / "a.wav")
    assert (info.sample_rate, info.channels, info.frames, info.duration) == (22050, 3, 22050, 1.0)
    assert info.format == "WAV" and any("3 channels" in p for p in info.problems)
