"""Shared helpers (audioscale.utils, audio.frames, embed.base cutting): one home each,
with known answers."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audioscale.audio.frames import frames_for, frames_for_seconds
from audioscale.config import FrontendConfig
from audioscale.embed.base import cut_pieces, piece_spans
from audioscale.utils import (
    atomic_open,
    atomic_path,
    atomic_write_text,
    finite_or_none,
    float_or_nan,
    nan_to_none,
    ordered_map,
)

SRC = Path(__file__).resolve().parent.parent / "src" / "audioscale"
# files exempt from the one-home checks below (data/demo.py, once exempt, is the
# data/demo/ package now, which writes through data.taskwrite like every importer)
NOT_OURS = {"data/synth.py"}


def test_exemptions_name_files_that_exist():
    """An exemption for a moved file silently exempts nothing: every entry must exist."""
    assert all((SRC / rel).is_file() for rel in NOT_OURS), NOT_OURS


def _sources():
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC).as_posix()
        if rel not in NOT_OURS:
            yield rel, p.read_text(encoding="utf-8")


def test_frame_count_formula_has_one_home():
    pat = re.compile(r"1 \+ [^\n]*//\s*[\w.]*hop")
    code = re.compile(r"^\s*[^\s`#\"'][^`]*$")  # a code line, not a docstring mention
    found = [
        f"{rel}:{i}"
        for rel, text in _sources()
        if rel != "audio/frames.py"
        for i, line in enumerate(text.splitlines(), 1)
        if pat.search(line) and code.match(line)
    ]
    assert not found, found


def test_atomic_writers_have_one_home():
    found = [rel for rel, text in _sources() if "os.replace(" in text and rel != "utils.py"]
    assert not found, found


def test_frames_for_scalars_arrays_tensors():
    fe = FrontendConfig()
    assert frames_for(8000, fe) == 51 and isinstance(frames_for(np.int64(8000), fe), int)
    assert frames_for(0, fe) == 1
    assert frames_for_seconds(10.24, fe) == 1 + 163840 // 160
    np.testing.assert_array_equal(frames_for(np.array([0, 159, 160]), fe), [1, 1, 2])
    assert frames_for(torch.tensor([320, 8000]), fe).tolist() == [3, 51]


def test_finite_or_none_and_reverse():
    assert [finite_or_none(v) for v in (1, 2.5, "3", None, math.nan, math.inf, "x")] == [
        1.0, 2.5, 3.0, None, None, None, None,
    ]  # fmt: skip
    assert finite_or_none(np.float32(0.5)) == 0.5
    assert math.isnan(float_or_nan(None)) and math.isnan(float_or_nan("x"))
    assert float_or_nan("2") == 2.0 and math.isinf(float_or_nan(math.inf))
    obj = {"a": [1.0, math.nan, (math.inf, 2)], "b": {"c": np.float64("nan")}, "d": "s"}
    assert nan_to_none(obj) == {"a": [1.0, None, [None, 2]], "b": {"c": None}, "d": "s"}


def test_atomic_open_and_path(tmp_path):
    target = tmp_path / "sub" / "x.bin"
    with atomic_open(target) as f:
        f.write(b"abc")
        assert not target.exists()  # published only at the end
    assert target.read_bytes() == b"abc"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"abc"  # the old file, never half of the new one
    with atomic_open(tmp_path / "y.npy") as f:
        np.save(f, np.arange(3))
    assert np.load(tmp_path / "y.npy").tolist() == [0, 1, 2]
    with atomic_path(tmp_path / "z.bin") as tmp:
        assert tmp.name.startswith(".z.bin.") and tmp.suffix == ".tmp"  # never globbed
        tmp.write_bytes(b"z")
    assert (tmp_path / "z.bin").read_bytes() == b"z"
    atomic_write_text(tmp_path / "t.txt", "é")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é"
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []
    with pytest.raises(ValueError):
        with atomic_open(target, "ab"):
            pass


def test_ordered_map_keeps_order_and_bounds_what_is_in_flight():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow(x):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.002 * (x % 3))
        with lock:
            state["now"] -= 1
        return x * x

    assert list(ordered_map(slow, range(40), workers=3, ahead=4)) == [x * x for x in range(40)]
    assert state["max"] <= 3
    assert list(ordered_map(slow, [], workers=2)) == []
    assert list(ordered_map(lambda x: -x, [1, 2], workers=1)) == [-1, -2]


@pytest.mark.parametrize(
    "n, max_len, min_len, spans",
    [
        (10, 4, 2, [(0, 4), (4, 4), (8, 2)]),
        (9, 4, 2, [(0, 4), (4, 4)]),  # trailing piece of 1 < min_len: dropped
        (1, 4, 2, [(0, 1)]),  # whole clip shorter than min_len: one piece, padded
        (7, None, 2, [(0, 7)]),
        (8, 8, 0, [(0, 8)]),
    ],
)
def test_piece_spans(n, max_len, min_len, spans):
    assert piece_spans(n, max_len, min_len) == spans


def test_cut_pieces_pads_only_a_short_first_piece():
    x = torch.arange(9.0)[None]
    assert [p.shape[-1] for p in cut_pieces(x, 4, 2)] == [4, 4]
    (p,) = cut_pieces(torch.ones(1, 1), 4, 3, pad_value=-100.0)
    assert p.tolist() == [[1.0, -100.0, -100.0]]
