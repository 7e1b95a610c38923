"""Typed configs: YAML + overrides, and one-line errors that name the key."""

from __future__ import annotations

import pytest

from audioscale.config import RunConfig, apply_overrides, load_config, parse_override
from audioscale.errors import ConfigError


def test_override_parses_yaml_values():
    assert parse_override("train.lr=1e-3") == (["train", "lr"], 1e-3)
    assert parse_override("eval.tasks=[a, b]") == (["eval", "tasks"], ["a", "b"])
    assert parse_override("data.hours=null") == (["data", "hours"], None)


def test_overrides_nest_and_do_not_mutate():
    base = {"model": {"width": 64}}
    out = apply_overrides(base, ["model.depth=3", "train.steps=5"])
    assert out == {"model": {"width": 64, "depth": 3}, "train": {"steps": 5}}
    assert base == {"model": {"width": 64}}


def test_load_config_from_yaml_with_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  preset: atto\ntrain:\n  steps: 10\n")
    cfg = load_config(p, ["train.batch_size=8"])
    assert isinstance(cfg, RunConfig)
    assert cfg.model.preset == "atto" and cfg.train.steps == 10 and cfg.train.batch_size == 8


@pytest.mark.parametrize(
    "overrides, key, reason",
    [
        (["model.widht=3"], "model.widht", "unknown key"),
        (["train.lr=fast"], "train.lr", "valid number"),
        (["model.mask_ratio=1.5"], "model.mask_ratio", "less than 1"),
        (["frontend.f_max=9000"], "frontend", "Nyquist"),
        (["model.patch=square", "frontend.n_mels=40"], "<root>", "divisible by 16"),
        (["train.steps=5", "train.hours=1"], "train", "one budget"),
    ],
)
def test_bad_config_names_key_and_reason(overrides, key, reason):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    msg = str(e.value)
    assert f"'{key}'" in msg and reason in msg and "\n" not in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_run_hash_ignores_name_and_tracks_content():
    a = load_config(None, ["name=a"])
    b = load_config(None, ["name=b"])
    c = load_config(None, ["train.seed=1"])
    assert a.run_hash() == b.run_hash() != c.run_hash()


def test_example_configs_in_the_repo_are_valid():
    from pathlib import Path

    from audioscale.sweep.spec import load_sweep

    root = Path(__file__).resolve().parents[1] / "configs"
    cfg = load_config(root / "pretrain.yaml")
    assert cfg.model.preset == "femto" and cfg.data.hours == 0.5
    sweep = load_sweep(root / "sweep-example.yaml")
    assert len([j for j in sweep.jobs if j.kind == "trained"]) == 10
