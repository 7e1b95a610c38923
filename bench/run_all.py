"""Run every benchmark in bench/ and print their JSON lines (also saved to bench/out/).

Usage: python bench/run_all.py [--quick]. Each bench_*.py prints one JSON line last.
Record the numbers, with the machine, in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    quick = "--quick" in sys.argv
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    machine = {
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "python": platform.python_version(),
    }
    results = []
    for script in sorted(HERE.glob("bench_*.py")):
        t0 = time.time()
        cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        rec = {"bench": script.stem, "rc": proc.returncode, "wall_s": round(time.time() - t0, 1)}
        if lines:
            rec["result"] = json.loads(lines[-1])
        else:
            rec["stderr_tail"] = proc.stderr[-500:]
        print(json.dumps(rec), flush=True)
        results.append(rec)
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
