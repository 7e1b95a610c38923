"""A trained run's info record: what its model card and done.json say it is and saw,
whether its data overlaps the eval pool, and the options it was measured under."""

from __future__ import annotations

from audioscale.config import RunConfig
from audioscale.evaluate.context import EvalContext, context_info, pool_overlap
from audioscale.evaluate.records import TrainingInfo


def trained_info(
    cfg: RunConfig, done: dict, card: dict, rows: list[dict], ctx: EvalContext,
    branch: dict | None = None,
):  # fmt: skip
    """A trained run's ``records.TrainingInfo`` (from its model card and done.json;
    ``rows`` are the files it trained on; ``branch``: its ``branch.json`` when it
    branched off a WSD trunk) and the study's ``EvalContextInfo``."""
    model = card.get("model", {})
    wsd = cfg.train.schedule == "wsd"
    branched_at = (branch or {}).get("branched_at", 0) if wsd else None
    params = card.get("params", {})
    info = TrainingInfo(
        **{k: model.get(k) for k in ("family", "preset", "width", "depth", "heads", "patch",
                                     "mask_ratio")},
        params=params.get("encoder"),
        params_nonembed=params.get("encoder_nonembed"),
        params_total=params.get("total"),
        flops_per_example=card.get("flops_per_example"),
        train_flops=done.get("flops"),
        steps=done.get("steps"),
        batch_size=done.get("batch_size"),
        lr=done.get("lr", card.get("lr")),
        clip_seconds=card.get("clip_seconds"),
        examples_seen=done.get("examples"),
        tokens_seen=done.get("tokens"),
        hours_seen=done.get("hours_seen"),
        data_hours=done.get("data_hours"),
        data_files=len(rows),
        epochs=done.get("epochs"),
        final_loss=done.get("final_loss"),
        heldout_loss_own=done.get("heldout_loss"),  # the run's own mask and clip length
        pool_overlap=pool_overlap(ctx.pool_rows, rows),
        schedule=cfg.train.schedule,
        cooldown_fraction=cfg.train.cooldown_fraction if wsd else None,
        trunk_id=(branch or {}).get("trunk_id"),
        branched_at=branched_at,
        own_steps=None if done.get("steps") is None else done["steps"] - (branched_at or 0),
    )  # fmt: skip
    return info.to_dict() | context_info(ctx)
