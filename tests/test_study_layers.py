"""The study sits above the stages it composes: no stage imports a stage after it."""

import subprocess
import sys


def test_sweep_never_imports_scaling_or_report_and_study_composes_them():
    code = (
        "import sys, audioscale.sweep.runner, audioscale.sweep.run, audioscale.sweep.store\n"
        "assert not [m for m in ('audioscale.scaling', 'audioscale.report') if m in sys.modules]\n"
        "import audioscale.study as s\n"
        "assert s.run_study.__module__ == 'audioscale.study'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
