"""Synthesis helpers for the demo corpus: espeak-ng speech and General MIDI soundfont notes.

Both renderers return float32 mono audio at 16 kHz and are deterministic: the same
arguments give the same samples bit for bit (tinysoundfont is reset between renders, see
``SoundfontRenderer``). espeak-ng 1.51 itself is not quite: an occasional run (seen
among concurrent runs on a fresh machine) returns slightly different samples of the same
length. ``espeak`` therefore runs the
synthesiser until two runs agree byte for byte and returns that output, so a corpus
build is byte-identical across runs and machines with the same espeak-ng.

- espeak-ng (Debian package ``espeak-ng``) is run as a subprocess,
  ``espeak-ng -v <voice> -s <words/min> -p <pitch 0-99> --stdout <text>``. It streams a
  22,050 Hz 16-bit mono WAV to stdout whose RIFF/data sizes are placeholders
  (0x7ffff000), so the header is parsed by hand and the rest of stdout taken as samples.
- fluid-soundfont-gm (``/usr/share/sounds/sf2/FluidR3_GM.sf2``) is rendered with
  tinysoundfont (``pip install --no-deps tinysoundfont``) directly at 16 kHz; the stereo
  output is averaged to mono.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np

from audioscale.audio.io import resample
from audioscale.errors import DataError

SR = 16000
SF2_PATH = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

# The 16 General MIDI instrument families: program p (0-127) belongs to family p // 8.
GM_FAMILIES = [
    "piano",
    "chromatic-percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth-lead",
    "synth-pad",
    "synth-effects",
    "ethnic",
    "percussive",
    "sound-effects",
]


def apt_hint(package: str) -> str:
    return f"sudo apt-get install -y {package}"


# --------------------------------------------------------------------------- espeak-ng


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a 16-bit PCM mono/stereo WAV from bytes, tolerating streamed (bogus) sizes.

    Returns (float32 mono samples in [-1, 1], sample rate). Chunks are walked from the
    RIFF header; the ``data`` chunk is read to the end of the buffer, because streamed
    WAVs (espeak-ng ``--stdout``) carry a placeholder size.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError("espeak-ng output is not a RIFF/WAVE stream")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
        elif cid == b"data":
            if bits != 16 or channels < 1:
                raise DataError(f"espeak-ng WAV has {bits}-bit, {channels}-channel audio")
            raw = data[body:]
            raw = raw[: len(raw) - len(raw) % (2 * channels)]
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
            return x.reshape(-1, channels).mean(axis=1), rate
        pos = body + size + (size & 1)
    raise DataError("espeak-ng output has no data chunk")


def espeak(text: str, voice: str, speed: int = 175, pitch: int = 50, sr: int = SR) -> np.ndarray:
    """Speak ``text`` with espeak-ng voice ``voice`` (e.g. ``"en-us+m3"``) → float32 at ``sr``.

    ``speed`` is in words per minute (espeak-ng default 175), ``pitch`` in 0-99 (default
    50). Raises DataError when espeak-ng is missing or fails (one line with the reason).
    """
    if not espeak_available():
        raise DataError(f"espeak-ng is not installed (package espeak-ng): {apt_hint('espeak-ng')}")
    cmd = ["espeak-ng", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout"]
    x, rate = parse_wav_bytes(_agreed_output(cmd + ["--", text], voice))
    return resample(x, rate, sr)


def _agreed_output(cmd: list[str], voice: str, tries: int = 6) -> bytes:
    """stdout of the first output that two runs of ``cmd`` give byte for byte.

    After ``tries`` runs without two equal outputs the most recent one is returned (never
    seen in practice: the odd run is rare and differs from every other run).
    """
    seen: set[bytes] = set()
    for _ in range(tries):
        out = _run_espeak(cmd, voice)
        if out in seen:
            return out
        seen.add(out)
    return out


def _run_espeak(cmd: list[str], voice: str) -> bytes:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise DataError(f"espeak-ng voice {voice!r} timed out after 120 s") from None
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"espeak-ng voice {voice!r} failed: {err[0] if err else 'no output'}")
    return proc.stdout


# --------------------------------------------------------------------------- soundfont


class SoundfontRenderer:
    """Renders single notes and note sequences from a General MIDI soundfont at 16 kHz.

    One tinysoundfont synth, channel 0, melodic bank 0. Every render starts from silence
    (``sounds_off`` then a flush) and resets the channel's program, so the output depends
    only on the arguments, never on what was rendered before. Renders are serialised with
    a lock, so one renderer can be shared by threads.
    """

    def __init__(self, sf2_path: str | Path = SF2_PATH, sr: int = SR, gain_db: float = 0.0):
        try:
            import tinysoundfont
        except ImportError as e:
            raise DataError(
                "python package tinysoundfont is missing: pip install --no-deps tinysoundfont"
            ) from e
        if not Path(sf2_path).is_file():
            raise DataError(
                f"{sf2_path}: soundfont not found (package fluid-soundfont-gm): "
                f"{apt_hint('fluid-soundfont-gm')}"
            )
        self.sr = sr
        self.synth = tinysoundfont.Synth(gain=gain_db, samplerate=sr)
        self.sfid = self.synth.sfload(str(sf2_path))
        self._lock = threading.Lock()
        self._audible: dict[tuple[int, int], bool] = {}

    def _generate(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros(0, np.float32)
        buf = np.frombuffer(self.synth.generate(int(n)), dtype=np.float32)
        return buf.reshape(-1, 2).mean(axis=1)

    def _reset(self) -> None:
        self.synth.sounds_off()
        self._generate(self.sr // 10)  # let the quick release of every voice finish

    def render(
        self, program: int, events: list[tuple[float, float, int, int]], seconds: float
    ) -> np.ndarray:
        """Render ``events`` = [(onset_s, duration_s, key, velocity), ...] on one program.

        Returns exactly ``round(seconds * sr)`` samples (float32 mono); notes still sounding
        at the end are cut. Keys are MIDI numbers (60 = middle C), velocities 1-127.
        """
        total = int(round(seconds * self.sr))
        marks: list[tuple[int, int, int, int]] = []  # (sample, order, key, velocity or 0=off)
        for onset, dur, key, vel in events:
            a = int(round(onset * self.sr))
            b = int(round((onset + dur) * self.sr))
            marks.append((a, 1, int(key), int(vel)))
            marks.append((b, 0, int(key), 0))
        marks.sort()
        out = []
        with self._lock:
            self._reset()
            self.synth.program_select(0, self.sfid, 0, int(program))
            t = 0
            for at, _, key, vel in marks:
                at = min(at, total)
                out.append(self._generate(at - t))
                t = at
                if vel:
                    self.synth.noteon(0, key, vel)
                else:
                    self.synth.noteoff(0, key)
            out.append(self._generate(total - t))
            self._reset()
        return np.concatenate(out).astype(np.float32)

    def audible(self, program: int, key: int, threshold: float = 1e-3) -> bool:
        """Whether ``key`` sounds on ``program``: RMS of a 0.25 s note at velocity 100 is at
        least ``threshold`` (-60 dBFS). Some FluidR3 presets cover only part of the
        keyboard (e.g. contrabass is silent from C4 up). Memoised per (program, key)."""
        k = (int(program), int(key))
        if k not in self._audible:
            x = self.note(program, key, 100, 0.25, 0.0)
            self._audible[k] = bool(np.sqrt(np.mean(x.astype(np.float64) ** 2)) >= threshold)
        return self._audible[k]

    def note(self, program: int, key: int, velocity: int, hold: float, tail: float) -> np.ndarray:
        """One note held for ``hold`` seconds, then ``tail`` seconds of release."""
        return self.render(program, [(0.0, hold, key, velocity)], hold + tail)
