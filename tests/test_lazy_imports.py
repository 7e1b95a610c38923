"""Import hygiene: light entry points stay free of torch, and a broken CLI command
module is an error, never a silently missing command."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip()


def test_models_package_imports_without_torch():
    out = _run(
        "import sys\n"
        "import audioscale.models as m\n"
        "import audioscale.sweep.runner\n"
        "from audioscale.config import ModelConfig\n"
        "from audioscale.models import accounting\n"
        "import audioscale.models.ladder as real\n"
        "assert m.SIZE_PRESETS is real.SIZE_PRESETS and m.resolve is real.resolve\n"
        "real.resolve(ModelConfig(preset='atto'))\n"
        "accounting.train_flops_per_example(ModelConfig(preset='atto'), None, 1.0)\n"
        "print('torch' in sys.modules)\n"
        "m.MAE\n"
        "print('torch' in sys.modules)\n"
    )
    assert out.splitlines() == ["False", "True"]


def test_models_unknown_name_is_attribute_error():
    import pytest

    import audioscale.models as m

    with pytest.raises(AttributeError, match="no_such_thing"):
        m.no_such_thing  # noqa: B018
    assert {"MAE", "SIZE_PRESETS", "build_mae", "count_params"} <= set(dir(m))


def test_broken_command_module_is_an_error(monkeypatch):
    import importlib

    import pytest

    import audioscale.cli as cli

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "audioscale.cli.fit":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(cli.CommandImportError, match=r"audioscale\.cli\.fit"):
        cli._register()

    def failing(name, *args, **kwargs):
        if name == "audioscale.cli.probe":
            raise ImportError("cannot import name 'gone' from 'audioscale.probe'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", failing)
    with pytest.raises(cli.CommandImportError, match="probe.*gone"):
        cli._register()
