"""What a build produced (``DemoSummary``), and its tables on stderr."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from audioscale.data.demo.plan import DEMO_TASKS, SPLITS


@dataclass
class DemoSummary:
    """What a build produced: clips and hours per task and split, pool hours per source."""

    out: str
    size: str
    seed: int
    tasks: dict = field(
        default_factory=dict
    )  # task → {clips, hours, labels, splits: {s: {clips, hours}}}
    pool: dict = field(default_factory=dict)  # {clips, hours, sources: {...}, splits: {...}}
    reused: int = 0
    rendered: int = 0
    removed: int = 0
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    read_from: dict[str, str] = field(default_factory=dict)  # source → folder or program

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DemoSummary:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _tally(rows: list[dict], key: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r[key], {"clips": 0, "hours": 0.0})
        d["clips"] += 1
        d["hours"] += float(r["duration"]) / 3600
    return {k: {"clips": v["clips"], "hours": round(v["hours"], 4)} for k, v in sorted(out.items())}


def _split_key(item: tuple) -> int:
    return SPLITS.index(item[0]) if item[0] in SPLITS else len(SPLITS)


def summarize(out: Path, rows: dict[str, list[dict]], size: str, seed: int) -> DemoSummary:
    s = DemoSummary(out=str(out), size=size, seed=seed)
    for task in DEMO_TASKS:
        tr = rows.get(f"tasks/{task}", [])
        s.tasks[task] = {
            "clips": len(tr),
            "hours": round(sum(float(r["duration"]) for r in tr) / 3600, 4),
            "labels": len({r["label"] for r in tr}),
            "splits": {k: v for k, v in sorted(_tally(tr, "split").items(), key=_split_key)},
        }
    pr = rows.get("pool", [])
    s.pool = {
        "clips": len(pr),
        "hours": round(sum(float(r["duration"]) for r in pr) / 3600, 4),
        "sources": _tally(pr, "source"),
        "splits": _tally(pr, "split"),
    }
    return s


def print_summary(s: DemoSummary) -> None:
    """Rich tables on stderr: clips and hours per task and split, pool hours per source."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"demo corpus ({s.size}, seed {s.seed}): {s.out}")
    for col in ("task", "labels", "split", "clips", "hours"):
        t.add_column(col, justify="left" if col in ("task", "split") else "right")
    for task, d in s.tasks.items():
        for i, (split, v) in enumerate(d["splits"].items()):
            t.add_row(
                task if i == 0 else "",
                str(d["labels"]) if i == 0 else "",
                split,
                str(v["clips"]),
                f"{v['hours']:.3f}",
            )
    for src, v in s.pool["sources"].items():
        t.add_row(
            "pool" if src == next(iter(s.pool["sources"])) else "",
            "",
            src,
            str(v["clips"]),
            f"{v['hours']:.3f}",
        )
    for split, v in s.pool["splits"].items():
        t.add_row("", "", f"pool {split}", str(v["clips"]), f"{v['hours']:.3f}")
    con = Console(stderr=True)
    for src, where in s.read_from.items():
        con.print(f"read {src} from {where}")
    con.print(t)
    con.print(
        f"{s.rendered} clips rendered, {s.reused} reused, {s.removed} stale files removed, "
        f"{len(s.problems)} problems, {s.wall_s:.1f} s"
    )
    for p in s.problems[:20]:
        con.print(f"  [yellow]{p}[/yellow]")
