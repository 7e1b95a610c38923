"""The ``audioscale`` command: a thin shell over the Python API.

Each stage registers its commands from its own module in this package (data.py,
pretrain.py, rankme.py, probe.py, sweep.py, fit.py, report.py, study.py). A command
parses, calls the stage, prints. User mistakes raise AudioscaleError, which ``main``
turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

from audioscale.cli.app import app, data_app  # noqa: F401  (re-exported for tests)

COMMAND_MODULES = ["data", "data_demo", "pretrain", "rankme", "probe", "sweep", "fit", "report", "study"]


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"audioscale.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"audioscale.cli.{name}":
                raise


_register()


def main(argv: list[str] | None = None) -> int:
    from audioscale.errors import AudioscaleError

    try:
        app(args=argv, prog_name="audioscale", standalone_mode=False)
    except AudioscaleError as e:
        print(f"audioscale: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audioscale: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # typer/click exits (--help, usage errors)
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
