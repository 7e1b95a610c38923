"""transformers adapters on tiny randomly initialised models saved locally (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from audioscale.embed.checker import check_encoder, check_signal  # noqa: E402
from audioscale.embed.registry import get_encoder  # noqa: E402
from audioscale.errors import AudioscaleError  # noqa: E402
from audioscale.probe.knn import knn_probe  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CONV = dict(
    conv_dim=(16, 16),
    conv_stride=(5, 64),
    conv_kernel=(10, 64),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def _save_w2v(kind: str, path):
    torch.manual_seed(0)
    t = transformers
    cfg_cls, model_cls = {
        "wav2vec2": (t.Wav2Vec2Config, t.Wav2Vec2Model),
        "hubert": (t.HubertConfig, t.HubertModel),
        "wavlm": (t.WavLMConfig, t.WavLMModel),
    }[kind]
    model_cls(cfg_cls(**TINY, **CONV)).save_pretrained(path)
    t.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)


def _save_whisper(path):
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=50,
        max_target_positions=16,
        vocab_size=64,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    transformers.WhisperModel(cfg).save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(path)


def _save_ast(path):
    torch.manual_seed(0)
    cfg = transformers.ASTConfig(**TINY, num_mel_bins=32, max_length=128)
    transformers.ASTModel(cfg).save_pretrained(path)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(path)


SAVERS = {
    "wav2vec2": lambda p: _save_w2v("wav2vec2", p),
    "hubert": lambda p: _save_w2v("hubert", p),
    "wavlm": lambda p: _save_w2v("wavlm", p),
    "whisper": _save_whisper,
    "ast": _save_ast,
}
HOPS = {"wav2vec2": 0.02, "hubert": 0.02, "wavlm": 0.02, "whisper": 0.02, "ast": 0.1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", list(SAVERS))
def test_adapter_loads_checks_and_probes(kind, tmp_path):
    path = tmp_path / kind
    SAVERS[kind](path)
    enc = get_encoder(f"hf:{path}")
    assert enc.dim == 32 and enc.n_layers == 2
    assert enc.hop_seconds == pytest.approx(HOPS[kind])
    assert check_encoder(enc) == []
    # identity is stable and follows the files
    ident = enc.identity()
    assert get_encoder(f"hf:{path}").identity() == ident
    # a probe on two separable synthetic classes (low vs high tone) through the adapter
    sr = enc.sample_rate
    t = np.arange(int(0.5 * sr)) / sr
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for i in range(24):
        f = 300.0 if i % 2 == 0 else 3000.0
        waves.append(np.sin(2 * np.pi * f * t * rng.uniform(0.95, 1.05)) * 0.5)
        labels.append(i % 2)
    x = torch.tensor(np.stack(waves), dtype=torch.float32)
    with torch.inference_mode():
        emb = enc.frames_long(x, [-1])[0].mean(1).numpy()
    y = np.array(labels)
    res = knn_probe(emb[:16], y[:16], emb[16:], y[16:], n_classes=2)
    assert res["score"] >= 0.75


def test_adapter_layers_differ_and_identity_changes(tmp_path):
    path = tmp_path / "w2v"
    _save_w2v("wav2vec2", path)
    enc = get_encoder(f"hf:{path}")
    wave = check_signal(enc.sample_rate, 1.0)
    with torch.inference_mode():
        l0, l1 = enc.frames(wave, [0, -1])
    assert l0.shape == l1.shape and not torch.allclose(l0, l1)
    before = enc.identity()
    (path / "config.json").write_text((path / "config.json").read_text() + "\n")
    assert get_encoder(f"hf:{path}").identity() != before


def test_adapter_errors_are_one_line(tmp_path):
    with pytest.raises(AudioscaleError, match="no config.json"):
        get_encoder(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(AudioscaleError, match="not one of"):
        get_encoder(f"hf:{tmp_path}")


def test_probe_cli_through_an_hf_adapter(tmp_path, capsys):
    """End to end: `audioscale probe --model hf:DIR` on a small synthetic task folder."""
    import json

    import soundfile as sf

    from audioscale.cli import main

    path = tmp_path / "w2v"
    _save_w2v("wav2vec2", path)
    task = tmp_path / "tones"
    (task / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,split"]
    for i in range(36):
        label = "low" if i % 2 else "high"
        f = (250.0 if label == "low" else 3500.0) * rng.uniform(0.95, 1.05)
        t = np.arange(int(rng.uniform(0.4, 0.7) * 16000)) / 16000
        sf.write(task / "audio" / f"{i}.wav", (0.4 * np.sin(2 * np.pi * f * t)).astype("f4"), 16000)
        lines.append(f"audio/{i}.wav,{label},{'train' if i < 24 else 'test'}")
    (task / "manifest.csv").write_text("\n".join(lines) + "\n")
    (task / "task.yaml").write_text("name: tones\ndomain: music\nmetric: accuracy\n")
    assert (
        main(["probe", "--model", f"hf:{path}", "--task", str(task), "--json", "--no-cache"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["encoder"]["kind"] == "external" and out["encoder"]["dim"] == 32
    assert out["tasks"]["tones"]["knn"]["score"] >= 0.75
    assert out["tasks"]["tones"]["linear"]["n_test"] == 12
