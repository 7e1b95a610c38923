"""The CLI shell: every command has --help, and a user mistake is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audioscale.cli import main

COMMANDS = [
    ["data", "demo"],
    ["data", "check"],
    ["data", "import-folder"],
    ["data", "import-pool"],
    ["data", "import-hear"],
    ["data", "import-xares"],
    ["data", "import-csv"],
    ["pretrain"],
    ["rankme"],
    ["probe"],
    ["sweep"],
    ["status"],
    ["fit"],
    ["report"],
    ["study"],
]


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [
        "data",
        "pretrain",
        "rankme",
        "probe",
        "sweep",
        "status",
        "fit",
        "report",
        "study",
    ]:
        assert name in out


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["rankme", "--embeddings", "/nonexistent/z.npy"],
        ["data", "check", "/nonexistent/folder"],
        ["fit", "/nonexistent/study"],
        ["pretrain", "--config", "/nonexistent.yaml", "--out", "/tmp/x"],
    ],
)
def test_user_mistake_is_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audioscale: error:") and "\n" not in err
    assert "Traceback" not in err


def test_console_entry_point_runs_as_module():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "audioscale",
            "pretrain",
            "--config",
            "/nonexistent.yaml",
            "--out",
            "/tmp/x",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [(KeyboardInterrupt, 130, "interrupted"), (EOFError, 1, "")],
)
def test_interrupt_and_abort_give_exit_codes_not_tracebacks(
    monkeypatch, tmp_path, capsys, raised, code, message
):
    """Ctrl-C exits 130 and an aborted prompt exits 1 (typer >= 0.29 keeps ``Abort`` out of
    its click copy's exceptions module, and returns the Exit code instead of raising)."""
    import audioscale.sweep.runner as study

    def boom(*args, **kwargs):
        raise raised

    monkeypatch.setattr(study, "study_status", boom)
    assert main(["status", str(tmp_path)]) == code
    assert message in capsys.readouterr().err
