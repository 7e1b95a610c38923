"""Probes of a run's final checkpoint or of a baseline: each task's clip embeddings
(extracted once, through the study's cache; they serve the RankMe pool too) and the
probe rows and suite columns they give (``probe.suite.evaluate_embeddings``). Each probe
row carries its per-clip test outcomes (``outcomes``, kept by the store in its own
table for the paired comparisons of the fits), and the suite columns the suite score's
bootstrap standard error over test clips (``suite_se``, ``audioscale.uncertainty``)."""

from __future__ import annotations

from typing import Any

from audioscale.evaluate.context import EvalContext, extract_rows
from audioscale.evaluate.records import ProbeRow, SuiteSummary
from audioscale.utils import finite_or_none


def task_embeddings(encoder: Any, ctx: EvalContext) -> dict[str, tuple[Any, Any]]:
    """Per task: (Task, Extraction of all its rows at clip level), cached on disk."""
    from audioscale.data.manifest import load_task

    out = {}
    for d in ctx.task_dirs:
        task = load_task(d)
        out[task.name] = (task, extract_rows(encoder, task.rows, ctx, "clip"))
    return out


def probe_rows(name: str, tasks: dict[str, tuple[Any, Any]], ctx: EvalContext):
    """Probe every task from its embeddings; returns (probe rows, suite columns)."""
    from audioscale.probe.suite import evaluate_embeddings

    pairs = list(tasks.values())
    res = evaluate_embeddings(
        name, [t for t, _ in pairs], [ex.emb for _, ex in pairs], [ex.ok for _, ex in pairs],
        protocols=ctx.protocols, features=ctx.probe_features,
    )  # fmt: skip
    res.suite_name, res.weights = ctx.suite_name, dict(ctx.suite_weights)
    rows = []
    for task_name, by_proto in res.tasks.items():
        for proto, r in by_proto.items():
            rows.append(ProbeRow(
                task=task_name, protocol=proto, metric=r.get("metric"),
                score=finite_or_none(r.get("score")), n_test=r.get("n_test"),
                domain=res.domains_of.get(task_name), settings=r.get("settings", {}),
                outcomes=res.outcomes[task_name][proto].to_dict(),
            ).to_dict())  # fmt: skip
    flat = {k: finite_or_none(v) for k, v in res.flat().items() if not k.startswith("task.")}
    flat.update(suite_name=res.suite_name or None, suite_weights=res.weights_label(),
                suite_se=res.suite_uncertainty()["se"])  # fmt: skip
    return rows, SuiteSummary.build(**flat)
