"""A run folder's JSON markers (``eval/*.json``, ``result.json``, ``done.json``): read as
written by ``utils.atomic_save_json``; one that does not parse is corrupt."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from audioscale.errors import CorruptArtefactError


def load_marker(path: Path) -> Any:
    """A json file of the run folder; one that does not parse is a CorruptArtefactError."""
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CorruptArtefactError(path, f"not valid JSON ({e})") from None


def read_marker(path: Path) -> Any | None:
    """A stage marker (or result.json), or None when absent or corrupt (a corrupt one
    is deleted: its stage runs again)."""
    if not path.is_file():
        return None
    try:
        return load_marker(path)
    except CorruptArtefactError as e:
        print(f"audioscale: {e.path}: {e.reason}; redoing that stage", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
