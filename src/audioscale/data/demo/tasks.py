"""The six task planners: which clips each task renders, in which split.

Groups (prompt, phrase, near-duplicate stem, espeak variant, soundfont program) are
assigned to splits first, then the per-label quota is drawn inside each split; every
valid/test group is recorded in ``RenderPlan.blocked`` so the pool never holds it.

Real sources (asterisk, hedgewars, ufoai) are few, and the pool needs them too, so their
tasks are K-fold (#24): the 70/15/15 draw above still decides which files the pool never
sees (``withhold``: the pool is what it was before), and the task is every usable file of
the groups none of whose files can reach the pool, split into ``size.folds`` folds by
group (``plan_file_folds``). Every such clip is tested once, and no pool file shares a
group with any of them.
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np

from audioscale.data.demo.plan import (
    CLIP_SECONDS,
    MIN_SFX_FILES,
    POOL_PIECE,
    SPLITS,
    RenderPlan,
    SizeSpec,
    SrcFile,
    make_job,
    seeded_rng,
)
from audioscale.data.demo.splits import (
    assign_equal,
    assign_folds,
    assign_sized,
    sample,
    split_counts,
)
from audioscale.data.synth import GM_FAMILIES, SoundfontRenderer
from audioscale.errors import DataError

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


def note_name(midi: int) -> str:
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_label(key: int) -> str:
    """Register band of a MIDI key: 6-semitone bands from C2 (36), e.g. 40 → ``C2-F2``."""
    lo = PITCH_LOW + (key - PITCH_LOW) // PITCH_BAND * PITCH_BAND
    return f"{note_name(lo)}-{note_name(lo + PITCH_BAND - 1)}"


def _file_clip(plan: RenderPlan, task: str, f: SrcFile, split: str, source: str) -> None:
    spec = {"path": f.origin, "max_seconds": CLIP_SECONDS}
    stem = f.origin.split(":", 1)[1].rsplit(".", 1)[0].replace("/", "__")
    job = make_job(f"tasks/{task}", f.label, stem, "file", spec, {})
    job.spec = {**spec, "read": f.path}  # the local path is not part of the identity
    job.row = {"label": f.label, "split": split, "group": f.group, "origin": f.origin}
    plan.add(job)
    plan.used.add(f.origin)
    if split != "train":
        plan.blocked.add(f"{source}:{f.group}")


def withhold(plan: RenderPlan, f: SrcFile, split: str, source: str) -> None:
    """Keep ``f`` (and, for valid/test, its group) out of the pool; render nothing."""
    plan.used.add(f.origin)
    if split != "train":
        plan.blocked.add(f"{source}:{f.group}")


def withheld_groups(plan: RenderPlan, source: str, files: list[SrcFile]) -> set[str]:
    """Groups of ``source`` none of whose files the pool may take (all of ``files``:
    every file of the source, whatever its length)."""
    reaches_pool = {
        f.group
        for f in files
        if f.origin not in plan.used and f"{source}:{f.group}" not in plan.blocked
    }
    return {f.group for f in files} - reaches_pool


def plan_file_folds(
    plan: RenderPlan,
    task: str,
    source: str,
    files: list[SrcFile],
    usable: list[SrcFile],
    k: int,
    seed: int,
) -> None:
    """The K-fold task: every ``usable`` file of the withheld groups, folds by group."""
    keep = withheld_groups(plan, source, files)
    chosen = [f for f in usable if f.group in keep]
    labels: dict[str, Counter] = {}
    for f in chosen:
        labels.setdefault(f.group, Counter())[f.label] += 1
    if len(labels) < 2:
        raise DataError(
            f"demo task {task}: {len(labels)} {source} group(s) kept from the pool, "
            "a K-fold task needs at least 2 (are the source files complete?)"
        )
    fold_of = assign_folds(labels, k, seeded_rng(seed, task, "folds"))
    for f in sorted(chosen, key=lambda f: f.origin):
        _file_clip(plan, task, f, fold_of[f.group], source)


def _plan_file_task(
    plan: RenderPlan,
    task: str,
    source: str,
    files: list[SrcFile],
    split_of: dict[str, str],
    per_class: int,
    rng: np.random.Generator,
) -> None:
    """Per label: withhold the 70/15/15 quota of ``per_class`` from the files of each split.

    Nothing is rendered here: the draw only decides which files (and valid/test groups)
    the pool never sees; ``plan_file_folds`` then makes the task from them.

    For valid and test, groups present for *every* label are drawn first and shared by
    all labels (the same prompt in each language, the same phrase by each voice): the
    evaluation then compares labels on equal content, and fewer groups are withheld
    from the pool. Labels are topped up with their own groups when shared ones run out.
    """
    counts = split_counts(per_class)
    labels = sorted({f.label for f in files})
    for split in SPLITS:
        mine = {
            lb: [f for f in files if f.label == lb and split_of.get(f.group) == split]
            for lb in labels
        }
        shared: list[str] = []
        if split != "train":
            common = set.intersection(*({f.group for f in fs} for fs in mine.values()))
            shared = sample(sorted(common), counts[split], rng)
        for lb in labels:
            first = {}
            for f in mine[lb]:
                if f.group in shared:
                    first.setdefault(f.group, f)
            chosen = list(first.values())
            rest = [f for f in mine[lb] if f not in chosen]
            chosen += sample(rest, counts[split] - len(chosen), rng)
            for f in chosen:
                withhold(plan, f, split, source)


def plan_lang_id(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = seeded_rng(seed, "lang-id")
    split_of = assign_equal(sorted({f.group for f in files}), rng)
    eligible = [f for f in files if f.duration >= 1.0]
    _plan_file_task(plan, "lang-id", "asterisk", eligible, split_of, size.lang_per_class, rng)
    plan_file_folds(plan, "lang-id", "asterisk", files, eligible, size.folds, seed)


def plan_speaker_id(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = seeded_rng(seed, "speaker-id")
    split_of = assign_equal(sorted({f.group for f in files}), rng)
    eligible = [f for f in files if f.duration >= 0.4]
    _plan_file_task(
        plan, "speaker-id", "hedgewars", eligible, split_of, size.speaker_per_class, rng
    )
    plan_file_folds(plan, "speaker-id", "hedgewars", files, eligible, size.folds, seed)


def sfx_categories(files: list[SrcFile]) -> list[str]:
    """Categories with at least MIN_SFX_FILES usable files (0.25-30 s; longer ambience
    loops are kept for the pool, where a 4 s task crop would waste them)."""
    counts: dict[str, int] = {}
    for f in files:
        if 0.25 <= f.duration <= POOL_PIECE:
            counts[f.label] = counts.get(f.label, 0) + 1
    return sorted(c for c, n in counts.items() if n >= MIN_SFX_FILES)


def plan_sfx(plan: RenderPlan, files: list[SrcFile], size: SizeSpec, seed: int) -> None:
    rng = seeded_rng(seed, "sfx-category")
    cats = sfx_categories(files)
    for cat in cats:
        mine = [f for f in files if f.label == cat and 0.25 <= f.duration <= POOL_PIECE]
        sizes: dict[str, int] = {}
        for f in mine:
            sizes[f.group] = sizes.get(f.group, 0) + 1
        split_of = assign_sized(sizes, rng)
        counts = split_counts(min(size.sfx_per_class, len(mine)))
        for split in SPLITS:
            pool = [f for f in mine if split_of[f.group] == split]
            for f in sample(pool, counts[split], rng):
                withhold(plan, f, split, "ufoai")
    usable = [f for f in files if f.label in cats and 0.25 <= f.duration <= POOL_PIECE]
    plan_file_folds(plan, "sfx-category", "ufoai", files, usable, size.folds, seed)


def espeak_variant_split(size: SizeSpec, seed: int) -> dict[str, str]:
    """The espeak variants in use and their split (shared by spoken-digit and the pool)."""
    rng = seeded_rng(seed, "espeak-variants")
    chosen = sample(list(ESPEAK_VARIANTS), size.digit_variants, rng)
    return assign_equal(chosen, rng)


def plan_spoken_digit(plan: RenderPlan, size: SizeSpec, seed: int) -> None:
    """One clip per voice and digit (random speed and pitch); test voices say each digit
    ``size.digit_test_takes`` times, the takes after the first from a stream of their
    own (#24), so the first takes are the very clips of before."""
    rng, extra = seeded_rng(seed, "spoken-digit"), seeded_rng(seed, "spoken-digit", "takes")
    variants = espeak_variant_split(size, seed)
    for lang in size.digit_langs:
        for var in sorted(variants):
            voice, split = f"{lang}+{var}", variants[var]
            for d in range(10):
                plan.add(_digit_job(voice, d, split, rng))
            takes = size.digit_test_takes if split == "test" else 1
            for d in range(10):
                _draw(plan, takes - 1, 0, functools.partial(_digit_job, voice, d, split), extra)
            if split != "train":
                plan.blocked.add(f"espeak:{voice}")


def _digit_job(voice: str, d: int, split: str, rng: np.random.Generator):
    spec = {
        "text": str(d),
        "voice": voice,
        "speed": int(rng.integers(130, 211)),
        "pitch": int(rng.integers(25, 76)),
    }
    row = {"label": str(d), "split": split, "group": voice, "origin": f"espeak:{voice}"}
    stem = f"{voice}-d{d}-s{spec['speed']}-p{spec['pitch']}"
    return make_job("tasks/spoken-digit", str(d), stem, "espeak", spec, row)


def program_split(seed: int) -> dict[int, str]:
    """GM program → split: per family 6 train / 1 valid / 1 test programs (seeded)."""
    rng = seeded_rng(seed, "programs")
    out: dict[int, str] = {}
    for fam in range(16):
        progs = [f"{p:03d}" for p in range(8 * fam, 8 * fam + 8)]
        out.update({int(p): s for p, s in assign_equal(progs, rng).items()})
    return out


def audible_key(
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
    return make_job(f"tasks/{task}", label, stem, "notes", spec, row)


def _draw(plan: RenderPlan, want: int, have: int, draw, rng) -> int:
    """Add jobs from ``draw(rng)`` (None: nothing this time) until ``want`` are planned,
    with up to 4x redraws (inaudible keys, duplicate clips); returns the count reached."""
    for _ in range(4 * max(0, want - have)):
        if have >= want:
            break
        job = draw(rng)
        if job is not None:
            have += plan.add(job)
    return have


def _plan_notes(plan, task: str, label: str, draw_for, counts: dict, n_test: int, rngs) -> None:
    """Per split, the 70/15/15 quota from the task's stream; then the test split is
    topped up to ``n_test`` from a stream of its own, so the clips drawn before the
    top-up (#24) are the very same ones."""
    rng, extra = rngs
    for split in SPLITS:
        added = _draw(plan, counts[split], 0, draw_for(split), rng)
        if split == "test":
            added = _draw(plan, n_test, added, draw_for(split), extra)
        want = n_test if split == "test" else counts[split]
        if added < want:
            plan.problems.append(f"{task}: only {added} {split} clips for {label}")


def plan_instrument_family(plan: RenderPlan, synth: SoundfontRenderer, size: SizeSpec, seed: int):
    rngs = seeded_rng(seed, "instrument-family"), seeded_rng(seed, "instrument-family", "test")
    split_of = program_split(seed)
    counts = split_counts(size.family_per_class)
    n_test = max(counts["test"], size.family_test_per_class)
    for fam, name in enumerate(GM_FAMILIES):

        def draw_for(split, fam=fam, name=name):
            progs = [p for p in range(8 * fam, 8 * fam + 8) if split_of[p] == split]

            def draw(rng):
                prog = int(rng.choice(progs))
                key = audible_key(synth, prog, 40, 84, rng)
                if key is None:
                    return None
                return _note_job("instrument-family", name, prog, key, rng, (0.4, 2.0), 0.5, split)

            return draw

        _plan_notes(plan, "instrument-family", name, draw_for, counts, n_test, rngs)
    _block_programs(plan, split_of)


def plan_pitch(plan: RenderPlan, synth: SoundfontRenderer, size: SizeSpec, seed: int) -> None:
    rngs = seeded_rng(seed, "pitch"), seeded_rng(seed, "pitch", "test")
    split_of = program_split(seed)
    counts = split_counts(size.pitch_per_class)
    n_test = max(counts["test"], size.pitch_test_per_class)
    for b in range(PITCH_BANDS):
        lo = PITCH_LOW + b * PITCH_BAND

        def draw_for(split, lo=lo):
            progs = [p for p in range(112) if split_of[p] == split]

            def draw(rng):
                key = int(rng.integers(lo, lo + PITCH_BAND))
                audible = (int(p) for p in rng.permutation(progs) if synth.audible(int(p), key))
                prog = next(audible, None)
                if prog is None:
                    return None
                return _note_job("pitch", pitch_label(key), prog, key, rng, (0.5, 1.5), 0.3, split)

            return draw

        _plan_notes(plan, "pitch", pitch_label(lo), draw_for, counts, n_test, rngs)
    _block_programs(plan, split_of)


def _block_programs(plan: RenderPlan, split_of: dict[int, str]) -> None:
    plan.blocked.update(f"soundfont:program-{p:03d}" for p, s in split_of.items() if s != "train")
