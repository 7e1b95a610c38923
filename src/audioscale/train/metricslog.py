"""The trainer's log: ``metrics.jsonl`` (one line per closed loss window, written by rank
0), the TensorBoard scalars (``train.tblog``) and the progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from audioscale import faults
from audioscale.train import ddp, tblog
from audioscale.train.plan import TrainPlan
from audioscale.utils import progress_bar


class MetricsLog:
    """``metrics.jsonl`` (rank 0 writes) and the progress bar: one line per closed window."""

    def __init__(self, out: Path, p: TrainPlan, info: ddp.DistInfo, start: int, progress: bool):
        self.p, self.step_log, self.t_log = p, start, time.perf_counter()
        self.f = open(out / "metrics.jsonl", "a") if info.is_main else None
        purge = start + 1 if start else None  # a resumed run hides the steps it trains again
        self.tb = tblog.open_writer(out, purge) if info.is_main else None  # None: no tensorboard
        self.bar = progress_bar("pretrain", progress and info.is_main, transient=False, eta=True)

    def __enter__(self) -> MetricsLog:
        self.bar.__enter__()
        self.task = self.bar.add_task("", total=self.p.steps, completed=self.step_log)
        return self

    def __exit__(self, *exc) -> None:
        if self.f:
            self.f.close()
        tblog.close(self.tb)
        self.bar.__exit__(*exc)

    def advance(self) -> None:
        self.bar.advance(self.task)

    def line(self, done: int, loss: float, lr: float, counters: dict, wall_s: float) -> None:
        now = time.perf_counter()
        rate = (done - self.step_log) * self.p.cfg.train.batch_size / max(now - self.t_log, 1e-9)
        row = {"step": done, "loss": loss, "lr": lr, **counters}
        row.update(
            examples_per_s=rate, tokens_per_s=rate * self.p.tokens_per_example, wall_s=wall_s
        )
        if self.f:
            faults.point(self.f.name)  # one write of the fault-injection seam
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()
        tblog.scalars(self.tb, done, {"train/loss": loss, "train/lr": lr,
                                      "train/examples_per_s": rate})  # fmt: skip
        self.bar.update(self.task, description=f"loss {loss:.4f}  {rate:,.0f} ex/s")
        self.t_log, self.step_log = now, done
