"""The downstream suite: probe every task, aggregate into suite and domain scores.

Per task and protocol the result is ``{"metric", "score", "n_test", "chance", "settings",
...}``. Splits: ``train/valid/test`` tasks use them as given; a task without a valid
split, and every fold of a K-fold task, takes a deterministic validation hold-out from
its train rows (``VALID_FRACTION`` per class, seeded, at least one clip of a class with
two or more). K-fold tasks: each fold in turn is the test set, the others train; the
task score is the mean over folds and ``n_test`` counts every clip once.

Features (``features``): ``standardised`` (the default) z-scores every embedding
dimension with the mean and (population) standard deviation of that fold's train clips
before either probe (a dimension constant on train, up to float32 rounding, becomes
0: ``standardise_on``), so every encoder
is probed on the same footing whatever its offsets and scales (raw log-mel statistics
share a ~-47 dB offset that dominates cosine kNN; the linear probe's LayerNorm
normalises each clip across dimensions, not each dimension across clips). Chosen on
the validation splits of the learning-regime ablation, where it scored at or
above ``raw`` for every encoder (README, "Probes"). ``raw`` probes the embeddings as
they are.

Aggregates (primary protocol = linear when run, else the first one): ``suite`` = mean
of task scores; ``suite_weighted`` = mean weighted by the suite file's weights when the
tasks come from one (``weights``, named ``suite_name``; :mod:`audioscale.data.suitefile`),
else by ``n_test``; ``domains`` = mean per
domain (speech, music, environment) of the tasks present; each also per protocol.

Per-clip outcomes (``SuiteResult.outcomes[task][protocol]``, an
``uncertainty.ClipOutcomes``): every test clip's outcome (correct or not for accuracy,
class scores and labels for mAP) with its fold, keyed by the clip's path relative to the
task folder (``clip_key``), so that two encoders are paired by clip; a K-fold task has
every clip once, in the fold where it was tested. ``suite_uncertainty`` gives the suite
score's bootstrap SE from them (``audioscale.uncertainty``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioscale.probe import knn, linear
from audioscale.probe.metrics import chance
from audioscale.uncertainty import ClipOutcomes, suite_se
from audioscale.utils import nan_to_none

PROTOCOLS = ("linear", "knn")
FEATURES = ("standardised", "raw")
VALID_FRACTION = 0.1
SEED = 0


@dataclass
class SuiteResult:
    model: str
    tasks: dict[str, dict[str, dict]] = field(default_factory=dict)
    domains_of: dict[str, str] = field(default_factory=dict)  # task -> domain
    protocols: tuple[str, ...] = PROTOCOLS
    encoder: dict = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> path -> reason
    wall_s: float = 0.0
    suite_name: str = ""  # the suite file's name, "" for a plain list of task folders
    weights: dict[str, float] = field(default_factory=dict)  # task -> suite-file weight
    outcomes: dict[str, dict[str, ClipOutcomes]] = field(default_factory=dict)  # task -> p -> ..

    @property
    def primary(self) -> str:
        return "linear" if "linear" in self.protocols else self.protocols[0]

    def _scores(self, protocol: str) -> list[tuple[str, float, int]]:
        return [
            (t, r[protocol]["score"], r[protocol]["n_test"])
            for t, r in self.tasks.items()
            if protocol in r and np.isfinite(r[protocol]["score"])
        ]

    def suite_for(self, protocol: str) -> float:
        s = self._scores(protocol)
        return float(np.mean([x for _, x, _ in s])) if s else float("nan")

    def weight_of(self, task: str, n_test: int) -> float:
        """The weight of ``task`` in ``suite_weighted``: the suite file's, else ``n_test``."""
        return self.weights.get(task, 1.0) if self.weights else float(n_test)

    def weighted_for(self, protocol: str) -> float:
        s = [(x, self.weight_of(t, n)) for t, x, n in self._scores(protocol)]
        n = sum(w for _, w in s)
        return float(sum(x * w for x, w in s) / n) if n else float("nan")

    def weights_used(self) -> dict[str, float]:
        """Task → the weight ``suite_weighted`` gives it (primary protocol)."""
        return {t: self.weight_of(t, n) for t, _, n in self._scores(self.primary)}

    def weights_label(self) -> str:
        """``"<suite>: task=w, ..."`` (or ``"n_test: ..."``): what names a stored score."""
        what = self.suite_name if self.weights else "n_test"
        return f"{what}: " + ", ".join(f"{t}={w:g}" for t, w in self.weights_used().items())

    def domains_for(self, protocol: str) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for t, x, _ in self._scores(protocol):
            out.setdefault(self.domains_of[t], []).append(x)
        return {d: float(np.mean(v)) for d, v in sorted(out.items())}

    def suite_uncertainty(self, protocol: str | None = None) -> dict:
        """The suite score of ``protocol`` (primary by default) with its bootstrap SE and
        interval over test clips, and each task's (``uncertainty.suite_se``)."""
        p = protocol or self.primary
        return suite_se({t: o[p] for t, o in self.outcomes.items() if p in o})

    @property
    def suite(self) -> float:
        return self.suite_for(self.primary)

    @property
    def suite_weighted(self) -> float:
        return self.weighted_for(self.primary)

    @property
    def domains(self) -> dict[str, float]:
        return self.domains_for(self.primary)

    def to_json(self) -> dict:
        """The object ``audioscale probe --json`` prints."""
        settings = {}
        for r in self.tasks.values():
            for p, v in r.items():
                settings.setdefault(p, v["settings"])
        return nan_to_none(
            {
                "model": self.model,
                "encoder": self.encoder,
                "primary_protocol": self.primary,
                "tasks": self.tasks,
                "domain_of_task": self.domains_of,
                "suite": self.suite,
                "suite_by_protocol": {p: self.suite_for(p) for p in self.protocols},
                "suite_weighted": self.suite_weighted,
                "suite_name": self.suite_name,
                "suite_weighting": "suite" if self.weights else "n_test",
                "suite_weights": self.weights_used(),
                "suite_weighted_by_protocol": {p: self.weighted_for(p) for p in self.protocols},
                "domains": self.domains,
                "domains_by_protocol": {p: self.domains_for(p) for p in self.protocols},
                "protocol_settings": settings,
                "skipped": self.skipped,
                "wall_s": self.wall_s,
            }
        )

    def flat(self) -> dict[str, float]:
        """Flat columns for the results table: suite, suite_<protocol>, suite_weighted,
        domain_<d>, task.<name>.<protocol>."""
        out = {"suite": self.suite, "suite_weighted": self.suite_weighted}
        out.update({f"suite_{p}": self.suite_for(p) for p in self.protocols})
        out.update({f"domain_{d}": v for d, v in self.domains.items()})
        for t, r in self.tasks.items():
            out.update({f"task.{t}.{p}": v["score"] for p, v in r.items()})
        return out


# --------------------------------------------------------------------------- splits


def encode_labels(task, rows: list[dict]) -> np.ndarray:
    """Class indices (N,) or multi-hot (N, C) over ``task.labels``."""
    index = {c: i for i, c in enumerate(task.labels)}
    if task.multilabel:
        y = np.zeros((len(rows), len(task.labels)), dtype=np.float32)
        for n, r in enumerate(rows):
            y[n, [index[c] for c in r["labels"]]] = 1.0
        return y
    return np.array([index[r["label"]] for r in rows], dtype=np.int64)


def holdout(y: np.ndarray, fraction: float = VALID_FRACTION, seed: int = SEED) -> np.ndarray:
    """Boolean mask of a deterministic validation hold-out of train positions: stratified
    per class for single-label ``y``, a seeded random fraction for multi-hot ``y``. With
    fewer than 10 clips, nothing is held out (the caller then validates on train)."""
    n = len(y)
    mask = np.zeros(n, dtype=bool)
    if n < 10:
        return mask
    rng = np.random.default_rng(seed)
    if y.ndim == 2:
        mask[rng.permutation(n)[: max(1, round(fraction * n))]] = True
        return mask
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) >= 2:
            take = max(1, round(fraction * len(idx)))
            mask[rng.permutation(idx)[:take]] = True
    return mask


def folds_of(task, ok_rows: list[dict]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, train idx, valid idx, test idx) over ``ok_rows``; one entry unless K-fold."""
    split = np.array([r["split"] for r in ok_rows])
    y = encode_labels(task, ok_rows)
    if task.folds:
        names = task.folds
        out = []
        for f in names:
            test = np.flatnonzero(split == f)
            train = np.flatnonzero(split != f)
            hold = holdout(y[train])
            out.append((f, train[~hold], train[hold], test))
        return out
    train = np.flatnonzero(split == "train")
    valid = np.flatnonzero(split == "valid")
    if len(valid) == 0:
        hold = holdout(y[train])
        train, valid = train[~hold], train[hold]
    return [("test", train, valid, np.flatnonzero(split == "test"))]


# --------------------------------------------------------------------------- probing


REL_STD_FLOOR = 1e-5  # ~100x float32's epsilon (6e-8): below it a dimension is constant


def standardise_on(emb: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``emb`` z-scored per dimension with the mean and population std of ``emb[ref]``
    (float64 statistics). A dimension whose std is at most ``REL_STD_FLOOR`` times its
    root mean square on ``ref`` is constant up to float32 rounding (mean pooling of equal
    frames over clips of different lengths rounds differently) and becomes 0: its
    rounding noise, which can follow the clip length, carries no information, and cosine
    kNN would blow it up to unit length."""
    x = emb[ref].astype(np.float64)
    mu, sd = x.mean(0), x.std(0)
    varies = sd > REL_STD_FLOOR * np.sqrt(mu**2 + sd**2)
    z = np.where(varies, (emb - mu) / np.where(varies, sd, 1.0), 0.0)
    return z.astype(emb.dtype, copy=False)


def probe_task(
    task,
    emb: np.ndarray,
    ok_rows: list[dict],
    protocols: Sequence[str],
    linear_kw: dict | None = None,
    knn_kw: dict | None = None,
    features: str = "standardised",
) -> dict[str, dict]:
    """Probe one task from its clip embeddings (aligned with ``ok_rows``); ``features``
    as the module docstring says."""
    if features not in FEATURES:
        from audioscale.errors import ConfigError

        raise ConfigError("features", f"{features!r} is not one of {FEATURES}")
    y = encode_labels(task, ok_rows)
    raw = emb
    n_classes = len(task.labels)
    per: dict[str, list[dict]] = {p: [] for p in protocols}
    chances = []
    n_test = 0
    tested: list[tuple[int, np.ndarray]] = []  # (fold number in the task, test positions)
    for fold, (_, tr, va, te) in enumerate(folds_of(task, ok_rows)):
        if len(tr) == 0 or len(te) == 0:
            continue
        va = va if len(va) else tr
        emb = standardise_on(raw, tr) if features == "standardised" else raw
        n_test += len(te)
        tested.append((fold, te))
        chances.append(chance(task.metric, y[tr], y[te]))
        common = {"n_classes": n_classes, "metric": task.metric, "multilabel": task.multilabel}
        if "linear" in per:
            r = linear.linear_probe(
                emb[tr], y[tr], emb[va], y[va], emb[te], y[te], **common, **(linear_kw or {})
            )
            per["linear"].append(r)
        if "knn" in per:
            per["knn"].append(
                knn.knn_probe(emb[tr], y[tr], emb[te], y[te], **common, **(knn_kw or {}))
            )
    out = {}
    for p, rs in per.items():
        if not rs:
            continue
        res = {
            "metric": task.metric,
            "score": float(np.mean([r["score"] for r in rs])),
            "n_test": n_test,
            "chance": float(np.mean(chances)),
            "n_folds": len(rs),
            "settings": rs[0]["settings"] | {"features": features},
        }
        if len(rs) > 1:
            res["fold_scores"] = [r["score"] for r in rs]
        if p == "linear":
            res["valid_score"] = float(np.mean([r["valid_score"] for r in rs]))
            res["best_epoch"] = [r["best_epoch"] for r in rs]
        res["outcomes"] = clip_outcomes(task, ok_rows, y, tested, rs, res.get("valid_score"))
        out[p] = res
    return out


def clip_key(task, row: dict) -> str:
    """A clip's key in the per-clip outcomes: its path relative to the task folder (as
    written when it lies inside it), so that encoders are paired by clip."""
    path = str(row["path"])
    root = getattr(task, "root", None)
    prefix = str(Path(root).resolve()).rstrip("/") + "/" if root is not None else ""
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def clip_outcomes(task, ok_rows, y, tested, results, valid_score) -> ClipOutcomes:
    """One protocol's per-clip test outcomes over every fold (module docstring)."""
    idx = np.concatenate([te for _, te in tested])
    folds = np.concatenate([np.full(len(te), f) for f, te in tested])
    pred = np.concatenate([np.asarray(r["test_scores"], np.float64) for r in results])
    keys = [clip_key(task, ok_rows[i]) for i in idx]
    if task.metric == "accuracy":
        correct = (pred.argmax(1) == y[idx]).astype(np.float64)
        return ClipOutcomes("accuracy", keys, folds, correct=correct, valid_score=valid_score)
    return ClipOutcomes("mAP", keys, folds, labels=y[idx], scores=pred, valid_score=valid_score)


def _check_protocols(protocols: Sequence[str]) -> tuple[str, ...]:
    from audioscale.errors import ConfigError

    protocols = tuple(protocols)
    for p in protocols:
        if p not in PROTOCOLS:
            raise ConfigError("protocol", f"{p!r} is not one of {PROTOCOLS}")
    if not protocols:
        raise ConfigError("protocol", "no protocol given")
    return protocols


def evaluate_embeddings(
    model: str,
    tasks: Sequence,
    embeddings: Sequence[np.ndarray],
    oks: Sequence[np.ndarray] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    linear_kw: dict | None = None,
    knn_kw: dict | None = None,
    features: str = "standardised",
) -> SuiteResult:
    """Probe precomputed clip embeddings. ``embeddings[i]`` holds the good clips of
    ``tasks[i].rows`` in row order; ``oks[i]`` (N,) marks which rows those are (all when
    None); ``features``: ``standardised`` or ``raw`` (module docstring)."""
    t0 = time.perf_counter()
    protocols = _check_protocols(protocols)
    res = SuiteResult(model=model, protocols=protocols)
    for i, (task, emb) in enumerate(zip(tasks, embeddings, strict=True)):
        ok = np.ones(len(task.rows), bool) if oks is None else np.asarray(oks[i], bool)
        ok_rows = [r for r, keep in zip(task.rows, ok, strict=True) if keep]
        if len(ok_rows) != len(emb):
            raise ValueError(f"task {task.name}: {len(emb)} embeddings for {len(ok_rows)} rows")
        res.tasks[task.name] = probe_task(
            task, emb, ok_rows, protocols, linear_kw, knn_kw, features
        )
        res.outcomes[task.name] = {p: r.pop("outcomes") for p, r in res.tasks[task.name].items()}
        res.domains_of[task.name] = task.domain
    res.wall_s = time.perf_counter() - t0
    return res


def expand_task_dirs(task_dirs: Sequence[str | Path]) -> list[Path]:
    """Task folders; a folder without task.yaml whose subfolders are tasks expands to them."""
    out = []
    for d in task_dirs:
        d = Path(d)
        if not (d / "task.yaml").is_file() and d.is_dir():
            subs = sorted(p for p in d.iterdir() if (p / "task.yaml").is_file())
            if subs:
                out.extend(subs)
                continue
        out.append(d)
    return out


def evaluate(
    encoder,
    task_dirs: Sequence[str | Path],
    protocols: Sequence[str] = PROTOCOLS,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    layer: int = -1,
    batch_size: int = 16,
    linear_kw: dict | None = None,
    knn_kw: dict | None = None,
    features: str = "standardised",
    suite: str | Path | None = None,
) -> SuiteResult:
    """Extract (or read cached) clip embeddings for every task, then probe them.

    ``suite``: a suite file (:mod:`audioscale.data.suitefile`) whose tasks are added to
    ``task_dirs`` and whose weights make ``suite_weighted``."""
    from audioscale.data.manifest import load_task
    from audioscale.data.suitefile import load_suite
    from audioscale.embed.extract import extract

    t0 = time.perf_counter()
    protocols = _check_protocols(protocols)
    named = load_suite(suite) if suite is not None else None
    dirs = expand_task_dirs(task_dirs) + [Path(d) for d in (named.task_dirs if named else [])]
    unique: dict[Path, Path] = {}  # a task named twice (--task tasks/x, suite /abs/tasks/x)
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    tasks = [load_task(d) for d in unique.values()]
    embs, oks, skipped = [], [], {}
    for task in tasks:
        ex = extract(
            encoder,
            task.rows,
            layer=layer,
            level="clip",
            cache_dir=cache_dir,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
        embs.append(ex.emb)
        oks.append(ex.ok)
        if ex.errors:
            skipped[task.name] = {str(task.rows[i]["path"]): why for i, why in ex.errors.items()}
    res = evaluate_embeddings(
        encoder.name, tasks, embs, oks, protocols, linear_kw, knn_kw, features
    )
    if named is not None:
        res.suite_name, res.weights = named.name, named.weights_by_name()
    res.encoder = encoder.describe()
    res.encoder["layer"] = layer
    res.skipped = skipped
    res.wall_s = time.perf_counter() - t0
    return res


def dumps(result: SuiteResult) -> str:
    return json.dumps(result.to_json(), sort_keys=False)
