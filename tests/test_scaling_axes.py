"""Leave-one-axis-out and per-axis residuals on synthetic studies with known answers."""

import numpy as np

from audioscale.scaling.axes import axis_residuals, base_values, leave_one_axis_out, varies


def _rows(shift_mask: float = 0.0, seed: int = 0) -> list[dict]:
    """Runs on suite = 0.2 * rankme^0.3 (tiny noise); mask-0.9 runs shifted by shift_mask."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (w, d) in enumerate([(64, 2), (96, 3), (128, 4)] * 3):
        for mask in (0.75, 0.75, 0.9):
            r = float(rng.uniform(10, 60))
            suite = 0.2 * r**0.3 * (1 + rng.normal(0, 0.002)) + (shift_mask if mask == 0.9 else 0)
            rows.append(
                {
                    "run_id": f"r{i}-{mask}-{len(rows)}",
                    "width": w,
                    "depth": d,
                    "data_hours": None,
                    "examples_seen": 8000.0 * (1 + i // 3),
                    "clip_seconds": 1.0,
                    "mask_ratio": mask,
                    "family": "vit",
                    "patch": "time",
                    "rankme": r,
                    "suite": suite,
                }
            )
    return rows


def test_base_is_the_most_common_value_and_varies_marks_the_others():
    rows = _rows()
    base = base_values(rows)
    assert base["mask_ratio"] == 0.75 and base["family"] == "vit" and base["data_hours"] is None
    assert base["width"] == 64.0  # three-way tie: the smallest
    v = varies(rows, base)
    assert v["mask ratio"].sum() == 9 and v["architecture"].sum() == 0
    assert v["width"].sum() == 18 and (v["width"] == v["depth"]).all()


def test_an_axis_on_the_law_is_absorbed_and_a_shifted_one_breaks_it():
    ok = leave_one_axis_out(_rows(0.0), n_resamples=200)["axes"]
    assert ok["mask ratio"]["verdict"] == "the law absorbs this axis"
    assert ok["mask ratio"]["mae"] < 0.005 and ok["mask ratio"]["n_vary"] == 9
    assert ok["architecture"]["verdict"] == "not tested"
    assert ok["clip length"]["reason"] == "no run varies it"
    bad = leave_one_axis_out(_rows(0.05), n_resamples=200)["axes"]["mask ratio"]
    assert bad["verdict"] == "this axis breaks it"
    assert 0.045 < bad["mae"] < 0.055
    assert bad["inside_interval"] == 0  # every shifted run lies outside its interval
    res = axis_residuals(_rows(0.05))
    assert res["mask ratio"]["mean_log_residual"] > 0 > res["mask ratio"]["base_mean_log_residual"]


def test_clip_cut_to_whole_patches_is_not_a_clip_length_change():
    rows = _rows()
    rows[0]["clip_seconds"] = 0.96  # 1 s cut to 16 x 16 patches: the patch axis, not clip
    rows[1]["clip_seconds"] = 2.0
    v = varies(rows, base_values(rows))
    assert v["clip length"].tolist() == [False, True] + [False] * (len(rows) - 2)
