"""Shared fixtures. The small demo corpus is built once per session (under a minute)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory) -> Path:
    """The demo corpus at --size small, built once for the whole test session."""
    from audioscale.data.demo import build_demo

    out = tmp_path_factory.mktemp("demo_small")
    build_demo(out, size="small", seed=0, progress=False)
    return out


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny workloads run slower with more under load)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
