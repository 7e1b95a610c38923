"""Audio in: decode, validate, mix down and resample to float32 mono.

Decoding uses soundfile (libsndfile 1.2: wav, flac, ogg/vorbis, opus, mp3, aiff, au).
A path may name a member of a zip archive as ``"archive.pk3::member/in/zip.wav"``; the
member is read into memory and decoded from a ``BytesIO``.

Choices (all deliberate):

- Files are opened with Python's ``open()`` and handed to soundfile as file objects, so any
  name the OS accepts works, including non-UTF-8 bytes (``os.fsdecode`` surrogates).
  Messages show names through :func:`display_path` (undecodable bytes → U+FFFD).
- Mixdown is the mean over channels, done block by block so that a multichannel file is
  never held at full width. Reading stops at ``max_seconds``; without it, a file longer than
  ``limit_seconds`` (default one hour) raises ``BadAudioError(kind="too-long")`` before
  anything is decoded.
- Resampling: ``scipy.signal.resample_poly`` with the exact rational ratio
  ``up/down = sr/g, sr_in/g`` (``g = gcd``) and scipy's default Kaiser window (beta 5).
- Bad files raise ``BadAudioError`` with ``kind`` in {empty, corrupt, not-audio, nan,
  too-long, unreadable}. Truncation is detected two ways: a WAV/RIFF header whose ``data``
  chunk declares more bytes than the file holds (libsndfile silently shortens such files),
  and a decoder that delivers fewer frames than the header announced (mp3, flac).
- All-silent audio is not an error: :func:`check_file` flags it (peak below
  ``SILENCE_PEAK``, i.e. -80 dBFS).
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audioscale.errors import BadAudioError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd"}
)
ARCHIVE_EXTENSIONS = frozenset({".zip", ".pk3"})
ZIP_SEP = "::"
DEFAULT_LIMIT_SECONDS = 3600.0  # longest file load_audio decodes whole (max_seconds lifts it)
SILENCE_PEAK = 1e-4  # -80 dBFS: a file whose |peak| stays below this is flagged silent
BLOCK_FRAMES = 1 << 18  # frames per read block (~16 s at 16 kHz)
# Leading bytes of the containers libsndfile reads: a file that starts like audio but does
# not open is "corrupt"; anything else that does not open is "not-audio".
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b".snd", b"caff")

PathLike = str | bytes | os.PathLike


@dataclass
class AudioInfo:
    """What the header says, without decoding the samples."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    problems: list[str] = field(default_factory=list)


@dataclass
class FileReport:
    """Result of fully checking one file. ``ok`` is False exactly when ``kind`` is set."""

    path: str
    ok: bool
    kind: str = ""  # "" when ok; else empty | corrupt | not-audio | nan | too-long | unreadable
    reason: str = ""  # why it is bad, or notes on a good file (mixdown, resampling, silence)
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    silent: bool = False
    format: str = ""
    peak: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- paths


def as_str_path(path: PathLike) -> str:
    """Any path → ``str`` (bytes go through ``os.fsdecode``, keeping undecodable bytes)."""
    if isinstance(path, bytes):
        return os.fsdecode(path)
    return os.fspath(path) if not isinstance(path, str) else path


def display_path(path: PathLike) -> str:
    """A printable form of any path: undecodable bytes become U+FFFD."""
    s = as_str_path(path)
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def split_zip_path(path: PathLike) -> tuple[str, str | None]:
    """``"a.pk3::x/y.wav"`` → ``("a.pk3", "x/y.wav")``; a plain path → ``(path, None)``.

    The separator is honoured only when the left part is not itself an existing file name
    with ``::`` in it, so ordinary files whose names contain ``::`` still work."""
    s = as_str_path(path)
    if ZIP_SEP not in s or os.path.exists(s):
        return s, None
    archive, member = s.split(ZIP_SEP, 1)
    return archive, member


@lru_cache(maxsize=8)
def _zipfile(archive: str, mtime_ns: int, size: int, pid: int) -> zipfile.ZipFile:
    # Keyed by pid: a ZipFile's file descriptor must not be shared across forked workers.
    return zipfile.ZipFile(archive)


def _read_member(archive: str, member: str, shown: str) -> bytes:
    try:
        st = os.stat(archive)
        zf = _zipfile(archive, st.st_mtime_ns, st.st_size, os.getpid())
    except FileNotFoundError:
        raise BadAudioError(shown, "archive not found", "unreadable") from None
    except PermissionError:
        raise BadAudioError(
            shown, "archive not readable (permission denied)", "unreadable"
        ) from None
    except (zipfile.BadZipFile, OSError) as e:
        raise BadAudioError(shown, f"archive is not a readable zip ({e})", "unreadable") from None
    try:
        return zf.read(member)
    except KeyError:
        raise BadAudioError(shown, "no such member in the archive", "unreadable") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise BadAudioError(shown, f"archive member cannot be read ({e})", "corrupt") from None


def _open_bytes(path: PathLike) -> tuple[io.IOBase, str]:
    """Open a file or zip member as a binary, seekable file object."""
    archive, member = split_zip_path(path)
    shown = display_path(path)
    if member is not None:
        return io.BytesIO(_read_member(archive, member, shown)), shown
    if os.path.isdir(archive):
        raise BadAudioError(shown, "is a directory, not a file", "unreadable")
    try:
        return open(archive, "rb"), shown  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError:
        raise BadAudioError(shown, "file not found", "unreadable") from None
    except PermissionError:
        raise BadAudioError(shown, "file not readable (permission denied)", "unreadable") from None
    except OSError as e:
        raise BadAudioError(shown, f"cannot open ({e.strerror or e})", "unreadable") from None


def _wav_truncation(fh: io.IOBase) -> str | None:
    """For RIFF/WAVE: a reason string when the ``data`` chunk claims more bytes than exist."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, clen = struct.unpack("<4sI", fh.read(8))
        if cid == b"data":
            have = size - pos - 8
            # 0 and 0xFFFFFFFF mean "unknown" (streamed writers); libsndfile copes with those.
            if clen not in (0, 0xFFFFFFFF) and clen > have:
                return f"truncated: data chunk declares {clen} bytes, file holds {have}"
            return None
        pos += 8 + clen + (clen & 1)
    return None


@contextmanager
def open_audio(path: PathLike) -> Iterator[tuple[sf.SoundFile, str]]:
    """Open ``path`` (file or zip member) with soundfile; bad files raise BadAudioError.

    Yields ``(soundfile, display_name)``. Header-level problems (empty, not audio,
    truncated WAV) are raised here; sample-level problems while reading."""
    fh, shown = _open_bytes(path)
    try:
        head = fh.read(16)
        if not head:
            raise BadAudioError(shown, "empty file (0 bytes)", "empty")
        trunc = _wav_truncation(fh)
        if trunc:
            raise BadAudioError(shown, trunc, "corrupt")
        fh.seek(0)
        try:
            snd = sf.SoundFile(fh)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            looks_audio = head.startswith(_AUDIO_MAGIC) or head[:2] in (b"\xff\xfb", b"\xff\xf3")
            msg = str(e).split(": ", 1)[-1].strip() or e.__class__.__name__
            if looks_audio:
                raise BadAudioError(shown, f"corrupt audio header ({msg})", "corrupt") from None
            raise BadAudioError(shown, f"not an audio file ({msg})", "not-audio") from None
        with snd:
            yield snd, shown
    finally:
        fh.close()


def _header_info(snd: sf.SoundFile, shown: str) -> AudioInfo:
    sr, ch, n = int(snd.samplerate), int(snd.channels), int(snd.frames)
    problems = []
    if ch > 1:
        problems.append(f"{ch} channels (mixed down)")
    return AudioInfo(shown, sr, ch, n, n / sr if sr else 0.0, str(snd.format), problems)


def probe_audio(path: PathLike) -> AudioInfo:
    """Header facts (rate, channels, frames, duration, format) without decoding samples.

    Raises BadAudioError for files that cannot be opened at all; ``problems`` lists
    non-fatal observations (multichannel, zero frames)."""
    with open_audio(path) as (snd, shown):
        info = _header_info(snd, shown)
    if info.frames == 0:
        info.problems.append("0 audio frames")
    return info


# ----------------------------------------------------------------------------- decode


def _read_blocks(
    snd: sf.SoundFile, shown: str, start: int, stop: int | None
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of frames [start, stop) (stop=None: to the end)."""
    if start:
        try:
            snd.seek(start)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadAudioError(shown, f"cannot seek to frame {start} ({e})", "corrupt") from None
    pos = start
    while stop is None or pos < stop:
        want = BLOCK_FRAMES if stop is None else min(BLOCK_FRAMES, stop - pos)
        try:
            block = snd.read(want, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            msg = str(e).split(": ", 1)[-1].strip()
            raise BadAudioError(
                shown, f"decoding failed at frame {pos} ({msg})", "corrupt"
            ) from None
        if len(block) == 0:
            break
        pos += len(block)
        yield block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        if len(block) < want:
            break


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with the exact rational ratio (scipy ``resample_poly``)."""
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32, copy=False)
    g = math.gcd(int(sr_in), int(sr_out))
    y = resample_poly(x.astype(np.float64), sr_out // g, sr_in // g)
    return y.astype(np.float32)


def load_audio(
    path: PathLike,
    sr: int = 16000,
    max_seconds: float | None = None,
    offset_seconds: float = 0.0,
    limit_seconds: float = DEFAULT_LIMIT_SECONDS,
) -> np.ndarray:
    """Decode ``path`` to float32 mono at ``sr`` Hz.

    ``offset_seconds`` skips the start; ``max_seconds`` caps how much is read (and lifts
    the ``limit_seconds`` guard, since the read is then bounded). Raises BadAudioError
    (kinds: empty, corrupt, not-audio, nan, too-long, unreadable)."""
    if offset_seconds < 0:
        raise ValueError("offset_seconds must be >= 0")
    with open_audio(path) as (snd, shown):
        sr_in, total = int(snd.samplerate), int(snd.frames)
        if total <= 0:
            raise BadAudioError(shown, "no audio frames (0 samples)", "empty")
        start = int(round(offset_seconds * sr_in))
        if start >= total:
            raise BadAudioError(
                shown,
                f"offset {offset_seconds:.3f}s is past the end ({total / sr_in:.3f}s)",
                "empty",
            )
        if max_seconds is not None:
            stop = min(total, start + max(1, int(round(max_seconds * sr_in))))
        else:
            stop = total
            if (total - start) / sr_in > limit_seconds:
                raise BadAudioError(
                    shown,
                    f"{(total - start) / sr_in:.0f}s is longer than the {limit_seconds:.0f}s limit "
                    "(pass max_seconds to read a part)",
                    "too-long",
                )
        blocks = list(_read_blocks(snd, shown, start, stop))
    x = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if len(x) == 0:
        raise BadAudioError(shown, "no audio frames could be decoded", "corrupt")
    if _short(len(x), stop - start, sr_in):
        raise BadAudioError(
            shown, f"truncated: decoded {len(x)} of {stop - start} frames announced", "corrupt"
        )
    if not np.isfinite(x).all():
        raise BadAudioError(shown, f"{int((~np.isfinite(x)).sum())} NaN/Inf samples", "nan")
    return resample(x, sr_in, sr)


# ----------------------------------------------------------------------------- check


def _short(got: int, expected: int, sr: int) -> bool:
    """True when a decoder delivered clearly fewer frames than announced. The slack (1 % or
    50 ms) absorbs mp3 length estimates from VBR headers; WAV truncation is caught exactly
    from the RIFF header instead."""
    return got < expected - max(0.01 * expected, 0.05 * sr)


def _fail(path: PathLike, err: BadAudioError, **kw) -> FileReport:
    return FileReport(display_path(path), ok=False, kind=err.kind, reason=err.reason, **kw)


def check_file(path: PathLike, limit_seconds: float = DEFAULT_LIMIT_SECONDS) -> FileReport:
    """Fully decode ``path`` (block by block, at its own rate) and report what is wrong.

    Never raises for a bad file: the problem is in ``kind``/``reason``. A file longer than
    ``limit_seconds`` is reported ``too-long`` from its header, without decoding it.
    Silence (peak below ``SILENCE_PEAK``) sets ``silent``; it is not an error."""
    meta: dict = {}
    try:
        with open_audio(path) as (snd, shown):
            info = _header_info(snd, shown)
            meta = dict(
                duration=info.duration,
                sample_rate=info.sample_rate,
                channels=info.channels,
                format=info.format,
            )
            if info.frames <= 0:
                reason = "no audio frames (header only, or a truncated stream)"
                return FileReport(shown, False, "empty", reason, **meta)
            if info.duration > limit_seconds:
                reason = f"{info.duration:.0f}s is longer than the {limit_seconds:.0f}s limit"
                return FileReport(shown, False, "too-long", reason, **meta)
            n, peak, bad = 0, 0.0, 0
            for block in _read_blocks(snd, shown, 0, None):
                n += len(block)
                finite = np.isfinite(block)
                if not finite.all():
                    bad += int((~finite).sum())
                    block = block[finite]
                if len(block):
                    peak = max(peak, float(np.abs(block).max()))
    except BadAudioError as e:
        return _fail(path, e, **meta)
    meta["peak"] = peak
    if bad:
        return FileReport(shown, False, "nan", f"{bad} NaN/Inf samples", **meta)
    if _short(n, info.frames, info.sample_rate):
        reason = f"truncated: decoded {n} of {info.frames} frames announced"
        return FileReport(shown, False, "corrupt", reason, **meta)
    meta["duration"] = n / info.sample_rate
    notes = list(info.problems)
    silent = peak < SILENCE_PEAK
    if silent:
        notes.insert(0, f"silent (peak {peak:.1e} < {SILENCE_PEAK:.0e})")
    return FileReport(shown, True, "", "; ".join(notes), silent=silent, **meta)
