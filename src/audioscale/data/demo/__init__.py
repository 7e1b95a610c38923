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
and disjoint by group. Task clips are cropped to their first 4 s. Since #24 (a suite
score's test-sampling SE <= 0.01): the real-source tasks (lang-id, speaker-id,
sfx-category) are 5-fold (``fold1..fold5``), every clip tested once: that draw still
decides which files the pool never sees (so the pool is what it was), and the task holds
every usable file of the groups none of whose files reach the pool, folds by group and
stratified by label (full: 195 / 268 / 244 clips). The synthetic tasks keep the split
and top up their test clips (full: spoken-digit 8 takes per test voice and digit, 960;
instrument-family 60 per family, 960; pitch 100 per band, 800); the clips of before are
unchanged, the new ones come from random streams of their own.

Pool rule (tested): the pool never holds a file used by any task split, nor any file
sharing a group with a task's valid/test split or any clip of a K-fold task (other languages' recordings of a test
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

The package, by concern: ``plan`` (constants, sizes, the plan records), ``sources`` (the
Debian packages' files), ``splits`` (seeded group splits), ``tasks`` (the six task
planners), ``pool`` (the pool planner), ``render`` (audio out, reuse by sha1),
``summary`` (what a build produced) and ``build`` (the entry points).
"""

from audioscale.data.demo.build import build_demo, ensure_demo, make_plan, validate_demo
from audioscale.data.demo.plan import (
    CLIP_SECONDS,
    DEMO_TASKS,
    SILENT_PEAK,
    SIZES,
    SR,
    TASK_DOMAINS,
    RenderJob,
    RenderPlan,
    SizeSpec,
)
from audioscale.data.demo.render import render, wav_bytes
from audioscale.data.demo.sources import (
    ASTERISK_VOICES,
    DemoSources,
    asterisk_dir,
    asterisk_files,
    check_sources,
    phrase_group,
    sfx_group,
    source_folders,
)
from audioscale.data.demo.splits import assign_equal, assign_folds, assign_sized, split_counts
from audioscale.data.demo.summary import DemoSummary, print_summary
from audioscale.data.demo.tasks import pitch_label

__all__ = [
    "ASTERISK_VOICES",
    "CLIP_SECONDS",
    "DEMO_TASKS",
    "SILENT_PEAK",
    "SIZES",
    "SR",
    "TASK_DOMAINS",
    "DemoSources",
    "DemoSummary",
    "RenderJob",
    "RenderPlan",
    "SizeSpec",
    "assign_equal",
    "assign_folds",
    "assign_sized",
    "asterisk_dir",
    "asterisk_files",
    "build_demo",
    "check_sources",
    "ensure_demo",
    "make_plan",
    "phrase_group",
    "pitch_label",
    "print_summary",
    "render",
    "sfx_group",
    "source_folders",
    "split_counts",
    "validate_demo",
    "wav_bytes",
]
