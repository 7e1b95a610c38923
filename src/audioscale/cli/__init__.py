"""The ``audioscale`` command: a thin shell over the Python API.

Each stage registers its commands from its own module in this package (data.py,
pretrain.py, rankme.py, probe.py, sweep.py, fit.py, report.py, study.py). A command
parses, calls the stage, prints. User mistakes raise AudioscaleError, which ``main``
turns into one line on stderr and exit code 2; so are OS faults (disk full, permissions,
a vanished file: ``errors.storage_error``), their traceback kept in the study's log
(``STUDY/audioscale.log``); an interrupt is one line and exit 130 (SIGINT) or 143
(SIGTERM). A sweep or study in which some run failed exits 2, listing them.
"""

from __future__ import annotations

import importlib
import sys

from audioscale.cli.app import app, data_app  # noqa: F401  (re-exported for tests)

COMMAND_MODULES = [
    "data",
    "data_demo",
    "data_import",
    "pretrain",
    "tune",
    "rankme",
    "probe",
    "sweep",
    "fit",
    "report",
    "study",
]


class CommandImportError(ImportError):
    """A command module of COMMAND_MODULES failed to import (a bug, not a user mistake)."""


def _register() -> None:
    """Import every command module; one that fails to import (missing file included) is
    an error naming it, never a command silently missing from ``audioscale --help``."""
    for name in COMMAND_MODULES:
        module = f"audioscale.cli.{name}"
        try:
            importlib.import_module(module)
        except Exception as e:
            raise CommandImportError(f"command module {module} failed to import: {e}") from e


_register()


def _click_exceptions():
    """typer >= 0.29 ships its own copy of click; older versions use click itself."""
    try:
        from typer._click import exceptions as ex
    except ImportError:
        from click import exceptions as ex
    return ex


def _abort_exception() -> type[BaseException]:
    """``Abort`` (raised for Ctrl-C / EOF): typer >= 0.29 keeps it in ``typer.exceptions``,
    not in its click copy's ``exceptions`` module; older versions use click's."""
    try:
        from typer.exceptions import Abort
    except ImportError:
        from click.exceptions import Abort
    return Abort


def main(argv: list[str] | None = None) -> int:
    from audioscale.cli import session
    from audioscale.errors import AudioscaleError

    ex = _click_exceptions()
    abort = _abort_exception()
    session.log_path = session.signal_received = None  # set by a study command's session
    try:
        # non-standalone typer returns the exit code of a typer.Exit (130 for Ctrl-C)
        code = app(args=argv, prog_name="audioscale", standalone_mode=False)
    except AudioscaleError as e:
        return _fail(e, e)
    except ex.ClickException as e:  # usage errors: unknown command, bad option value
        e.show()
        return e.exit_code
    except abort as e:
        if isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
            return _interrupted(session.signal_received)
        return 1
    except KeyboardInterrupt:
        return _interrupted(session.signal_received)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except Exception as e:  # an OS fault (disk full, permissions, ...) is one line too
        from audioscale.errors import RERUN, StorageError, storage_error

        study = session.log_path and str(session.log_path.parent)
        fault = storage_error(e, study)  # an error that names no file: the study's
        if fault is None and isinstance(e, OSError):  # a library's OSError with no errno
            text = " ".join(str(e).split()) or type(e).__name__
            fault = StorageError(e.filename or study or "?", text, f"fix the cause and {RERUN}")
        if fault is None:
            raise
        return _fail(fault, e)
    if code == 130:
        return _interrupted(session.signal_received)
    return code if isinstance(code, int) else 0


def _fail(err: BaseException, cause: BaseException) -> int:
    """One line on stderr, exit 2; the traceback of ``cause`` into the study's log."""
    from audioscale.cli.session import log_traceback

    print(f"audioscale: error: {err}", file=sys.stderr)
    log_traceback(cause)
    return 2


def _interrupted(signum: int | None) -> int:
    """Ctrl-C or SIGTERM: one line; exit 130 (SIGINT) or 143 (SIGTERM)."""
    print("audioscale: interrupted: rerun the same command to resume", file=sys.stderr)
    return 128 + (signum or 2)


if __name__ == "__main__":
    sys.exit(main())
