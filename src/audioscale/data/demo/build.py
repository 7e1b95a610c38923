"""The real-audio demo corpus: six labeled tasks and an unlabeled pretraining pool.

Built only from Debian packages and local synthesis (DESIGN.md, "Demo corpus"), so that
all other real audio stays unseen for checking that results carry over:

==================  ============  ==========================================================
task                domain        source, label, group (the unit kept inside one split)
==================  ============  ==========================================================
lang-id             speech        asterisk-core-sounds-{en,es,fr,it,ru}-wav prompts (8 kHz,
                                  one professional speaker per language); label = language;
                                  group = prompt name (``digits/7``), so a prompt recorded in
                                  several languages sits in one split only; valid/test
                                  use the same prompts in every language. Files >= 1 s.
speaker-id          speech        hedgewars-data voice packs (15 voices); label = voice;
                                  group = phrase (file stem, trailing digits dropped:
                                  ``Ow1``..``Ow4`` → ``ow``): test phrases are unseen in
                                  train for every voice. Files >= 0.4 s.
spoken-digit        speech        espeak-ng saying "0".."9"; label = digit; voice =
                                  language + variant (``en-us+m3``), random speed 130-210
                                  wpm and pitch 25-75 per clip. Variants are split between
                                  train/valid/test (globally), so test voices are unseen.
instrument-family   music         FluidR3_GM notes via tinysoundfont; label = one of the 16
                                  General MIDI families (program // 8); group = program,
                                  split 6/1/1 programs per family: test instruments unseen.
                                  Key 40-84 (audible ones), velocity 64-127, hold 0.4-2 s,
                                  0.5 s release.
pitch               music         same renderer, melodic programs 0-111 (families 1-14);
                                  label = register band of 6 semitones over MIDI 36-83
                                  (C2 65 Hz .. B5 988 Hz): 8 classes ``C2-F2``,
                                  ``F#2-B2``, ... Pitch class (12-way) was rejected: a
                                  64-band mel frontend barely resolves semitones at low
                                  fundamentals, so it would measure the frontend, not the
                                  encoder. Same program split as instrument-family.
sfx-category        environment   ufoai-sound (0snd.pk3 zip); label = first folder under
                                  ``sound/`` (alien species merged into ``aliens``);
                                  categories with < 12 usable files (doors, seq, ugv, ui)
                                  are skipped for the task and go to the pool, as do files
                                  > 30 s (ambience loops: 15 of its 21 min); group =
                                  near-duplicate stem (``breakglass01..07`` → ``breakglass``).
==================  ============  ==========================================================

Splits: train/valid/test ≈ 70/15/15, made by assigning *groups* to splits first (seeded)
and then drawing the per-label quota inside each split, so splits are stratified by label
and disjoint by group. Task clips are cropped to their first 4 s.

Pool rule (tested): the pool never holds a file used by any task split, nor any file
sharing a group with a task's valid/test split (other languages' recordings of a test
prompt, other voices' takes of a test phrase, near-duplicates of a test sound effect),
nor audio from a valid/test espeak variant or soundfont program (synthetic pool audio
uses train variants/programs only). Short files are concatenated (0.25 s gaps) into
pool items of ~20 s per language/voice/category, long ones cut into <= 30 s pieces;
10 % of the items per source (whole files, never a piece) form the ``heldout`` split.
Full size tops the pool up with espeak paragraphs and multi-note soundfont phrases to
>= 3.25 h.

Every clip's file name carries a hash of its render spec; a rebuild skips a clip whose
file exists with the sha1 recorded in the manifest, and deletes wav files no manifest
lists. All output: 16 kHz mono 16-bit wav. Silent output (peak below -50 dBFS) and bad
source files are skipped and reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from audioscale.audio.io import load_audio, probe_audio
from audioscale.data.manifest import load_pool, load_task, read_manifest, write_manifest
from audioscale.data.synth import (
    GM_FAMILIES,
    SF2_PATH,
    SoundfontRenderer,
    espeak,
    espeak_available,
)
from audioscale.errors import AudioscaleError, DataError
from audioscale.utils import (
    atomic_path,
    atomic_save_json,
    atomic_write_text,
    progress_bar,
    sha1_file,
)

VERSION = 1  # part of every clip's spec hash: bump to invalidate reuse after a render change
SR = 16000
CLIP_SECONDS = 4.0  # task clips are cropped to their first 4 s
SPLITS = ("train", "valid", "test")
EVAL_FRACTION = 0.15  # valid and test each
HELDOUT_FRACTION = 0.10
SILENT_PEAK = 10 ** (-50 / 20)  # -50 dBFS
POOL_GAP = 0.25  # seconds of silence between concatenated pool files
POOL_PIECE = 30.0  # long pool files are cut into pieces of at most this many seconds
MIN_SFX_FILES = 12

DEMO_TASKS = ("lang-id", "speaker-id", "spoken-digit", "instrument-family", "pitch", "sfx-category")
TASK_DOMAINS = {
    "lang-id": "speech",
    "speaker-id": "speech",
    "spoken-digit": "speech",
    "instrument-family": "music",
    "pitch": "music",
    "sfx-category": "environment",
}
TASK_DESCRIPTIONS = {
    "lang-id": "Spoken language (en/es/fr/it/ru) of Asterisk telephony prompts; "
    "split by prompt name across languages.",
    "speaker-id": "Which of the Hedgewars voice packs speaks; split by phrase.",
    "spoken-digit": "Digit 0-9 spoken by espeak-ng over languages and voice variants; "
    "test variants unseen in training.",
    "instrument-family": "General MIDI instrument family (16) of a FluidR3_GM note; "
    "test programs unseen in training.",
    "pitch": "Register band (6 semitones, MIDI 36-83, 8 classes) of a FluidR3_GM note; "
    "test programs unseen in training.",
    "sfx-category": "UFO:AI sound-effect category (folder in 0snd.pk3); "
    "split by near-duplicate group.",
}

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
ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "klatt",
    "croak",
    "whisperf",
    "Andy",
)
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCH_LOW, PITCH_BAND, PITCH_BANDS = 36, 6, 8

# Sentences without digits for the espeak part of the pool (written for this project).
SENTENCES = {
    "en-us": [
        "The morning train was late again, so we walked along the river.",
        "Please leave your message after the tone and we will call you back.",
        "A small bird sang on the fence while the rain slowly stopped.",
        "She opened the window and the sound of the market filled the room.",
        "Nobody knew where the old map had come from.",
        "Turn left at the bakery and follow the road up the hill.",
        "The orchestra tuned their instruments before the concert began.",
        "We should paint the kitchen a brighter colour this summer.",
    ],
    "es": [
        "El tren de la mañana llegó tarde, así que caminamos junto al río.",
        "Por favor, deje su mensaje después de la señal.",
        "Un pájaro pequeño cantaba en la valla mientras paraba la lluvia.",
        "Abrió la ventana y el ruido del mercado llenó la habitación.",
        "Nadie sabía de dónde venía el viejo mapa.",
        "Gire a la izquierda en la panadería y siga la calle hacia arriba.",
    ],
    "de": [
        "Der Zug am Morgen hatte wieder Verspätung, also gingen wir am Fluss entlang.",
        "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
        "Ein kleiner Vogel sang auf dem Zaun, während der Regen nachließ.",
        "Sie öffnete das Fenster, und der Lärm des Marktes füllte das Zimmer.",
        "Niemand wusste, woher die alte Karte stammte.",
        "Biegen Sie an der Bäckerei links ab und folgen Sie der Straße bergauf.",
    ],
    "fr": [
        "Le train du matin était encore en retard, alors nous avons longé la rivière.",
        "Veuillez laisser votre message après le signal sonore.",
        "Un petit oiseau chantait sur la clôture pendant que la pluie cessait.",
        "Elle ouvrit la fenêtre et le bruit du marché remplit la pièce.",
        "Personne ne savait d'où venait la vieille carte.",
        "Tournez à gauche à la boulangerie et suivez la route qui monte.",
    ],
    "it": [
        "Il treno del mattino era di nuovo in ritardo, così camminammo lungo il fiume.",
        "Per favore, lasci un messaggio dopo il segnale acustico.",
        "Un piccolo uccello cantava sulla staccionata mentre la pioggia smetteva.",
        "Aprì la finestra e il rumore del mercato riempì la stanza.",
        "Nessuno sapeva da dove venisse la vecchia mappa.",
        "Giri a sinistra al forno e segua la strada in salita.",
    ],
    "pt": [
        "O comboio da manhã chegou atrasado outra vez, por isso fomos a pé junto ao rio.",
        "Por favor, deixe a sua mensagem depois do sinal.",
        "Um pequeno pássaro cantava na cerca enquanto a chuva parava.",
        "Ela abriu a janela e o barulho do mercado encheu a sala.",
        "Ninguém sabia de onde vinha o mapa antigo.",
        "Vire à esquerda na padaria e siga a estrada a subir.",
    ],
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


@dataclass(frozen=True)
class SizeSpec:
    """Clip counts per label (split 70/15/15) and pool budget for one ``--size``."""

    lang_per_class: int
    speaker_per_class: int
    digit_langs: tuple[str, ...]
    digit_variants: int
    family_per_class: int
    pitch_per_class: int
    sfx_per_class: int
    pool_real_cap_s: dict[str, float] | None  # seconds per real source; None = all usable
    pool_synth_s: tuple[float, float] | None  # (espeak, soundfont) seconds; None = top up
    pool_target_hours: float  # the top-up target when pool_synth_s is None


SIZES = {
    "small": SizeSpec(
        lang_per_class=24,
        speaker_per_class=8,
        digit_langs=("en-us", "es"),
        digit_variants=6,
        family_per_class=8,
        pitch_per_class=14,
        sfx_per_class=10,
        pool_real_cap_s={"asterisk": 120.0, "hedgewars": 40.0, "ufoai": 60.0},
        pool_synth_s=(40.0, 60.0),
        pool_target_hours=0.0,
    ),
    "full": SizeSpec(
        lang_per_class=120,
        speaker_per_class=40,
        digit_langs=("en-us", "es", "de", "fr", "it", "pt"),
        digit_variants=10,
        family_per_class=40,
        pitch_per_class=75,
        sfx_per_class=40,
        pool_real_cap_s=None,
        pool_synth_s=None,
        pool_target_hours=3.25,
    ),
}
# "large": the full tasks, with the pool topped up by synthesis (espeak-ng speech and
# soundfont music are unlimited) to ~12 h, for GPU studies whose bigger runs would
# otherwise repeat the 3.3-h pool many times.
SIZES["large"] = dataclasses.replace(SIZES["full"], pool_target_hours=12.0)


@dataclass
class DemoSummary:
    """What a build produced: clips and hours per task and split, pool hours per source."""

    out: str
    size: str
    seed: int
    tasks: dict = field(
        default_factory=dict
    )  # task → {clips, hours, labels, splits: {s: {clips, hours}}}
    pool: dict = field(default_factory=dict)  # {clips, hours, sources: {...}, splits: {...}}
    reused: int = 0
    rendered: int = 0
    removed: int = 0
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    read_from: dict[str, str] = field(default_factory=dict)  # source → folder or program

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DemoSummary:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class SrcFile:
    """One real source file: ``path`` is what load_audio reads (file or ``zip::member``)."""

    path: str
    origin: str  # "<source>:<relative name>", unique
    duration: float
    label: str  # language / voice / category
    group: str  # prompt / phrase / near-duplicate stem


@dataclass
class RenderJob:
    """One output wav: how to render it and its manifest fields (besides path/duration/sha1)."""

    manifest: str  # "pool" or "tasks/<task>"
    dest: str  # relative to the output folder
    kind: str  # file | concat | espeak | notes
    spec: dict
    row: dict


@dataclass
class RenderPlan:
    """Jobs plus the bookkeeping that keeps the pool away from task test material."""

    jobs: list[RenderJob] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # origins used by any task split
    blocked: set[str] = field(default_factory=set)  # "<source>:<group>" of valid/test splits
    problems: list[str] = field(default_factory=list)
    dests: set[str] = field(default_factory=set)
    read_from: dict[str, str] = field(default_factory=dict)  # source → folder or program

    def add(self, job: RenderJob) -> bool:
        """Append ``job`` unless an identical clip (same file name) is already planned."""
        if job.dest in self.dests:
            return False
        self.dests.add(job.dest)
        self.jobs.append(job)
        return True


# --------------------------------------------------------------------------- small helpers


def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, component)."""
    key = [int(seed)] + [zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng(np.random.SeedSequence(key))


def _split_counts(n: int) -> dict[str, int]:
    """``n`` items → train/valid/test counts, valid = test = max(1, round(0.15 n))."""
    if n < 3:
        return {"train": n, "valid": 0, "test": 0}
    k = max(1, int(n * EVAL_FRACTION + 0.5))
    return {"train": n - 2 * k, "valid": k, "test": k}


def _assign_equal(groups: list[str], rng: np.random.Generator) -> dict[str, str]:
    """Shuffle groups (sorted first, so the input order never matters) and cut 70/15/15."""
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    counts = _split_counts(len(order))
    out, i = {}, 0
    for split in ("test", "valid", "train"):
        for g in order[i : i + counts[split]]:
            out[g] = split
        i += counts[split]
    return out


def _assign_sized(sizes: dict[str, int], rng: np.random.Generator) -> dict[str, str]:
    """Groups of unequal size → splits with ≈15 % of the items each in valid and test.

    Groups are visited in a seeded order; test then valid take the first group that fits
    the remaining need (or, if none fits, the smallest), until they hold their share.
    """
    names = sorted(sizes)
    order = [names[i] for i in rng.permutation(len(names))]
    if len(order) < 3:
        return {g: "train" for g in order}
    want = _split_counts(sum(sizes.values()))
    out: dict[str, str] = {}
    for split in ("test", "valid"):
        have = 0
        while have < want[split] and len(order) > 1:
            need = want[split] - have
            fit = [g for g in order if sizes[g] <= need]
            g = fit[0] if fit else min(order, key=lambda x: sizes[x])
            out[g] = split
            have += sizes[g]
            order.remove(g)
    out.update({g: "train" for g in order})
    return out


def _sample(items: list, k: int, rng: np.random.Generator) -> list:
    """``k`` items without replacement, kept in input order (all when fewer)."""
    if k >= len(items):
        return list(items)
    idx = np.sort(rng.choice(len(items), size=k, replace=False))
    return [items[i] for i in idx]


def _spec_hash(kind: str, spec: dict) -> str:
    blob = json.dumps({"v": VERSION, "sr": SR, "kind": kind, "spec": spec}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._#+-]+", "_", name).strip("_") or "x"


def _job(manifest: str, subdir: str, stem: str, kind: str, spec: dict, row: dict) -> RenderJob:
    dest = f"{manifest}/audio/{_safe(subdir)}/{_safe(stem)}-{_spec_hash(kind, spec)}.wav"
    return RenderJob(manifest, dest, kind, spec, row)


def note_name(midi: int) -> str:
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_label(key: int) -> str:
    """Register band of a MIDI key: 6-semitone bands from C2 (36), e.g. 40 → ``C2-F2``."""
    lo = PITCH_LOW + (key - PITCH_LOW) // PITCH_BAND * PITCH_BAND
    return f"{note_name(lo)}-{note_name(lo + PITCH_BAND - 1)}"


def _apt(packages: list[str]) -> str:
    return "sudo apt-get install -y " + " ".join(packages)


# --------------------------------------------------------------------------- sources


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


def _phrase(stem: str) -> str:
    return re.sub(r"\d+$", "", stem.lower()) or stem.lower()


def hedgewars_files(sources: DemoSources, voices: list[str], problems: list) -> list[SrcFile]:
    out = []
    for v in voices:
        for p in sorted((sources.hedgewars / v).glob("*.ogg")):
            f = _probe(str(p), f"hedgewars:{v}/{p.name}", v, _phrase(p.stem), problems)
            if f:
                out.append(f)
    return out


def _sfx_group(member: str) -> str:
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
        f = _probe(f"{sources.ufoai}::{n}", f"ufoai:{n}", parts[1], _sfx_group(n), problems)
        if f:
            out.append(f)
    return out


# --------------------------------------------------------------------------- task plans


def _file_clip(plan: RenderPlan, task: str, f: SrcFile, split: str, source: str) -> None:
    spec = {"path": f.origin, "max_seconds": CLIP_SECONDS}
    stem = f.origin.split(":", 1)[1].rsplit(".", 1)[0].replace("/", "__")
    job = _job(f"tasks/{task}", f.label, stem, "file", spec, {})
    job.spec = {**spec, "read": f.path}  # the local path is not part of the identity
    job.row = {"label": f.label, "split": split, "group": f.group, "origin": f.origin}
    plan.add(job)
    plan.used.add(f.origin)
    if split != "train":
        plan.blocked.add(f"{source}:{f.group}")


def _plan_file_task(
    plan: RenderPlan,
    task: str,
    source: str,
    files: list[SrcFile],
    split_of: dict[str, str],
    per_class: int,
    rng: np.random.Generator,
) -> None:
    """Per label: draw the 70/15/15 quota of ``per_class`` from the files of each split.

    For valid and test, groups present for *every* label are drawn first and shared by
    all labels (the same prompt in each language, the same phrase by each voice): the
    evaluation then compares labels on equal content, and fewer groups are withheld
    from the pool. Labels are topped up with their own groups when shared ones run out.
    """
    counts = _split_counts(per_class)
    labels = sorted({f.label for f in files})
    for split in SPLITS:
        mine = {
            lb: [f for f in files if f.label == lb and split_of.get(f.group) == split]
            for lb in labels
        }
        shared: list[str] = []
        if split != "train":
            common = set.intersection(*({f.group for f in fs} for fs in mine.values()))
            shared = _sample(sorted(common), counts[split], rng)
        for lb in labels:
            first = {}
            for f in mine[lb]:
                if f.group in shared:
                    first.setdefault(f.group, f)
            chosen = list(first.values())
            rest = [f for f in mine[lb] if f not in chosen]
            chosen += _sample(rest, counts[split] - len(chosen), rng)
            for f in chosen:
                _file_clip(plan, task, f, split, source)


def plan_lang_id(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = _rng(seed, "lang-id")
    split_of = _assign_equal(sorted({f.group for f in files}), rng)
    eligible = [f for f in files if f.duration >= 1.0]
    _plan_file_task(plan, "lang-id", "asterisk", eligible, split_of, size.lang_per_class, rng)


def plan_speaker_id(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = _rng(seed, "speaker-id")
    split_of = _assign_equal(sorted({f.group for f in files}), rng)
    eligible = [f for f in files if f.duration >= 0.4]
    _plan_file_task(
        plan, "speaker-id", "hedgewars", eligible, split_of, size.speaker_per_class, rng
    )


def sfx_categories(files: list[SrcFile]) -> list[str]:
    """Categories with at least MIN_SFX_FILES usable files (0.25-30 s; longer ambience
    loops are kept for the pool, where a 4 s task crop would waste them)."""
    counts: dict[str, int] = {}
    for f in files:
        if 0.25 <= f.duration <= POOL_PIECE:
            counts[f.label] = counts.get(f.label, 0) + 1
    return sorted(c for c, n in counts.items() if n >= MIN_SFX_FILES)


def plan_sfx(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = _rng(seed, "sfx-category")
    for cat in sfx_categories(files):
        mine = [f for f in files if f.label == cat and 0.25 <= f.duration <= POOL_PIECE]
        sizes: dict[str, int] = {}
        for f in mine:
            sizes[f.group] = sizes.get(f.group, 0) + 1
        split_of = _assign_sized(sizes, rng)
        counts = _split_counts(min(size.sfx_per_class, len(mine)))
        for split in SPLITS:
            pool = [f for f in mine if split_of[f.group] == split]
            for f in _sample(pool, counts[split], rng):
                _file_clip(plan, "sfx-category", f, split, "ufoai")


def espeak_variant_split(size: SizeSpec, seed: int) -> dict[str, str]:
    """The espeak variants in use and their split (shared by spoken-digit and the pool)."""
    rng = _rng(seed, "espeak-variants")
    chosen = _sample(list(ESPEAK_VARIANTS), size.digit_variants, rng)
    return _assign_equal(chosen, rng)


def plan_spoken_digit(plan: RenderPlan, size: SizeSpec, seed: int) -> None:
    rng = _rng(seed, "spoken-digit")
    variants = espeak_variant_split(size, seed)
    for lang in size.digit_langs:
        for var in sorted(variants):
            voice, split = f"{lang}+{var}", variants[var]
            for d in range(10):
                spec = {
                    "text": str(d),
                    "voice": voice,
                    "speed": int(rng.integers(130, 211)),
                    "pitch": int(rng.integers(25, 76)),
                }
                row = {"label": str(d), "split": split, "group": voice, "origin": f"espeak:{voice}"}
                stem = f"{voice}-d{d}-s{spec['speed']}-p{spec['pitch']}"
                plan.add(_job("tasks/spoken-digit", str(d), stem, "espeak", spec, row))
            if split != "train":
                plan.blocked.add(f"espeak:{voice}")


def program_split(seed: int) -> dict[int, str]:
    """GM program → split: per family 6 train / 1 valid / 1 test programs (seeded)."""
    rng = _rng(seed, "programs")
    out: dict[int, str] = {}
    for fam in range(16):
        progs = [f"{p:03d}" for p in range(8 * fam, 8 * fam + 8)]
        out.update({int(p): s for p, s in _assign_equal(progs, rng).items()})
    return out


def _audible_key(
    synth: SoundfontRenderer, program: int, lo: int, hi: int, rng: np.random.Generator
) -> int | None:
    for _ in range(40):
        key = int(rng.integers(lo, hi + 1))
        if synth.audible(program, key):
            return key
    return None


def _note_job(task: str, label: str, program: int, key: int, rng, hold: tuple, tail: float, split):
    vel = int(rng.integers(64, 128))
    h = round(float(rng.uniform(*hold)), 2)
    spec = {"program": program, "events": [[0.0, h, key, vel]], "seconds": round(h + tail, 2)}
    group = f"program-{program:03d}"
    row = {"label": label, "split": split, "group": group, "origin": f"soundfont:{group}"}
    stem = f"p{program:03d}-k{key}-v{vel}-h{h}"
    return _job(f"tasks/{task}", label, stem, "notes", spec, row)


def plan_instrument_family(plan: RenderPlan, synth: SoundfontRenderer, size: SizeSpec, seed: int):
    rng = _rng(seed, "instrument-family")
    split_of = program_split(seed)
    counts = _split_counts(size.family_per_class)
    for fam, name in enumerate(GM_FAMILIES):
        for split in SPLITS:
            progs = [p for p in range(8 * fam, 8 * fam + 8) if split_of[p] == split]
            added = 0
            for _ in range(4 * counts[split]):  # redraws: inaudible keys, duplicate clips
                if added == counts[split]:
                    break
                prog = int(rng.choice(progs))
                key = _audible_key(synth, prog, 40, 84, rng)
                if key is not None:
                    job = _note_job(
                        "instrument-family", name, prog, key, rng, (0.4, 2.0), 0.5, split
                    )
                    added += plan.add(job)
            if added < counts[split]:
                plan.problems.append(f"instrument-family: only {added} {split} clips for {name}")
    _block_programs(plan, split_of)


def plan_pitch(plan: RenderPlan, synth: SoundfontRenderer, size: SizeSpec, seed: int) -> None:
    rng = _rng(seed, "pitch")
    split_of = program_split(seed)
    counts = _split_counts(size.pitch_per_class)
    for b in range(PITCH_BANDS):
        lo = PITCH_LOW + b * PITCH_BAND
        for split in SPLITS:
            progs = [p for p in range(112) if split_of[p] == split]
            added = 0
            for _ in range(4 * counts[split]):
                if added == counts[split]:
                    break
                key = int(rng.integers(lo, lo + PITCH_BAND))
                audible = (int(p) for p in rng.permutation(progs) if synth.audible(int(p), key))
                prog = next(audible, None)
                if prog is not None:
                    job = _note_job(
                        "pitch", pitch_label(key), prog, key, rng, (0.5, 1.5), 0.3, split
                    )
                    added += plan.add(job)
            if added < counts[split]:
                plan.problems.append(f"pitch: only {added} {split} clips for {pitch_label(lo)}")
    _block_programs(plan, split_of)


def _block_programs(plan: RenderPlan, split_of: dict[int, str]) -> None:
    plan.blocked.update(f"soundfont:program-{p:03d}" for p, s in split_of.items() if s != "train")


# --------------------------------------------------------------------------- pool plan


def _pack(files: list[SrcFile], target: float) -> list[list[SrcFile]]:
    """Greedy packing in the given order into chunks of about ``target`` seconds."""
    chunks, cur, t = [], [], 0.0
    for f in files:
        cur.append(f)
        t += f.duration + POOL_GAP
        if t >= target:
            chunks.append(cur)
            cur, t = [], 0.0
    if cur:
        chunks.append(cur)
    return chunks


def _pool_units_real(
    plan: RenderPlan, source: str, files: list[SrcFile], cap: float | None, rng
) -> list[list[RenderJob]]:
    """Pool items from one real source; a unit is what goes to train or heldout whole."""
    ok = [
        f for f in files if f.origin not in plan.used and f"{source}:{f.group}" not in plan.blocked
    ]
    ok = [ok[i] for i in rng.permutation(len(ok))]
    if cap is not None:
        keep, t = [], 0.0
        for f in ok:
            if t >= cap:
                break
            keep.append(f)
            t += min(f.duration, POOL_PIECE)
        ok = keep
    units: list[list[RenderJob]] = []
    for f in [f for f in ok if f.duration > POOL_PIECE]:
        n = math.ceil(f.duration / POOL_PIECE)
        stem = f.origin.split(":", 1)[1].rsplit(".", 1)[0].replace("/", "__")
        unit = []
        for i in range(n):
            spec = {"path": f.origin, "offset": i * POOL_PIECE, "max_seconds": POOL_PIECE}
            job = _job("pool", source, f"{stem}-{i:02d}", "file", spec, {"origin": f.origin})
            job.spec = {**spec, "read": f.path}
            unit.append(job)
        units.append(unit)
    for label in sorted({f.label for f in ok}):
        short = [f for f in ok if f.label == label and f.duration <= POOL_PIECE]
        for i, chunk in enumerate(_pack(short, 20.0)):
            spec = {"parts": [f.origin for f in chunk], "gap": POOL_GAP}
            job = _job("pool", source, f"{label}-{i:03d}", "concat", spec, {})
            job.spec = {**spec, "read": [f.path for f in chunk]}
            job.row = {"origin": ";".join(f.origin for f in chunk)}
            units.append([job])
    return units


def _pool_units_espeak(variants: dict[str, str], seconds: float, rng) -> list[list[RenderJob]]:
    """Paragraphs of 4-7 sentences (~15 s) in train-split variants only."""
    train_vars = sorted(v for v, s in variants.items() if s == "train")
    langs = sorted(SENTENCES)
    units = []
    for i in range(math.ceil(seconds / 15.0)):
        lang = langs[int(rng.integers(len(langs)))]
        voice = f"{lang}+{train_vars[int(rng.integers(len(train_vars)))]}"
        sents = SENTENCES[lang]
        pick = rng.choice(len(sents), size=int(rng.integers(4, 8)), replace=True)
        spec = {
            "text": " ".join(sents[j] for j in pick),
            "voice": voice,
            "speed": int(rng.integers(140, 201)),
            "pitch": int(rng.integers(30, 71)),
        }
        units.append(
            [
                _job(
                    "pool",
                    "espeak",
                    f"{voice}-{i:04d}",
                    "espeak",
                    spec,
                    {"origin": f"espeak:{voice}"},
                )
            ]
        )
    return units


def _phrase_events(synth: SoundfontRenderer, program: int, seconds: float, rng) -> list:
    """A random melody with occasional chords: notes of 0.15-1 s on a random walk of keys."""
    center = _audible_key(synth, program, 45, 76, rng)
    if center is None:
        return []
    events, t, key = [], 0.0, center
    tempo = float(rng.uniform(0.7, 1.4))
    while t < seconds - 0.5:
        step = float(rng.choice([0.15, 0.25, 0.4, 0.6, 1.0])) * tempo
        key = int(np.clip(key + rng.integers(-5, 6), max(36, center - 12), min(84, center + 12)))
        for k in {key, key + int(rng.choice([3, 4, 7]))} if rng.random() < 0.25 else {key}:
            if synth.audible(program, k):
                dur = round(step * float(rng.uniform(0.8, 1.5)), 3)
                events.append([round(t, 3), dur, k, int(rng.integers(50, 121))])
        t += step
    return events


def _pool_units_music(
    synth: SoundfontRenderer, programs: dict[int, str], seconds: float, rng
) -> list[list[RenderJob]]:
    """Phrases of 8-16 s on train-split programs only (all 16 families)."""
    train_progs = sorted(p for p, s in programs.items() if s == "train")
    units, total, i = [], 0.0, 0
    while total < seconds:
        prog = train_progs[int(rng.integers(len(train_progs)))]
        dur = round(float(rng.uniform(8.0, 16.0)), 2)
        events = _phrase_events(synth, prog, dur, rng)
        i += 1
        if not events:
            continue
        spec = {"program": prog, "events": events, "seconds": dur}
        origin = f"soundfont:program-{prog:03d}"
        units.append(
            [_job("pool", "soundfont", f"p{prog:03d}-{i:04d}", "notes", spec, {"origin": origin})]
        )
        total += dur
    return units


def plan_pool(
    plan: RenderPlan,
    real: dict[str, list[SrcFile]],
    synth: SoundfontRenderer,
    size: SizeSpec,
    seed: int,
) -> None:
    units: dict[str, list[list[RenderJob]]] = {}
    for source, files in real.items():
        cap = None if size.pool_real_cap_s is None else size.pool_real_cap_s.get(source, 0.0)
        units[source] = _pool_units_real(plan, source, files, cap, _rng(seed, "pool", source))
    if size.pool_synth_s is not None:
        speech_s, music_s = size.pool_synth_s
    else:
        real_s = sum(_unit_seconds(u, real) for us in units.values() for u in us)
        deficit = max(0.0, size.pool_target_hours * 3600 - real_s)
        speech_s = max(600.0, 0.4 * deficit)
        music_s = max(900.0, deficit - speech_s)
    variants = espeak_variant_split(size, seed)
    units["espeak"] = _pool_units_espeak(variants, speech_s, _rng(seed, "pool", "espeak"))
    units["soundfont"] = _pool_units_music(
        synth, program_split(seed), music_s, _rng(seed, "pool", "soundfont")
    )
    for source, us in units.items():
        rng = _rng(seed, "heldout", source)
        n_held = max(1, int(round(HELDOUT_FRACTION * len(us)))) if len(us) > 1 else 0
        held = set(rng.choice(len(us), size=n_held, replace=False).tolist()) if n_held else set()
        for i, unit in enumerate(us):
            for job in unit:
                job.row = {
                    "source": source,
                    "split": "heldout" if i in held else "train",
                    **job.row,
                }
                plan.add(job)


def _unit_seconds(unit: list[RenderJob], real: dict[str, list[SrcFile]]) -> float:
    """Planned seconds of a real-source unit (from probed durations)."""
    dur = {f.origin: f.duration for fs in real.values() for f in fs}
    total = 0.0
    for job in unit:
        if job.kind == "file":
            total += min(POOL_PIECE, dur[job.spec["path"]] - job.spec["offset"])
        else:
            total += sum(dur[o] + POOL_GAP for o in job.spec["parts"])
    return total


def make_plan(
    sources: DemoSources, size: str, seed: int, synth: SoundfontRenderer | None = None
) -> tuple[RenderPlan, SoundfontRenderer]:
    """Everything the build will write, decided from metadata only (deterministic)."""
    spec = SIZES[size]
    langs, voices, problems = check_sources(sources)
    plan = RenderPlan(problems=list(problems), read_from=source_folders(sources, langs))
    synth = synth or SoundfontRenderer(sources.sf2)
    real = {
        "asterisk": asterisk_files(sources, langs, plan.problems),
        "hedgewars": hedgewars_files(sources, voices, plan.problems),
        "ufoai": ufoai_files(sources, plan.problems),
    }
    plan_lang_id(plan, real["asterisk"], spec, seed)
    plan_speaker_id(plan, real["hedgewars"], spec, seed)
    plan_spoken_digit(plan, spec, seed)
    plan_instrument_family(plan, synth, spec, seed)
    plan_pitch(plan, synth, spec, seed)
    plan_sfx(plan, real["ufoai"], spec, seed)
    plan_pool(plan, real, synth, spec, seed)
    return plan, synth


# --------------------------------------------------------------------------- rendering


def render(job: RenderJob, synth: SoundfontRenderer) -> np.ndarray:
    """The float32 16 kHz mono samples of one job."""
    s = job.spec
    if job.kind == "file":
        return load_audio(
            s["read"], SR, max_seconds=s["max_seconds"], offset_seconds=s.get("offset", 0.0)
        )
    if job.kind == "concat":
        gap = np.zeros(int(round(s["gap"] * SR)), np.float32)
        parts = []
        for p in s["read"]:
            parts += [load_audio(p, SR, max_seconds=POOL_PIECE), gap]
        return np.concatenate(parts[:-1])
    if job.kind == "espeak":
        return espeak(s["text"], s["voice"], s["speed"], s["pitch"], SR)
    if job.kind == "notes":
        return synth.render(s["program"], [tuple(e) for e in s["events"]], s["seconds"])
    raise ValueError(f"unknown job kind {job.kind}")


def wav_bytes(x: np.ndarray) -> bytes:
    """16-bit PCM mono wav at 16 kHz (samples clipped to [-1, 1))."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 32767 / 32768), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    """tmp + rename (no fsync: clips are regenerable and verified by sha1 on reuse)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _run_job(job: RenderJob, out: Path, synth: SoundfontRenderer) -> tuple[dict | None, str | None]:
    try:
        x = render(job, synth)
    except AudioscaleError as e:
        return None, f"skipped {job.dest}: {e}"
    if len(x) == 0 or not np.isfinite(x).all() or float(np.abs(x).max()) < SILENT_PEAK:
        return None, f"skipped {job.dest}: silent or empty output"
    data = wav_bytes(x)
    _write(out / job.dest, data)
    sha = hashlib.sha1(data).hexdigest()
    return {"duration": round(len(x) / SR, 4), "sha1": sha}, None


def _old_rows(out: Path, manifests: set[str]) -> dict[str, dict]:
    """Existing manifest rows by absolute path (unreadable manifests are ignored)."""
    old = {}
    for m in manifests:
        try:
            for r in read_manifest(out / m / "manifest.csv"):
                old[os.path.normpath(r["path"])] = r
        except AudioscaleError:
            continue
    return old


def _reusable(path: Path, old: dict | None) -> bool:
    return bool(old and old.get("sha1") and path.is_file() and sha1_file(path) == old["sha1"])


def execute(
    plan: RenderPlan, out: Path, synth: SoundfontRenderer, progress: bool, workers: int = 2
) -> tuple[dict[str, list[dict]], int, int]:
    """Render (or reuse) every job; returns rows per manifest, reused and rendered counts."""
    old = _old_rows(out, {j.manifest for j in plan.jobs})
    results: list[dict | None] = [None] * len(plan.jobs)
    todo, reused = [], 0
    for i, job in enumerate(plan.jobs):
        prev = old.get(os.path.normpath(str(out / job.dest)))
        if _reusable(out / job.dest, prev):
            results[i] = {"duration": prev["duration"], "sha1": prev["sha1"]}
            reused += 1
        else:
            todo.append(i)
    with progress_bar("demo corpus", progress) as bar, ThreadPoolExecutor(workers) as ex:
        task = bar.add_task("", total=len(todo))
        for i, (res, problem) in zip(
            todo, ex.map(lambda i: _run_job(plan.jobs[i], out, synth), todo), strict=True
        ):
            results[i] = res
            if problem:
                plan.problems.append(problem)
            bar.advance(task)
    rows: dict[str, list[dict]] = {}
    for job, res in zip(plan.jobs, results, strict=True):
        if res is not None:
            row = {"path": str(out / job.dest), **job.row, **res}
            rows.setdefault(job.manifest, []).append(row)
    rendered = sum(1 for i in todo if results[i] is not None)
    return rows, reused, rendered


# --------------------------------------------------------------------------- outputs

TASK_COLUMNS = ["path", "label", "split", "group", "duration", "sha1", "origin"]
POOL_COLUMNS = ["path", "duration", "source", "split", "origin", "sha1"]


def _write_outputs(out: Path, rows: dict[str, list[dict]]) -> None:
    for task in DEMO_TASKS:
        m = f"tasks/{task}"
        task_rows = sorted(rows.get(m, []), key=lambda r: r["path"])
        if not task_rows:
            raise DataError(f"demo task {task}: no clip could be built (see the problems above)")
        write_manifest(out / m / "manifest.csv", task_rows, TASK_COLUMNS)
        meta = {
            "name": task,
            "domain": TASK_DOMAINS[task],
            "metric": "accuracy",
            "multilabel": False,
            "description": TASK_DESCRIPTIONS[task],
        }
        atomic_write_text(out / m / "task.yaml", yaml.safe_dump(meta, sort_keys=False))
    pool_rows = sorted(rows.get("pool", []), key=lambda r: r["path"])
    write_manifest(out / "pool" / "manifest.csv", pool_rows, POOL_COLUMNS)


def _remove_orphans(out: Path, rows: dict[str, list[dict]]) -> int:
    """Delete wav files under our audio folders that no manifest lists (old seeds/sizes)."""
    keep = {os.path.normpath(r["path"]) for rs in rows.values() for r in rs}
    removed = 0
    for m in ["pool"] + [f"tasks/{t}" for t in DEMO_TASKS]:
        audio = out / m / "audio"
        if not audio.is_dir():
            continue
        for p in audio.rglob("*"):
            if p.is_file() and (p.suffix == ".wav" or p.name.endswith(".tmp")):
                if os.path.normpath(str(p)) not in keep:
                    p.unlink()
                    removed += 1
    return removed


def _tally(rows: list[dict], key: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r[key], {"clips": 0, "hours": 0.0})
        d["clips"] += 1
        d["hours"] += float(r["duration"]) / 3600
    return {k: {"clips": v["clips"], "hours": round(v["hours"], 4)} for k, v in sorted(out.items())}


def _split_key(item: tuple) -> int:
    return SPLITS.index(item[0]) if item[0] in SPLITS else len(SPLITS)


def summarize(out: Path, rows: dict[str, list[dict]], size: str, seed: int) -> DemoSummary:
    s = DemoSummary(out=str(out), size=size, seed=seed)
    for task in DEMO_TASKS:
        tr = rows.get(f"tasks/{task}", [])
        s.tasks[task] = {
            "clips": len(tr),
            "hours": round(sum(float(r["duration"]) for r in tr) / 3600, 4),
            "labels": len({r["label"] for r in tr}),
            "splits": {k: v for k, v in sorted(_tally(tr, "split").items(), key=_split_key)},
        }
    pr = rows.get("pool", [])
    s.pool = {
        "clips": len(pr),
        "hours": round(sum(float(r["duration"]) for r in pr) / 3600, 4),
        "sources": _tally(pr, "source"),
        "splits": _tally(pr, "split"),
    }
    return s


def print_summary(s: DemoSummary) -> None:
    """Rich tables on stderr: clips and hours per task and split, pool hours per source."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"demo corpus ({s.size}, seed {s.seed}): {s.out}")
    for col in ("task", "labels", "split", "clips", "hours"):
        t.add_column(col, justify="left" if col in ("task", "split") else "right")
    for task, d in s.tasks.items():
        for i, (split, v) in enumerate(d["splits"].items()):
            t.add_row(
                task if i == 0 else "",
                str(d["labels"]) if i == 0 else "",
                split,
                str(v["clips"]),
                f"{v['hours']:.3f}",
            )
    for src, v in s.pool["sources"].items():
        t.add_row(
            "pool" if src == next(iter(s.pool["sources"])) else "",
            "",
            src,
            str(v["clips"]),
            f"{v['hours']:.3f}",
        )
    for split, v in s.pool["splits"].items():
        t.add_row("", "", f"pool {split}", str(v["clips"]), f"{v['hours']:.3f}")
    con = Console(stderr=True)
    for src, where in s.read_from.items():
        con.print(f"read {src} from {where}")
    con.print(t)
    con.print(
        f"{s.rendered} clips rendered, {s.reused} reused, {s.removed} stale files removed, "
        f"{len(s.problems)} problems, {s.wall_s:.1f} s"
    )
    for p in s.problems[:20]:
        con.print(f"  [yellow]{p}[/yellow]")


# --------------------------------------------------------------------------- entry points


def build_demo(
    out: str | Path = "data/demo",
    size: str = "small",
    seed: int = 0,
    progress: bool = True,
    sources: DemoSources | None = None,
    workers: int | None = None,
) -> DemoSummary:
    """Build (or refresh) the demo corpus under ``out``; returns its DemoSummary.

    ``size``: ``small`` (~100 clips per task, a few minutes of pool, for tests) or
    ``full`` (~250-650 clips per task, >= 3.25 h of pool). Deterministic for a seed.
    Writes ``out/tasks/<task>/{manifest.csv,task.yaml,audio/}``, ``out/pool/{manifest.csv,
    audio/}`` and ``out/summary.json``.
    """
    if size not in SIZES:
        raise DataError(f"demo size {size!r} is not one of {sorted(SIZES)}")
    t0 = time.time()
    out = Path(out).resolve()
    plan, synth = make_plan(sources or DemoSources(), size, seed)
    workers = workers or min(4, max(2, os.cpu_count() or 2))
    rows, reused, rendered = execute(plan, out, synth, progress, workers)
    _write_outputs(out, rows)
    summary = summarize(out, rows, size, seed)
    summary.reused, summary.rendered = reused, rendered
    summary.removed = _remove_orphans(out, rows)
    summary.problems = plan.problems
    summary.read_from = plan.read_from
    summary.wall_s = round(time.time() - t0, 2)
    atomic_save_json(out / "summary.json", summary.to_dict())
    if progress:
        print_summary(summary)
    return summary


def validate_demo(out: str | Path) -> list[str]:
    """Problems that make a built demo folder unusable (empty list: fine)."""
    out = Path(out)
    problems = []
    for task in DEMO_TASKS:
        try:
            t = load_task(out / "tasks" / task)
            problems += [
                f"{task}: missing {r['path']}" for r in t.rows if not os.path.isfile(r["path"])
            ]
        except AudioscaleError as e:
            problems.append(str(e))
    try:
        rows = load_pool(out / "pool")
        problems += [f"pool: missing {r['path']}" for r in rows if not os.path.isfile(r["path"])]
    except AudioscaleError as e:
        problems.append(str(e))
    return problems


def ensure_demo(
    out: str | Path = "data/demo", size: str = "small", seed: int = 0, progress: bool = True
) -> DemoSummary:
    """The demo corpus at ``out``: reuse a complete build of this size and seed, else build."""
    path = Path(out) / "summary.json"
    if path.is_file():
        try:
            summary = DemoSummary.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError):
            summary = None
        if summary and summary.size == size and summary.seed == seed and not validate_demo(out):
            summary.out = str(Path(out).resolve())  # the folder may have been moved or copied
            return summary
    return build_demo(out, size=size, seed=seed, progress=progress)
