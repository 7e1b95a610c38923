"""What a run's result is: one typed record per stage output, each field declared once.

A run's ``result.json`` (written by ``sweep.run`` from what ``evaluate`` measures) holds
``info`` (one flat dict), ``spectral`` rows, ``probes`` rows and ``train_metrics`` rows;
the store (``sweep.store``) records them and derives the results table, which
``results.csv`` / ``results.parquet`` export, the fits read by name and the report
shows. Every one of those key sets is a record here:

- ``TrainingInfo``    a trained run's model card and done.json (random-init baselines
                      fill the architecture and zero-budget part)
- ``ReferenceLoss``   held-out loss at the reference mask ratio and clip length
- ``SliceInfo``       RankMe on crops of the run's own data and of its pool's heldout split
- ``GapInfo``         the equal-N train-slice vs eval-pool RankMe gap
- ``SuiteSummary``    probe suite means (per protocol, per domain)
- ``EvalContextInfo`` the RankMe options every value was measured under
- ``BaselineInfo``    what only a hand-crafted baseline states
- ``RunInfo``         all of the above plus ``wall_s``: every key a result's ``info`` may hold
- ``SpectralMetrics`` / ``SpectralRow``  one spectral measurement (store table ``spectral``)
- ``ProbeRow``        one probe score (store table ``probes``)
- ``TrainMetricsRow`` one metrics.jsonl line (store table ``train_metrics``)
- ``ResultRow``       one row of the results table: ``RunIdentity`` + ``RunInfo`` +
                      ``SpectralMetrics`` + ``rankme_N/K`` (+ per-task ``task.<name>.<protocol>``)

Field metadata: ``doc`` (what the value is), ``report`` (position in the report's run
table, None = not shown), ``config`` (``section.key`` of the RunConfig the results table
falls back to when the run's info lacks the value) with ``keep`` (which kinds keep that
config value: ``all``; ``architecture`` = trained and random-init; ``trained``), and for
``TrainMetricsRow`` ``log_key`` (the name the trainer writes in metrics.jsonl).

Adding a field to a record adds it to the store's results, the CSV/Parquet header and,
with ``report=``, to the report's run table; a key that no record declares is refused
(``check_keys``, used by the store and by ``sweep.run``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TASK_PREFIX = "task."


def column(
    doc: str,
    *,
    report: int | None = None,
    config: str | None = None,
    keep: str = "all",
    log_key: str | None = None,
) -> Any:
    """A record field (default None) with its description and where it shows."""
    meta = {"doc": doc, "report": report, "config": config, "keep": keep, "log_key": log_key}
    return dataclasses.field(default=None, metadata=meta)


class Record:
    """Mixin of the record dataclasses: ``names()``, ``docs()``, ``to_dict()``."""

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)  # type: ignore[arg-type]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in cls.fields()]

    @classmethod
    def docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in cls.fields()}

    @classmethod
    def build(cls, **values: Any) -> dict[str, Any]:
        """The dict of exactly ``values``, after building the record from them (a key it
        does not declare raises TypeError): for the partial records of baselines."""
        cls(**values)
        return dict(values)

    def to_dict(self, drop_none: bool = False) -> dict[str, Any]:
        """The record as the plain dict that result.json and the store hold (a shallow
        copy; ``drop_none`` leaves unset fields out)."""
        out = {f.name: getattr(self, f.name) for f in self.fields()}  # type: ignore[arg-type]
        return {k: v for k, v in out.items() if v is not None} if drop_none else out


def check_keys(record: type[Record], keys: Any, what: str) -> None:
    """Raise KeyError naming every key of ``keys`` that ``record`` does not declare."""
    unknown = sorted(set(keys) - set(record.names()))
    if unknown:
        raise KeyError(
            f"{what}: {', '.join(unknown)} not declared in {record.__name__} "
            "(audioscale.evaluate.records)"
        )


# --------------------------------------------------------------------------- run info


@dataclass
class TrainingInfo(Record):
    """A trained run's info from its model card and done.json (``evaluate.info.trained_info``)."""

    family: str | None = column("model family (vit, conformer; logmel-stats for the "
                                "hand-crafted baseline)", config="model.family",
                                keep="architecture")  # fmt: skip
    preset: str | None = column("ladder preset name", report=4, config="model.preset",
                                keep="architecture")  # fmt: skip
    width: int | None = column("encoder width", report=5, config="model.width",
                               keep="architecture")  # fmt: skip
    depth: int | None = column("encoder depth (blocks)", report=6, config="model.depth",
                               keep="architecture")  # fmt: skip
    heads: int | None = column("attention heads", config="model.heads", keep="architecture")
    patch: str | None = column("patch geometry (time, square)", config="model.patch",
                               keep="architecture")  # fmt: skip
    mask_ratio: float | None = column("pretraining mask ratio", config="model.mask_ratio",
                                      keep="architecture")  # fmt: skip
    params: int | None = column("encoder parameters")
    params_nonembed: int | None = column("encoder parameters without embeddings (N of the "
                                         "laws)", report=7)  # fmt: skip
    params_total: int | None = column("parameters of the whole MAE (encoder + decoder)")
    flops_per_example: float | None = column("analytic training FLOPs per example")
    train_flops: float | None = column("training FLOPs spent (examples × FLOPs/example)",
                                       report=11)  # fmt: skip
    steps: int | None = column("optimiser updates", config="train.steps", keep="trained")
    batch_size: int | None = column("examples per update", config="train.batch_size",
                                    keep="trained")  # fmt: skip
    lr: float | None = column("peak learning rate", config="train.lr", keep="trained")
    clip_seconds: float | None = column("training clip length in seconds (cut to the patch "
                                        "width)", config="data.clip_seconds",
                                        keep="trained")  # fmt: skip
    examples_seen: int | None = column("training examples seen (D of the laws)", report=8)
    tokens_seen: int | None = column("patches seen (masked and visible)")
    hours_seen: float | None = column("hours of audio seen (examples × clip_seconds)",
                                      report=9)  # fmt: skip
    data_hours: float | None = column("hours of unique training audio (U)",
                                      config="data.hours", keep="trained")  # fmt: skip
    data_files: int | None = column("files of the run's training subset")
    epochs: float | None = column("passes over the unique training audio (repetition)",
                                  report=10)  # fmt: skip
    final_loss: float | None = column("training loss of the last log window")
    heldout_loss_own: float | None = column("held-out loss at the run's own mask ratio and "
                                            "clip length (done.json)")  # fmt: skip
    pool_overlap: bool | None = column("whether an eval-pool file is also a pretraining file",
                                       report=15)  # fmt: skip
    schedule: str | None = column("learning-rate schedule (cosine, wsd)",
                                  config="train.schedule", keep="trained")  # fmt: skip
    cooldown_fraction: float | None = column("wsd: the share of the run that decays")
    trunk_id: str | None = column("wsd in a sweep: the trunk it branched off (train.trunk)")
    branched_at: int | None = column("wsd in a sweep: the trunk step it started from (0: "
                                     "trained from scratch)")  # fmt: skip
    own_steps: int | None = column("updates the run trained itself (steps - branched_at)")


@dataclass
class ReferenceLoss(Record):
    """Held-out loss at the reference mask and clip
    (``evaluate.heldout.reference_heldout_loss``)."""

    heldout_loss: float | None = column("held-out masked-patch loss at the reference mask "
                                        "ratio and clip length (the column fits use)",
                                        report=12)  # fmt: skip
    heldout_mask_ratio: float | None = column("the reference mask ratio")
    heldout_clip_frames: int | None = column("the reference clip length in mel frames")
    heldout_clip_seconds: float | None = column("the reference clip length in seconds")
    heldout_clips: int | None = column("held-out clips scored")


@dataclass
class SliceInfo(Record):
    """RankMe of the final checkpoint on the two data slices (``evaluate.slices``)."""

    rankme_train: float | None = column("RankMe on crops of the run's own training audio")
    rankme_train_N: int | None = column("N of rankme_train (and of rankme_heldout)")
    rankme_heldout: float | None = column("RankMe on crops of the pool's heldout split")
    rankme_gap_heldout: float | None = column("rankme_train − rankme_heldout (one N)")


@dataclass
class GapInfo(Record):
    """The equal-N repetition signal (``evaluate.slices.gap_metrics``)."""

    rankme_gap: float | None = column("train-slice minus eval-pool RankMe at equal N",
                                      report=14)  # fmt: skip
    rankme_gap_N: int | None = column("the common N of both sides (frames at frame level)")
    rankme_gap_N_pool: int | None = column("N of the eval-pool side")
    rankme_gap_clips: int | None = column("clips on each side")
    rankme_gap_train: float | None = column("train-slice RankMe at that N")
    rankme_gap_pool: float | None = column("eval-pool RankMe at that N")


@dataclass
class SuiteSummary(Record):
    """Probe suite means (``probe.suite.SuiteResult.flat`` without the per-task columns)."""

    suite: float | None = column("mean probe score over tasks and protocols", report=17)
    suite_se: float | None = column("bootstrap standard error of suite over test clips "
                                    "(audioscale.uncertainty)")  # fmt: skip
    suite_linear: float | None = column("mean linear-probe score")
    suite_knn: float | None = column("mean kNN-probe score")
    suite_weighted: float | None = column("suite weighted by the suite file's weights, "
                                          "else by task test size")  # fmt: skip
    suite_name: str | None = column("the eval.suite file's name (none: eval.tasks only)")
    suite_weights: str | None = column("the weight of each task in suite_weighted")
    domain_speech: float | None = column("mean score of the speech tasks", report=18)
    domain_music: float | None = column("mean score of the music tasks", report=19)
    domain_environment: float | None = column("mean score of the environment tasks",
                                              report=20)  # fmt: skip


@dataclass
class EvalContextInfo(Record):
    """The RankMe options of the study (``evaluate.context.context_info``)."""

    rankme_pool: str | None = column("eval pool name (with a hash of its file list)")
    rankme_level: str | None = column("clip or frame embeddings")
    rankme_layer: int | None = column("encoder layer measured (-1 = last)")
    rankme_centred: bool | None = column("whether the embeddings were centred")


@dataclass
class BaselineInfo(Record):
    """What only a baseline states: the log-mel one's reference set, an external
    encoder's identity."""

    standardised_on: str | None = column("the crops its standardisation statistics come from")
    encoder_identity: str | None = column("an external encoder's weights identity "
                                          "(Encoder.identity)")  # fmt: skip


@dataclass
class RunInfo(BaselineInfo, EvalContextInfo, SuiteSummary, GapInfo, SliceInfo, ReferenceLoss,
              TrainingInfo):  # fmt: skip
    """Every key a result's ``info`` may hold (the store's ``run_info`` table)."""

    wall_s: float | None = column("seconds the run took (training and evaluation)")


# --------------------------------------------------------------------------- rows


@dataclass
class SpectralMetrics(Record):
    """The spectral metrics of one embedding matrix (``metrics.spectral``)."""

    rankme: float | None = column("RankMe (Garrido et al. 2023, eq. 1)", report=13)
    alpha_req: float | None = column("power-law exponent of the eigenspectrum", report=16)
    nesum: float | None = column("NESum: sum of eigenvalues over the largest")
    stable_rank: float | None = column("stable rank: ‖Z‖_F² / ‖Z‖₂²")
    participation_ratio: float | None = column("participation ratio of the eigenvalues")


@dataclass
class SpectralRow(SpectralMetrics):
    """One measurement: a checkpoint on a pool (``evaluate.spectral.spectral_row`` /
    ``streamed_row`` plus the checkpoint's fields)."""

    checkpoint: str | None = column("checkpoint name (final, step_…)")
    step: int | None = column("training step of the checkpoint")
    fraction: float | None = column("fraction of the run's steps")
    is_final: bool | None = column("whether this is the final checkpoint")
    pool: str | None = column("what was measured: the eval pool's name, train-slice, "
                              "heldout-slice")  # fmt: skip
    level: str | None = column("clip or frame")
    layer: int | None = column("encoder layer")
    centred: bool | None = column("whether the embeddings were centred")
    n: int | None = column("rows of the embedding matrix (frames at frame level)")
    k: int | None = column("embedding dimension")
    route: str | None = column("svd or gram")
    loss: float | None = column("training loss window at that checkpoint")


@dataclass
class ProbeRow(Record):
    """One probe score (``evaluate.probes.probe_rows``)."""

    task: str | None = column("task name")
    protocol: str | None = column("linear or knn")
    metric: str | None = column("accuracy or mAP")
    score: float | None = column("test score")
    n_test: int | None = column("test clips scored")
    domain: str | None = column("the task's domain")
    settings: dict | None = column("probe settings (JSON in the store)")
    outcomes: dict | None = column("per-clip test outcomes, uncertainty.ClipOutcomes.to_dict "
                                   "(store table outcomes, not a probes column)")  # fmt: skip


@dataclass
class TrainMetricsRow(Record):
    """One metrics.jsonl line (``train.trainer._MetricsLog.line``) as the store keeps it;
    other keys the trainer writes (tokens_per_s, wall_s) go to the ``extra`` JSON column."""

    step: int | None = column("optimiser step")
    loss: float | None = column("mean training loss since the previous line")
    lr: float | None = column("learning rate")
    examples: float | None = column("examples seen")
    tokens: float | None = column("patches seen")
    flops: float | None = column("training FLOPs spent")
    hours: float | None = column("hours of audio seen", log_key="hours_seen")
    epochs: float | None = column("passes over the unique training audio")
    ex_per_s: float | None = column("throughput in examples per second",
                                    log_key="examples_per_s")  # fmt: skip

    @classmethod
    def log_keys(cls) -> dict[str, str]:
        """metrics.jsonl key → store column, for the columns whose names differ."""
        return {f.metadata["log_key"]: f.name for f in cls.fields() if f.metadata["log_key"]}


@dataclass
class RunIdentity(Record):
    """Which run a results row is (the store's ``runs`` table)."""

    run_id: str | None = column("run id: the config's run hash (baselines: their kind)",
                                report=1)  # fmt: skip
    name: str | None = column("run name", report=3)
    kind: str | None = column("trained, verify, random-init, baseline or external", report=2)
    seed: int | None = column("training seed", config="train.seed")
    arch: str | None = column("architecture key (models.arch.arch_id): trained and "
                              "random-init rows of one architecture share it")  # fmt: skip


@dataclass
class ResultRow(SpectralMetrics, RunInfo, RunIdentity):
    """One row of the results table (``Store.results``; results.csv), one per done run;
    per-task scores follow as ``task.<name>.<protocol>`` columns."""

    rankme_N: int | None = column("N of rankme (the final checkpoint on the eval pool)")
    rankme_K: int | None = column("K of rankme")


def result_columns() -> list[str]:
    """The results table's fixed columns, in record order."""
    return ResultRow.names()


def report_columns() -> list[str]:
    """The report's run-table columns (fields with ``report``), in their order."""
    shown = [f for f in ResultRow.fields() if f.metadata["report"] is not None]
    return [f.name for f in sorted(shown, key=lambda f: f.metadata["report"])]


def config_columns(config: dict, kind: str, trained_kinds: tuple[str, ...]) -> dict[str, Any]:
    """Results columns taken from a run's RunConfig (``column(config=...)``). A baseline
    keeps none of the training columns, and only a random-init encoder keeps the
    architecture's, so that no baseline row shows the base config's budget as its own."""
    keeps = {"all": True, "architecture": kind in (*trained_kinds, "random-init"),
             "trained": kind in trained_kinds}  # fmt: skip
    out: dict[str, Any] = {}
    for f in ResultRow.fields():
        path = f.metadata["config"]
        if path is None:
            continue
        section, key = path.split(".")
        out[f.name] = (config.get(section) or {}).get(key) if keeps[f.metadata["keep"]] else None
    return out
