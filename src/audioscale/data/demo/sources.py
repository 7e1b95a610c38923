"""The demo's real sources: which Debian packages are there, and their files.

Each source file becomes a ``SrcFile`` (path, unique origin, header duration, label,
group); files that cannot be probed are reported as problems, never fatal.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from audioscale.audio.io import probe_audio
from audioscale.data.demo.plan import SrcFile
from audioscale.data.synth import SF2_PATH, espeak_available
from audioscale.errors import AudioscaleError, DataError

ASTERISK_LANGS = ("en", "es", "fr", "it", "ru")
# asterisk-core-sounds-<lg>-wav installs its prompts in one voice folder per language;
# the short names <lg>/ are alternatives links made by the (recommended) packages
# asterisk-core-sounds-<lg>, which --no-install-recommends skips. Both layouts are read.
ASTERISK_VOICES = {
    "en": "en_US_f_Allison",
    "es": "es_MX_f_Allison",
    "fr": "fr_CA_f_June",
    "it": "it_IT_m_Carlo",
    "ru": "ru_RU_f_IvrvoiceRU",
}

PACKAGES = {
    "hedgewars": "hedgewars-data",
    "ufoai": "ufoai-sound",
    "sf2": "fluid-soundfont-gm",
    "espeak": "espeak-ng",
}


@dataclass(frozen=True)
class DemoSources:
    """Where the Debian packages put their audio (overridable for tests)."""

    asterisk: Path = Path("/usr/share/asterisk/sounds")
    hedgewars: Path = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
    ufoai: Path = Path("/usr/share/games/ufoai/base/0snd.pk3")
    sf2: Path = Path(SF2_PATH)


def _apt(packages: list[str]) -> str:
    return "sudo apt-get install -y " + " ".join(packages)


def check_sources(sources: DemoSources) -> tuple[list[str], list[str], list[str]]:
    """Which asterisk languages and hedgewars voices exist, plus problems found.

    Raises DataError (one line, naming the packages and the apt-get command) when a
    required package is missing or a task would become impossible; a missing optional
    source (one asterisk language, some voices) is only reported.
    """
    missing, problems = [], []
    langs = [lg for lg in ASTERISK_LANGS if asterisk_dir(sources, lg) is not None]
    for lg in sorted(set(ASTERISK_LANGS) - set(langs)):
        problems.append(f"asterisk language '{lg}' missing (asterisk-core-sounds-{lg}-wav)")
    if len(langs) < 2:
        missing += [f"asterisk-core-sounds-{lg}-wav" for lg in ASTERISK_LANGS if lg not in langs]
    root = sources.hedgewars
    voices = sorted(p.name for p in root.iterdir() if any(p.glob("*.ogg"))) if root.is_dir() else []
    if len(voices) < 2:
        missing.append(PACKAGES["hedgewars"])
    elif len(voices) < 15:
        problems.append(f"only {len(voices)} hedgewars voices found in {root}")
    if not sources.ufoai.is_file():
        missing.append(PACKAGES["ufoai"])
    if not sources.sf2.is_file():
        missing.append(PACKAGES["sf2"])
    if not espeak_available():
        missing.append(PACKAGES["espeak"])
    if missing:
        raise DataError(
            f"demo corpus needs missing Debian package(s) {', '.join(missing)}: "
            f"install with: {_apt(missing)}"
        )
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        raise DataError(
            "demo corpus needs python package tinysoundfont: pip install --no-deps tinysoundfont"
        ) from None
    return langs, voices, problems


_DURATIONS: dict[tuple[str, int, int], float | str] = {}  # (path, size, mtime) → s or error


def _duration(path: str) -> float | str:
    """Header duration of a file or zip member (memoised per file state), or the problem."""
    st = os.stat(path.split("::", 1)[0])
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DURATIONS:
        try:
            info = probe_audio(path)
            _DURATIONS[key] = info.duration if info.frames > 0 else "no audio frames"
        except AudioscaleError as e:
            _DURATIONS[key] = str(e)
    return _DURATIONS[key]


def _probe(path: str, origin: str, label: str, group: str, problems: list) -> SrcFile | None:
    dur = _duration(path)
    if isinstance(dur, str):
        problems.append(f"skipped {origin}: {dur}")
        return None
    return SrcFile(path, origin, dur, label, group)


def asterisk_dir(sources: DemoSources, lg: str) -> Path | None:
    """The folder holding language ``lg``'s prompt wavs: the voice folder the -wav package
    installs (e.g. ``en_US_f_Allison``), else the short alternatives link ``en``."""
    for name in (ASTERISK_VOICES[lg], lg):
        root = sources.asterisk / name
        if root.is_dir() and any(root.glob("*.wav")):
            return root
    return None


def source_folders(sources: DemoSources, langs: list[str]) -> dict[str, str]:
    """Where each source was read from (printed by ``data demo``, kept in summary.json)."""
    out = {f"asterisk:{lg}": str(asterisk_dir(sources, lg)) for lg in langs}
    out["hedgewars"] = str(sources.hedgewars)
    out["ufoai"] = str(sources.ufoai)
    out["soundfont"] = str(sources.sf2)
    out["espeak"] = shutil.which("espeak-ng") or "espeak-ng"
    return out


def asterisk_files(sources: DemoSources, langs: list[str], problems: list) -> list[SrcFile]:
    """Prompt wavs per language; ``silence/`` (digital silence by design) is left out."""
    out = []
    for lg in langs:
        root = asterisk_dir(sources, lg)
        for p in sorted(root.rglob("*.wav")):
            rel = p.relative_to(root).as_posix()
            if rel.startswith("silence/"):
                continue
            f = _probe(str(p), f"asterisk:{lg}/{rel}", lg, rel[: -len(".wav")], problems)
            if f:
                out.append(f)
    return out


def phrase_group(stem: str) -> str:
    return re.sub(r"\d+$", "", stem.lower()) or stem.lower()


def hedgewars_files(sources: DemoSources, voices: list[str], problems: list) -> list[SrcFile]:
    out = []
    for v in voices:
        for p in sorted((sources.hedgewars / v).glob("*.ogg")):
            f = _probe(str(p), f"hedgewars:{v}/{p.name}", v, phrase_group(p.stem), problems)
            if f:
                out.append(f)
    return out


def sfx_group(member: str) -> str:
    """``sound/misc/breakglass03.ogg`` → ``misc/breakglass`` (near-duplicate takes)."""
    parts = member.split("/")[1:]
    stem = re.sub(r"[-_]?\d+[a-z]?$", "", parts[-1].rsplit(".", 1)[0]) or parts[-1]
    return "/".join(parts[:-1] + [stem])


def ufoai_files(sources: DemoSources, problems: list) -> list[SrcFile]:
    """Sound effects inside the pk3 zip; category = first folder below ``sound/``."""
    try:
        with zipfile.ZipFile(sources.ufoai) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith((".ogg", ".wav")))
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{sources.ufoai}: not a readable zip ({e})") from None
    out = []
    for n in names:
        parts = n.split("/")
        if len(parts) < 3 or parts[0] != "sound":
            continue
        f = _probe(f"{sources.ufoai}::{n}", f"ufoai:{n}", parts[1], sfx_group(n), problems)
        if f:
            out.append(f)
    return out
