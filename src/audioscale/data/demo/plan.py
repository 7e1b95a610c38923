"""The demo's plan: constants, sizes, and the records a build is planned in.

A ``RenderPlan`` holds one ``RenderJob`` per output wav (decided from metadata only, so
deterministic for a seed) plus the bookkeeping that keeps the pool away from task test
material. Every clip's file name carries a hash of its render spec (``make_job``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

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
    "5 folds by prompt name across languages.",
    "speaker-id": "Which of the Hedgewars voice packs speaks; 5 folds by phrase.",
    "spoken-digit": "Digit 0-9 spoken by espeak-ng over languages and voice variants; "
    "test variants unseen in training.",
    "instrument-family": "General MIDI instrument family (16) of a FluidR3_GM note; "
    "test programs unseen in training.",
    "pitch": "Register band (6 semitones, MIDI 36-83, 8 classes) of a FluidR3_GM note; "
    "test programs unseen in training.",
    "sfx-category": "UFO:AI sound-effect category (folder in 0snd.pk3); "
    "5 folds by near-duplicate group.",
}


@dataclass(frozen=True)
class SizeSpec:
    """Clip counts per label (split 70/15/15) and pool budget for one ``--size``.

    The per-label counts of the real-source tasks (``lang``, ``speaker``, ``sfx``) size the
    70/15/15 draw that decides which files the pool never sees (unchanged since #24, so
    the pool is too); the tasks themselves are ``folds``-fold over the withheld groups
    (``tasks.plan_file_folds``). The synthetic tasks keep their 70/15/15 draw and add test
    clips: ``digit_test_takes`` renditions per test voice and digit, and
    ``family_test_per_class`` / ``pitch_test_per_class`` test notes per label.
    """

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
    folds: int = 5
    digit_test_takes: int = 1
    family_test_per_class: int = 1
    pitch_test_per_class: int = 2


SIZES = {
    "small": SizeSpec(
        lang_per_class=24,
        speaker_per_class=14,
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
        digit_test_takes=8,
        family_test_per_class=60,
        pitch_test_per_class=100,
    ),
}
# "large": the full tasks, with the pool topped up by synthesis (espeak-ng speech and
# soundfont music are unlimited) to ~12 h, for GPU studies whose bigger runs would
# otherwise repeat the 3.3-h pool many times.
SIZES["large"] = dataclasses.replace(SIZES["full"], pool_target_hours=12.0)


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


def seeded_rng(seed: int, *names: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, component)."""
    key = [int(seed)] + [zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng(np.random.SeedSequence(key))


def _spec_hash(kind: str, spec: dict) -> str:
    blob = json.dumps({"v": VERSION, "sr": SR, "kind": kind, "spec": spec}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._#+-]+", "_", name).strip("_") or "x"


def make_job(manifest: str, subdir: str, stem: str, kind: str, spec: dict, row: dict) -> RenderJob:
    dest = f"{manifest}/audio/{_safe(subdir)}/{_safe(stem)}-{_spec_hash(kind, spec)}.wav"
    return RenderJob(manifest, dest, kind, spec, row)
