"""Sweeps: spec expansion, the SQLite store, one run's pipeline, local and Ray executors,
and the study command (sweep → fit → report).

- ``spec.load_sweep(path) -> Sweep`` / ``spec.expand(path) -> list[RunConfig]``
- ``store.Store(study_dir / "study.db")``: ``results()``, ``checkpoint_metrics()``,
  ``status()``, ``export(dir)``
- ``run.execute_run(cfg, run_dir, eval_ctx)``, ``run.run_job(job, run_dir, eval_ctx)``
- ``runner.run_sweep(spec, out, ...)`` (``audioscale.study.run_study`` composes a sweep
  with its fits and its report)
"""

from audioscale.sweep.spec import Job, Sweep, expand, load_sweep
from audioscale.sweep.store import Store, open_store

__all__ = ["Job", "Store", "Sweep", "expand", "load_sweep", "open_store"]
