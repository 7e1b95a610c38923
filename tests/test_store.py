"""The SQLite store: schema, idempotent records, results contract, status/ETA, exports."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from audioscale.errors import DataError
from audioscale.sweep.spec import load_sweep
from audioscale.sweep.store import CHECKPOINT_COLUMNS, RESULT_COLUMNS, Store

SPEC = {
    "base": {"train": {"steps": 20}, "model": {"preset": "atto"}},
    "axes": {"steps": [10, 20]},
}


def fake_result(run_id: str, rankme: float, kind: str = "trained") -> dict:
    pool = "pool-heldout+tasks-abc"
    spectral = [
        {"checkpoint": name, "step": step, "fraction": frac, "is_final": name == "final",
         "pool": pool, "level": "clip", "layer": -1, "centred": False, "n": 100, "k": 64,
         "route": "svd", "rankme": rankme * frac, "alpha_req": 1.1, "nesum": 3.0,
         "stable_rank": 2.0, "participation_ratio": 4.0, "loss": 1.0 - frac / 2}
        for name, step, frac in [("step_000005", 5, 0.25), ("final", 20, 1.0)]
    ]  # fmt: skip
    spectral.append(dict(spectral[-1], pool="train-slice", rankme=rankme + 2.0))
    return {
        "run_id": run_id,
        "kind": kind,
        "info": {
            "params": 1000,
            "epochs": 2.5,
            "rankme_pool": pool,
            "rankme_level": "clip",
            "rankme_layer": -1,
            "rankme_centred": False,
            "rankme_train": rankme + 2.0,
            "rankme_gap": 2.0,  # the run's equal-N gap (evaluate.slices.gap_metrics)
            "suite": 0.5,
            "pool_overlap": False,
            "width": 64,
            "wall_s": 1.5,
        },  # fmt: skip
        "train_metrics": [
            {"step": 10, "loss": 0.9, "lr": 1e-3, "examples_per_s": 50.0},
            {"step": 20, "loss": 0.8},
            {"step": 20, "heldout_loss": 0.85},  # a second line for the same step merges
        ],
        "spectral": spectral,
        "probes": [
            {
                "task": "pitch",
                "protocol": "linear",
                "metric": "accuracy",
                "score": 0.4,
                "n_test": 30,
                "domain": "music",
                "settings": {"epochs": 10},
            },
            {
                "task": "pitch",
                "protocol": "knn",
                "metric": "accuracy",
                "score": 0.3,
                "n_test": 30,
                "domain": "music",
                "settings": {"k": 10},
            },
        ],  # fmt: skip
    }


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "study.db")
    yield s
    s.close()


def _jobs():
    return load_sweep(SPEC | {"baselines": {"random_init": False, "logmel_stats": False}}).jobs


def test_schema_wal_and_version(store, tmp_path):
    db = sqlite3.connect(tmp_path / "study.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "train_metrics", "spectral", "probes", "run_info", "meta"} <= tables
    Store(tmp_path / "study.db").close()  # reopening keeps one version row
    assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_add_runs_is_idempotent_and_status_flow(store):
    jobs = _jobs()
    assert store.add_runs(jobs) == 2
    assert store.add_runs(jobs) == 0
    a, b = jobs
    store.mark_running(a.run_id)
    store.mark_running(b.run_id)
    store.mark_failed(b.run_id, "ValueError: boom\nsecond line", 2.0)
    assert store.counts() == {"pending": 0, "running": 1, "done": 0, "failed": 1}
    failed = store.runs("failed")[0]
    assert failed["error"] == "ValueError: boom second line" and failed["attempts"] == 1
    assert store.reset(("running",)) == 1
    assert store.counts()["pending"] == 1
    assert store.reset(("failed",)) == 1
    assert store.runs()[1]["error"] is None


def test_record_replaces_never_duplicates(store):
    jobs = _jobs()
    store.add_runs(jobs)
    rid = jobs[0].run_id
    for _ in range(3):
        store.record(fake_result(rid, 10.0), wall_s=1.0)
    assert len(store.train_metrics(rid)) == 2
    merged = store.train_metrics(rid)[1]
    assert merged["loss"] == 0.8 and '"heldout_loss": 0.85' in merged["extra"]
    assert store.train_metrics(rid)[0]["ex_per_s"] == 50.0
    assert len(store.spectral(rid)) == 3 and len(store.probes(rid)) == 2
    store.record(fake_result(rid, 12.0))  # a new value replaces the old one
    assert [r["rankme"] for r in store.results()] == [12.0]


def test_per_clip_outcomes_live_in_their_own_table(store):
    jobs = _jobs()
    store.add_runs(jobs)
    a, b = (j.run_id for j in jobs)
    res = fake_result(a, 10.0)
    o = {"metric": "accuracy", "clips": ["x.wav", "y.wav"], "folds": [0, 0],
         "correct": [1, 0], "valid_score": 0.5}  # fmt: skip
    res["probes"][0]["outcomes"] = o
    for _ in range(2):  # re-recording replaces, never duplicates
        store.record(res)
    store.record(fake_result(b, 9.0))  # a run without outcomes (recorded before them)
    assert store.outcomes() == {a: {"pitch": {"linear": o}}}
    assert store.outcomes("knn") == {}
    assert "outcomes" not in store.probes(a)[0]
    assert all(not k.startswith("outcomes") for k in store.results()[0])


def test_results_contract(store):
    jobs = _jobs()
    store.add_runs(jobs)
    store.record(fake_result(jobs[0].run_id, 10.0))
    rows = store.results()
    assert len(rows) == 1  # only done runs
    row = rows[0]
    assert list(row)[: len(RESULT_COLUMNS)] == RESULT_COLUMNS
    assert row["rankme"] == 10.0 and row["rankme_N"] == 100 and row["rankme_K"] == 64
    assert row["rankme_pool"] == "pool-heldout+tasks-abc"
    assert row["rankme_train"] == 12.0 and row["rankme_gap"] == pytest.approx(2.0)
    assert row["task.pitch.linear"] == 0.4 and row["task.pitch.knn"] == 0.3
    assert row["kind"] == "trained" and row["preset"] == "atto" and row["steps"] == 10
    assert row["width"] == 64 and row["epochs"] == 2.5 and row["pool_overlap"] is False
    assert row["domain_music"] is None  # missing → None
    ck = store.checkpoint_metrics()
    assert [c["fraction"] for c in ck] == [0.25, 1.0]  # train-slice pool excluded
    assert list(ck[0]) == CHECKPOINT_COLUMNS and ck[0]["rankme"] == 2.5 and ck[0]["loss"] == 0.875


def test_status_eta(store):
    jobs = _jobs()
    store.add_runs(jobs)
    st = store.status(workers=2)
    assert st["eta_s"] is None and st["counts"]["pending"] == 2  # no timing yet
    store.record(fake_result(jobs[0].run_id, 10.0), wall_s=30.0)
    st = store.status(workers=2)
    assert st["eta_s"] == pytest.approx(15.0)  # one run of mean 30 s left over 2 workers
    assert st["mean_wall_s"] == 30.0 and st["total"] == 2


def test_exports_csv_and_parquet(store, tmp_path):
    jobs = _jobs()
    store.add_runs(jobs)
    for j, r in zip(jobs, [10.0, 20.0], strict=True):
        store.record(fake_result(j.run_id, r))
    paths = store.export(tmp_path)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["rankme"]) for r in rows] == [10.0, 20.0]
    assert {"task.pitch.linear", "epochs", "pool_overlap", "rankme_gap"} <= set(rows[0])
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(paths["parquet"])
    assert table.num_rows == 2 and table.column("rankme").to_pylist() == [10.0, 20.0]


def test_failed_transaction_leaves_nothing(store):
    jobs = _jobs()
    store.add_runs(jobs)
    bad = fake_result(jobs[0].run_id, 10.0)
    bad["probes"].append({"protocol": "linear"})  # no task: KeyError mid-transaction
    with pytest.raises(KeyError):
        store.record(bad)
    assert store.spectral() == [] and store.counts()["pending"] == 2


def test_train_metrics_take_the_trainers_column_names(store):
    """metrics.jsonl (trainer) writes ``hours_seen`` and ``examples_per_s``; the store's
    ``hours`` and ``ex_per_s`` columns must hold them, not NULL."""
    jobs = _jobs()
    store.add_runs(jobs)
    rid = jobs[0].run_id
    row = {"step": 4, "loss": 1.0, "lr": 1e-3, "examples": 32, "tokens": 800, "flops": 1e6,
           "hours_seen": 0.5, "epochs": 1.5, "examples_per_s": 200.0, "wall_s": 2.0}  # fmt: skip
    store.record(dict(fake_result(rid, 10.0), train_metrics=[row]))
    (got,) = store.train_metrics(rid)
    assert got["hours"] == 0.5 and got["ex_per_s"] == 200.0 and got["epochs"] == 1.5


def test_runs_an_edited_spec_dropped_leave_the_results(store):
    a, b = _jobs()
    store.add_runs([a, b])
    store.record(fake_result(a.run_id, 10.0))
    store.record(fake_result(b.run_id, 12.0))
    assert {r["run_id"] for r in store.results()} == {a.run_id, b.run_id}  # no spec recorded
    store.set_meta(spec_runs=[b.run_id])
    assert [r["run_id"] for r in store.results()] == [b.run_id]
    assert {r["run_id"] for r in store.checkpoint_metrics()} == {b.run_id}
    assert len(store.runs("done")) == 2  # kept in the database


# --------------------------------------------------------------------------- result records


def test_csv_header_store_columns_and_report_table_derive_from_the_record(store, tmp_path):
    from audioscale.evaluate import records
    from audioscale.report.html import sec_runs

    jobs = _jobs()
    store.add_runs(jobs)
    store.record(fake_result(jobs[0].run_id, 10.0))
    fixed = records.ResultRow.names()
    assert RESULT_COLUMNS == fixed == records.result_columns()
    (row,) = store.results()
    assert list(row) == [*fixed, "task.pitch.knn", "task.pitch.linear"]
    with open(store.export(tmp_path)["csv"]) as f:
        assert next(csv.reader(f)) == list(row)
    shown = [f.name for f in records.ResultRow.fields() if f.metadata["report"] is not None]
    assert set(records.report_columns()) == set(shown)  # the run table's columns
    assert all(f.metadata["doc"] for f in records.ResultRow.fields())  # every field described
    # every key a result's info may hold is a results column
    assert set(records.RunInfo.names()) <= set(fixed)
    assert "<th>rankme_gap</th>" in sec_runs([row])


def test_a_field_added_to_the_record_reaches_store_csv_and_report(store, tmp_path, monkeypatch):
    from dataclasses import dataclass

    from audioscale.evaluate import records
    from audioscale.report.html import sec_runs

    @dataclass
    class Info(records.RunInfo):
        new_metric: float | None = records.column("a new measurement", report=99)

    @dataclass
    class Row(records.ResultRow):
        new_metric: float | None = records.column("a new measurement", report=99)

    jobs = _jobs()
    store.add_runs(jobs)
    result = fake_result(jobs[0].run_id, 10.0)
    result["info"]["new_metric"] = 0.25
    with pytest.raises(DataError, match="new_metric not declared in RunInfo"):
        store.record(result)  # not declared yet: refused
    monkeypatch.setattr(records, "RunInfo", Info)
    monkeypatch.setattr(records, "ResultRow", Row)
    store.record(result)
    (row,) = store.results()
    assert row["new_metric"] == 0.25 and list(row)[len(RESULT_COLUMNS)] == "new_metric"
    with open(store.export(tmp_path)["csv"]) as f:
        assert "new_metric" in next(csv.reader(f))
    assert records.report_columns()[-1] == "new_metric"
    assert "<th>new_metric</th>" in sec_runs([row])


def test_unknown_keys_in_spectral_and_probe_rows_are_refused(store):
    jobs = _jobs()
    store.add_runs(jobs)
    bad = fake_result(jobs[0].run_id, 10.0)
    bad["spectral"][0]["rank_me"] = 1.0
    with pytest.raises(DataError, match="rank_me not declared in SpectralRow"):
        store.record(bad)
    bad = fake_result(jobs[0].run_id, 10.0)
    bad["probes"][0]["scroe"] = 1.0
    with pytest.raises(DataError, match="scroe not declared in ProbeRow"):
        store.record(bad)
    assert store.counts()["pending"] == 2


def test_store_tables_hold_exactly_the_record_fields(store, tmp_path):
    from audioscale.evaluate import records

    db = sqlite3.connect(tmp_path / "study.db")

    def cols(table):  # inserts name their columns, so the SQL's order is free
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}

    assert cols("spectral") == {"run_id", *records.SpectralRow.names()}
    # a probe row's per-clip outcomes go to their own table
    assert cols("probes") == {"run_id", *records.ProbeRow.names()} - {"outcomes"}
    assert cols("outcomes") == {"run_id", "task", "protocol", "data"}
    assert cols("train_metrics") == {"run_id", *records.TrainMetricsRow.names(), "extra"}


def test_trainer_log_keys_map_onto_train_metrics_columns():
    """The only metrics.jsonl names that differ from the store's columns are the two the
    trainer writes (``MetricsLog.line`` / ``plan.counters``): hours_seen and examples_per_s."""
    from importlib.util import find_spec
    from pathlib import Path

    from audioscale.evaluate import records

    keys = records.TrainMetricsRow.log_keys()
    assert keys == {"hours_seen": "hours", "examples_per_s": "ex_per_s"}
    src = "".join(Path(find_spec(f"audioscale.train.{m}").origin).read_text()
                  for m in ("trainer", "metricslog", "plan"))  # no torch import  # fmt: skip
    for key in keys:
        assert f'"{key}"' in src or f"{key}=" in src


def test_columns_the_fits_and_report_read_by_name_are_record_fields():
    """``col(rows, "<name>")`` in scaling/ and report/ reads a results column: each name
    must be a ResultRow field (a renamed or misspelt column would read all-NaN)."""
    import re
    from importlib.util import find_spec
    from pathlib import Path

    from audioscale.evaluate import records

    pkg = Path(find_spec("audioscale").origin).parent
    used = set()
    for path in [*(pkg / "scaling").rglob("*.py"), *(pkg / "report").rglob("*.py")]:
        used |= set(re.findall(r'\bcol\(\s*[\w\[\]]+\s*,\s*"([\w.]+)"', path.read_text()))
    assert {"rankme", "suite", "heldout_loss", "rankme_gap"} <= used
    assert used <= set(records.ResultRow.names())
