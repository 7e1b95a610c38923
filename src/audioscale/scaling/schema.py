"""The typed form of ``fits.json``: dataclasses read by attribute.

``fits.json`` stays the serialised form (``fits.results.fit_results`` returns it, version
``FITS_VERSION``); ``Fits.from_dict(d)`` types it and ``Fits.to_dict()`` gives back the
same dict, key for key and value for value. A section or key that a study did not write
is None here (``Optional``), never an empty dict. Keys a class does not name are kept
in its ``extra`` and written back as they were, so the typed layer can name only what
its readers use (the verdict, the headline, the report, the learning sentences, the
study) while the file keeps every key. Sections read only by the report's tables and
figures in detail (``laws``, ``model_selection``, the per-target metric table, ...) stay
plain dicts inside ``Fits``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Self


@dataclass(kw_only=True)
class Node:
    """A JSON object with named keys. ``extra``: keys not named by the class; ``absent``:
    named keys the source object did not hold (``to_dict`` leaves them out)."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_dict(cls, d: dict | None) -> Self | None:
        if d is None:
            return None
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.name not in ("extra", "absent")]
        kw = {n: _load(hints[n], d[n]) for n in names if n in d}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**kw, extra=extra, absent=frozenset(n for n in names if n not in d))

    def to_dict(self) -> dict:
        out = {
            f.name: _dump(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("extra", "absent") and f.name not in self.absent
        }
        out.update(self.extra)
        return out


def _node_type(hint: Any) -> type[Node] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Node) else None


def _load(hint: Any, value: Any) -> Any:
    """``value`` as ``hint`` says: Node classes (also inside ``X | None``, ``list[X]`` and
    ``dict[str, X]``) from dicts; anything else as it is."""
    if value is None:
        return None
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _load(inner[0], value) if len(inner) == 1 else value
    if node := _node_type(hint):
        return node.from_dict(value) if isinstance(value, dict) else value
    origin = typing.get_origin(hint)
    if origin is list and args and _node_type(args[0]) and isinstance(value, list):
        return [_load(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and _node_type(args[1]) and isinstance(value, dict):
        return {k: _load(args[1], v) for k, v in value.items()}
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Node):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- estimates


@dataclass(kw_only=True)
class Estimate(Node):
    """A number with its interval: ``{value, ci, level, n_resamples, ..., n}``."""

    value: float | None = None
    ci: list[float] | None = None
    n: int | None = None
    note: str | None = None


@dataclass(kw_only=True)
class Validation(Node):
    """Leave-one-out and fit-small-predict-large errors of one law."""

    loo: dict | None = None
    fit_small_predict_large: dict | None = None


@dataclass(kw_only=True)
class Residuals(Node):
    flagged: list[dict] | None = None
    z_threshold: float | None = None


# --------------------------------------------------------------------------- sections


@dataclass(kw_only=True)
class Data(Node):
    n_rows: int | None = None
    n_trained: int | None = None
    n_baselines: int | None = None
    N: str | None = None
    D: str | None = None
    C: str | None = None
    run_ids: list[str] | None = None


@dataclass(kw_only=True)
class BaselineRow(Node):
    run_id: str | None = None
    kind: str | None = None
    rankme: float | None = None
    suite: float | None = None


@dataclass(kw_only=True)
class FitForm(Node):
    """One fitted law (``powerlaw.Fit.to_dict``) with its intervals and band."""

    form: str | None = None
    params: dict[str, float | None] | None = None
    n: int | None = None
    converged: bool | None = None
    message: str | None = None
    r2_log: float | None = None
    aic: float | None = None
    aicc: float | None = None
    params_ci: dict[str, Estimate] | None = None
    band: dict | None = None


@dataclass(kw_only=True)
class Choice(Node):
    """How the chosen form was chosen (``powerlaw.choose``)."""

    criterion: str | None = None
    reason: str | None = None


@dataclass(kw_only=True)
class ScoreVsRankme(Node):
    n: int | None = None
    run_ids: list[str] | None = None
    correlations: dict[str, Estimate] | None = None
    forms: dict[str, FitForm] | None = None
    chosen_form: str | None = None
    choice: Choice | None = None
    validation: dict[str, Validation] | None = None
    residuals: Residuals | None = None
    rankme_values: list[float | None] | None = None
    suite_values: list[float | None] | None = None

    def chosen_validation(self) -> Validation | None:
        """The validation of the chosen form, if it has one."""
        if self.validation is None or self.chosen_form is None:
            return None
        return self.validation.get(self.chosen_form)

    def correlation(self, name: str) -> Estimate:
        """The correlation ``name`` (pearson, spearman, kendall); an empty one if absent."""
        found = self.correlations.get(name) if self.correlations else None
        return found if found is not None else Estimate()


@dataclass(kw_only=True)
class Confounds(Node):
    covariates: list[str] | None = None
    partial_spearman: Estimate | None = None
    regimes: dict[str, dict] | None = None
    flagged: list[dict] | None = None


@dataclass(kw_only=True)
class Axes(Node):
    leave_one_axis_out: dict | None = None
    residuals: dict | None = None


@dataclass(kw_only=True)
class RunScore(Node):
    run_id: str | None = None
    suite: float | None = None


@dataclass(kw_only=True)
class RandomInitMean(RunScore):
    """An architecture's random-init encoders: the mean suite over its init seeds."""

    n_seeds: int | None = None
    suite_min: float | None = None
    suite_max: float | None = None
    run_ids: list[str] | None = None

    @property
    def seeds(self) -> int:
        """``n_seeds``, 1 when not recorded."""
        return 1 if self.n_seeds is None else self.n_seeds


@dataclass(kw_only=True)
class LearningBaselines(Node):
    """``learning.baselines`` (``scaling.learning.versus_baselines``)."""

    best_trained: RunScore | None = None
    best_random_init: RandomInitMean | None = None
    vs_own_random_init: dict | None = None
    logmel: RunScore | None = None
    external: list[dict] | None = None
    margin_over_random_init: float | None = None
    margin_over_logmel: float | None = None


@dataclass(kw_only=True)
class Learning(Node):
    baselines: LearningBaselines | None = None
    compute: dict | None = None


@dataclass(kw_only=True)
class JointLaw(Node):
    """One target of ``joint`` (held-out loss or suite error): the L(N, D) law and, when
    it could be made, the compute allocation (N*, D*, L at the budget)."""

    target: str | None = None
    n: int | None = None
    N_column: str | None = None
    joint: FitForm | None = None
    N: Estimate | None = None
    D: Estimate | None = None
    L: Estimate | None = None
    budget_flops: float | None = None
    on_grid_edge: bool | None = None
    extrapolation: bool | None = None
    rankme_at_allocation: Estimate | None = None
    note: str | None = None


@dataclass(kw_only=True)
class EarlyTraining(Node):
    points: list[Estimate] | None = None


@dataclass(kw_only=True)
class MetricComparison(Node):
    direction: dict[str, int] | None = None
    targets: dict[str, dict] | None = None


@dataclass(kw_only=True)
class Prediction(Node):
    """``verification.predicted``: the suite (with its prediction interval) and RankMe."""

    suite: float | None = None
    interval: list[float] | None = None
    rankme: Estimate | None = None


@dataclass(kw_only=True)
class Measured(Node):
    suite: float | None = None
    rankme: float | None = None


@dataclass(kw_only=True)
class Verification(Node):
    """``verification`` (``scaling.verify.verification_for``)."""

    note: str | None = None
    budget_flops: float | None = None
    allocated_N: float | None = None
    allocated_D: float | None = None
    run: dict | None = None
    run_id: str | None = None
    predicted: Prediction | None = None
    measured: Measured | None = None
    outcome: str | None = None
    miss_by: float | None = None
    error: float | None = None


@dataclass(kw_only=True)
class Headline(Node):
    n_runs: int | None = None
    spearman_rankme_suite: Estimate | None = None
    exponent_b: Estimate | None = None
    chosen_form: str | None = None
    fit_small_predict_large_mae: float | None = None
    best_trained_suite: float | None = None
    margin_over_random_init: float | None = None
    margin_over_logmel: float | None = None
    verification: str | None = None
    verification_predicted: Estimate | None = None
    verification_measured: float | None = None
    claims: list[str] | None = None  # scaling.claims: one line per claim, with its interval
    verdict: str | None = None


@dataclass(kw_only=True)
class Fits(Node):
    """The whole of fits.json."""

    version: int | None = None
    settings: dict | None = None
    data: Data | None = None
    baselines: list[BaselineRow] | None = None
    score_vs_rankme: ScoreVsRankme | None = None
    laws: dict[str, dict] | None = None
    joint: dict[str, JointLaw] | None = None  # or {"note": why} when no N or D column
    metric_comparison: MetricComparison | None = None
    early_training: EarlyTraining | None = None
    model_selection: dict | None = None
    confounds: Confounds | None = None
    axes: Axes | None = None
    learning: Learning | None = None
    verification: Verification | None = None
    paired: dict | None = None  # scaling.paired: suite SEs and paired comparisons
    verdict: str | None = None
    headline: Headline | None = None


def typed(fits: dict | Fits) -> Fits:
    """``fits`` as ``Fits`` (a dict is typed; a ``Fits`` is returned as it is)."""
    if isinstance(fits, Fits):
        return fits
    out = Fits.from_dict(fits)
    assert out is not None
    return out
