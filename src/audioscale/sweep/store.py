"""The study store: one SQLite file (``study.db``) with every run, metric and score.

Choices:
- WAL journal, ``synchronous=FULL``, every write in one ``BEGIN IMMEDIATE`` transaction:
  a process killed at any instant leaves the store as it was before or after a write.
- Only the sweep's parent process writes (workers put a ``result.json`` in their run
  folder and the parent records it), so there is never write contention.
- A full disk, a read-only folder or an I/O error at open or in a transaction is a
  one-line ``StorageError`` (``errors.storage_error``), the transaction rolled back;
  each commit is one write of ``audioscale.faults`` (the fault-injection seam).
- Recording a run is idempotent: its rows in every table are deleted and re-inserted in
  the same transaction, so a replayed record replaces and never duplicates.
- Values that are not plain columns (settings, run_info values) are stored as JSON text.
- ``results()`` is the results-table contract of docs/ARCHITECTURE.md: one row per done
  run (baselines included, marked by ``kind``), missing values None.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audioscale import faults
from audioscale.config import RunConfig
from audioscale.errors import AudioscaleError, DataError, storage_error
from audioscale.evaluate import records
from audioscale.evaluate.records import (
    TASK_PREFIX,
    ProbeRow,
    ResultRow,
    SpectralMetrics,
    SpectralRow,
    TrainMetricsRow,
    check_keys,
    config_columns,
)
from audioscale.models.arch import arch_id
from audioscale.sweep.spec import TRAINED_KINDS
from audioscale.utils import atomic_write_bytes, atomic_write_text, finite_or_none

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'trained',
  config TEXT NOT NULL, hash TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, wall_s REAL,
  error TEXT, host TEXT, pid INTEGER, created REAL
);
CREATE TABLE IF NOT EXISTS train_metrics (
  run_id TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, lr REAL, examples REAL,
  tokens REAL, flops REAL, hours REAL, epochs REAL, ex_per_s REAL, extra TEXT,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS spectral (
  run_id TEXT NOT NULL, checkpoint TEXT NOT NULL, step INTEGER, fraction REAL,
  is_final INTEGER NOT NULL DEFAULT 0, pool TEXT NOT NULL, level TEXT NOT NULL,
  layer INTEGER NOT NULL, centred INTEGER NOT NULL, n INTEGER, k INTEGER, route TEXT,
  rankme REAL, alpha_req REAL, nesum REAL, stable_rank REAL, participation_ratio REAL,
  loss REAL,
  PRIMARY KEY (run_id, checkpoint, pool, level, layer, centred)
);
CREATE TABLE IF NOT EXISTS probes (
  run_id TEXT NOT NULL, task TEXT NOT NULL, protocol TEXT NOT NULL, metric TEXT,
  score REAL, n_test INTEGER, domain TEXT, settings TEXT,
  PRIMARY KEY (run_id, task, protocol)
);
CREATE TABLE IF NOT EXISTS run_info (
  run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS outcomes (
  run_id TEXT NOT NULL, task TEXT NOT NULL, protocol TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (run_id, task, protocol)
);
"""

RESULT_COLUMNS = ResultRow.names()  # the results table's fixed columns, in record order
SPECTRAL_KEYS = SpectralMetrics.names()
SPECTRAL_COLUMNS = SpectralRow.names()
# a probe row's per-clip outcomes go to the ``outcomes`` table (see "Per-clip outcomes")
PROBE_COLUMNS = [c for c in ProbeRow.names() if c != "outcomes"]
TRAIN_COLS = [c for c in TrainMetricsRow.names() if c != "step"]
CHECKPOINT_COLUMNS = ["run_id", "step", "fraction", *SPECTRAL_KEYS, "loss"]
# spectral / probe fields that every row must carry (a row without one is refused)
SPECTRAL_REQUIRED = ("checkpoint", "pool", "level", "layer", "centred")
PROBE_REQUIRED = ("task", "protocol")


def _config_columns(config: dict, kind: str = "trained") -> dict[str, Any]:
    """Results columns that come straight from a run's RunConfig (the fields of
    ``records.ResultRow`` with ``config=``); resolved values in run_info, written by the
    run from its model card, take precedence), and ``arch`` for the kinds whose network is
    the config's (trained, verify, random-init)."""
    out = config_columns(config, kind, TRAINED_KINDS)
    out["arch"] = _arch(config) if kind in (*TRAINED_KINDS, "random-init") else None
    return out


def _arch(config: dict) -> str | None:
    """``models.arch.arch_id`` of a stored RunConfig (None when it no longer validates)."""
    try:
        cfg = RunConfig.model_validate(config)
        return arch_id(cfg.model, cfg.frontend)
    except (ValueError, AudioscaleError):
        return None


class Store:
    """``Store(study_dir / "study.db")``; creates the schema on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=60000")
        except (sqlite3.DatabaseError, OSError) as e:
            self._raise_fault(e)
        with self.tx():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise DataError(
                    f"{self.path}: store schema version {row[0]}, this audioscale reads "
                    f"{SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it. Its commit is one write
        of ``audioscale.faults``; a full disk, a read-only folder or an I/O error becomes
        a one-line ``StorageError`` (the transaction rolled back)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                faults.point(self.path)
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except (sqlite3.DatabaseError, OSError) as e:
            self._raise_fault(e)

    def _raise_fault(self, e: BaseException) -> None:
        """Re-raise ``e`` as its one-line StorageError (as itself when it is no OS fault)."""
        fault = storage_error(e, str(self.path))
        if fault is None:
            raise e
        raise fault from e

    def _rollback(self) -> None:
        """Roll back the open transaction (SQLite may have rolled it back already after
        a full disk or an I/O error)."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------------ meta

    def set_meta(self, **items: Any) -> None:
        with self.tx() as db:
            for k, v in items.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def meta(self) -> dict[str, Any]:
        return {r[0]: json.loads(r[1]) for r in self.db.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------------ run status

    def add_runs(self, jobs: list[Any]) -> int:
        """Register jobs (``.run_id, .kind, .config``) as pending; existing ones untouched."""
        added = 0
        with self.tx() as db:
            for job in jobs:
                cfg = job.config.model_dump(mode="json")
                cur = db.execute(
                    "INSERT OR IGNORE INTO runs (run_id, name, kind, config, hash, status, created)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                    (job.run_id, job.config.name, job.kind, json.dumps(cfg, sort_keys=True),
                     job.config.run_hash(), time.time()),
                )  # fmt: skip
                added += cur.rowcount
        return added

    def mark_running(self, run_id: str, pid: int | None = None) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, started=?, finished=NULL,"
                " error=NULL, host=?, pid=? WHERE run_id=?",
                (time.time(), socket.gethostname(), pid or os.getpid(), run_id),
            )

    def mark_failed(self, run_id: str, error: str, wall_s: float | None = None) -> None:
        line = " ".join(str(error).split())[:500] or "failed (no reason given)"
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status='failed', error=?, finished=?, wall_s=? WHERE run_id=?",
                (line, time.time(), wall_s, run_id),
            )

    def reset(self, statuses: tuple[str, ...] = ("running",)) -> int:
        """Put runs in ``statuses`` back to pending (stale 'running' after a crash, or
        'failed' for --retry-failed). Their recorded rows stay until re-recorded."""
        marks = ",".join("?" * len(statuses))
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE runs SET status='pending', error=NULL, pid=NULL WHERE status IN ({marks})",
                statuses,
            )
        return cur.rowcount

    def mark_pending(self, run_ids: list[str]) -> int:
        """Put these runs back to pending (done runs whose evaluation is stale); their
        recorded rows stay until re-recorded."""
        with self.tx() as db:
            n = 0
            for rid in run_ids:
                n += db.execute(
                    "UPDATE runs SET status='pending', error=NULL, pid=NULL WHERE run_id=?", (rid,)
                ).rowcount
        return n

    def record(self, result: dict[str, Any], wall_s: float | None = None) -> None:
        """Store a run's result (the run folder's result.json) and mark it done, atomically.
        Re-recording replaces the run's rows. A key that ``evaluate.records`` does not declare
        (in ``info``, a spectral row or a probe row) is refused with a DataError."""
        rid = result["run_id"]
        info = result.get("info", {})
        try:
            check_keys(records.RunInfo, info, f"run {rid} info")
            for s in result.get("spectral", []):
                check_keys(SpectralRow, s, f"run {rid} spectral row")
            for p in result.get("probes", []):
                check_keys(ProbeRow, p, f"run {rid} probe row")
        except KeyError as e:
            raise DataError(e.args[0]) from None
        spectral_sql = _insert("spectral", SPECTRAL_COLUMNS)
        probe_sql = _insert("probes", PROBE_COLUMNS)
        with self.tx() as db:
            for table in ("train_metrics", "spectral", "probes", "run_info", "outcomes"):
                db.execute(f"DELETE FROM {table} WHERE run_id=?", (rid,))
            for row in _merge_steps(result.get("train_metrics", [])):
                extra = {k: v for k, v in row.items() if k not in TRAIN_COLS and k != "step"}
                db.execute(
                    _insert("train_metrics", [*TrainMetricsRow.names(), "extra"]),
                    (rid, int(row["step"]), *[finite_or_none(row.get(c)) for c in TRAIN_COLS],
                     json.dumps(extra) if extra else None),
                )  # fmt: skip
            for s in result.get("spectral", []):
                db.execute(spectral_sql, (rid, *_spectral_values(s)))
            for p in result.get("probes", []):
                db.execute(probe_sql, (rid, *_probe_values(p)))
                _record_outcomes(db, rid, p)
            for k, v in info.items():
                db.execute("INSERT INTO run_info VALUES (?,?,?)", (rid, k, json.dumps(v)))
            db.execute(
                "UPDATE runs SET status='done', error=NULL, finished=?, wall_s=? WHERE run_id=?",
                (time.time(), wall_s, rid),
            )

    # ------------------------------------------------------------------ reading

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY rowid"
        rows = [dict(r) for r in self.db.execute(q, (status,) if status else ())]
        for r in rows:
            r["config"] = json.loads(r["config"])
        return rows

    def current_runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Runs of the study's current sweep spec (meta ``spec_runs``, written by each
        sweep): a run that an edited spec no longer lists stays in the database but leaves
        the results table, the exports and the fits. All runs when no spec was recorded."""
        spec = self.meta().get("spec_runs")
        runs = self.runs(status)
        return runs if spec is None else [r for r in runs if r["run_id"] in set(spec)]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            out[status] = n
        return out

    def info(self, run_id: str) -> dict[str, Any]:
        rows = self.db.execute("SELECT key, value FROM run_info WHERE run_id=?", (run_id,))
        return {k: json.loads(v) for k, v in rows}

    def train_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM train_metrics WHERE run_id=? ORDER BY step", (run_id,)
        )
        return [dict(r) for r in rows]

    def spectral(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM spectral" + (" WHERE run_id=?" if run_id else "")
        rows = self.db.execute(q + " ORDER BY run_id, fraction, pool", (run_id,) if run_id else ())
        return [dict(r) for r in rows]

    def probes(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM probes" + (" WHERE run_id=?" if run_id else "")
        rows = [dict(r) for r in self.db.execute(q + " ORDER BY run_id, task, protocol",
                                                 (run_id,) if run_id else ())]  # fmt: skip
        for r in rows:
            r["settings"] = json.loads(r["settings"] or "{}")
        return rows

    def outcomes(self, protocol: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Per-clip outcomes: run_id → task → protocol → ``ClipOutcomes.to_dict`` (of one
        ``protocol`` when given); runs recorded without them are absent."""
        q = "SELECT * FROM outcomes" + (" WHERE protocol=?" if protocol else "")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in self.db.execute(q, (protocol,) if protocol else ()):
            out.setdefault(r["run_id"], {}).setdefault(r["task"], {})[r["protocol"]] = json.loads(
                r["data"]
            )
        return out

    def _primary(self, info: dict[str, Any]) -> tuple:
        return (
            info.get("rankme_pool"),
            info.get("rankme_level", "clip"),
            int(info.get("rankme_layer", -1)),
            int(bool(info.get("rankme_centred", False))),
        )

    def results(self) -> list[dict[str, Any]]:
        """One row per done run: the results table of docs/ARCHITECTURE.md."""
        out = []
        for run in self.current_runs("done"):
            rid = run["run_id"]
            info = self.info(rid)
            row: dict[str, Any] = dict.fromkeys(records.result_columns())
            row.update(_config_columns(run["config"], run["kind"]))
            # info as the run wrote it: rankme_gap is the run's equal-N gap
            # (evaluate.slices.gap_metrics), never train − pool at unequal N
            row.update(info)
            row.update(run_id=rid, name=run["name"], kind=run["kind"])
            pool, level, layer, centred = self._primary(info)
            final = self.db.execute(
                "SELECT * FROM spectral WHERE run_id=? AND is_final=1 AND pool=? AND level=?"
                " AND layer=? AND centred=?",
                (rid, pool, level, layer, centred),
            ).fetchone()
            row["rankme_pool"] = None if final is None else pool
            if final is not None:
                row.update({k: final[k] for k in SPECTRAL_KEYS})
                row.update(rankme_N=final["n"], rankme_K=final["k"])
            for p in self.probes(rid):
                row[f"task.{p['task']}.{p['protocol']}"] = p["score"]
            out.append(row)
        return out

    def checkpoint_metrics(self) -> list[dict[str, Any]]:
        """Spectral metrics at every stored checkpoint of trained runs, on each run's
        primary pool and options (the early-training question)."""
        out = []
        for run in self.current_runs("done"):
            if run["kind"] != "trained":
                continue
            pool, level, layer, centred = self._primary(self.info(run["run_id"]))
            rows = self.db.execute(
                "SELECT * FROM spectral WHERE run_id=? AND pool=? AND level=? AND layer=?"
                " AND centred=? ORDER BY fraction, step",
                (run["run_id"], pool, level, layer, centred),
            )
            out += [{k: r[k] for k in CHECKPOINT_COLUMNS} for r in rows]
        return out

    def status(self, workers: int | None = None) -> dict[str, Any]:
        """Counts by state, failed runs with reasons, and an ETA in seconds (mean wall time
        of done runs of the same kind × remaining runs / workers; running runs count their
        elapsed time as done)."""
        runs = self.runs()
        workers = workers or int(self.meta().get("workers", 1) or 1)
        walls: dict[str, list[float]] = {}
        for r in runs:
            if r["status"] == "done" and r["wall_s"] is not None:
                walls.setdefault(r["kind"], []).append(r["wall_s"])
        every = [w for ws in walls.values() for w in ws]
        eta: float | None = 0.0
        now = time.time()
        for r in runs:
            if r["status"] not in ("pending", "running"):
                continue
            ws = walls.get(r["kind"]) or every
            if not ws:
                eta = None
                break
            mean = sum(ws) / len(ws)
            if r["status"] == "running" and r["started"]:
                mean = max(0.0, mean - (now - r["started"]))
            eta += mean
        return {
            "study_db": str(self.path),
            "total": len(runs),
            "counts": self.counts(),
            "failed": [
                {"run_id": r["run_id"], "error": r["error"], "attempts": r["attempts"]}
                for r in runs
                if r["status"] == "failed"
            ],
            "running": [r["run_id"] for r in runs if r["status"] == "running"],
            "workers": workers,
            "mean_wall_s": (sum(every) / len(every)) if every else None,
            "eta_s": None if eta is None else eta / workers,
        }

    # ------------------------------------------------------------------ exports

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write results.csv (always) and results.parquet (when pyarrow is installed)."""
        out_dir = Path(out_dir)
        rows = self.results()
        cols = result_columns(rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _csv(r.get(c)) for c in cols})
        paths = {"csv": out_dir / "results.csv"}
        atomic_write_text(paths["csv"], buf.getvalue())
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return paths
        table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        paths["parquet"] = out_dir / "results.parquet"
        atomic_write_bytes(paths["parquet"], sink.getvalue().to_pybytes())
        return paths


def result_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The record's columns (``records.ResultRow``), then the per-task columns (sorted).
    A key of neither kind is refused: every results column is declared once."""
    keys = {k for r in rows for k in r}
    tasks = sorted(k for k in keys if k.startswith(TASK_PREFIX))
    fixed = records.result_columns()
    unknown = sorted(keys - set(fixed) - set(tasks))
    if unknown:
        raise DataError(f"results columns {', '.join(unknown)} are not declared in ResultRow")
    return fixed + tasks


# metrics.jsonl names (the trainer's) → train_metrics columns: the trainer has always
# written hours_seen and examples_per_s (records.TrainMetricsRow ``log_key``)
LOG_KEYS = TrainMetricsRow.log_keys()


def _insert(table: str, columns: list[str]) -> str:
    """``INSERT OR REPLACE INTO table (run_id, columns...)``, the columns named (a record
    field without a table column fails here, loudly)."""
    marks = ", ".join("?" * (len(columns) + 1))
    return f"INSERT OR REPLACE INTO {table} (run_id, {', '.join(columns)}) VALUES ({marks})"


def _spectral_values(s: dict[str, Any]) -> list[Any]:
    for k in SPECTRAL_REQUIRED:
        s[k]  # noqa: B018 - a row without one raises KeyError
    conv = {"is_final": lambda v: int(bool(v)), "centred": lambda v: int(bool(v)),
            "layer": int, "loss": finite_or_none}  # fmt: skip
    conv |= dict.fromkeys(SPECTRAL_KEYS, finite_or_none)
    return [conv.get(c, _same)(s.get(c)) for c in SPECTRAL_COLUMNS]


def _probe_values(p: dict[str, Any]) -> list[Any]:
    for k in PROBE_REQUIRED:
        p[k]  # noqa: B018 - a row without one raises KeyError
    conv = {"score": finite_or_none,
            "settings": lambda v: json.dumps({} if v is None else v, sort_keys=True)}  # fmt: skip
    return [conv.get(c, _same)(p.get(c)) for c in PROBE_COLUMNS]


# ---------------------------------------------------------------- per-clip outcomes
# A probe row's ``outcomes`` (``uncertainty.ClipOutcomes.to_dict``: each test clip's
# outcome, keyed by clip) live in their own table, one JSON text per (run, task,
# protocol), so the results table stays one number per cell and a study recorded before
# they existed opens unchanged (the fits then say that no interval can be given).


def _record_outcomes(db: sqlite3.Connection, rid: str, p: dict[str, Any]) -> None:
    if p.get("outcomes"):
        db.execute(
            "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?)",
            (rid, p["task"], p["protocol"], json.dumps(p["outcomes"])),
        )


def _same(v: Any) -> Any:
    return v


def _merge_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl may hold several lines per step (train, held-out): merge them."""
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        if "step" not in r:
            continue
        r = {LOG_KEYS.get(k, k): v for k, v in r.items()}
        merged.setdefault(int(r["step"]), {}).update(r)
    return [merged[s] for s in sorted(merged)]


def _csv(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v)
    return v


def open_store(study_dir: str | Path) -> Store:
    return Store(Path(study_dir) / "study.db")
