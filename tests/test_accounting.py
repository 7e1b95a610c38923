"""Parameter counts and analytic FLOPs against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from audioscale.config import FrontendConfig, ModelConfig
from audioscale.models import build_mae
from audioscale.models.accounting import (
    count_params,
    forward_flops_per_example,
    pretrain_forward_flops,
    tokens_per_example,
    train_flops_per_example,
)

torch.set_num_threads(1)

CASES = [(f, p, nm) for f in ("vit", "conformer") for p, nm in (("time", 64), ("square", 128))]


def counted(fn) -> tuple[float, dict]:
    """FLOPs of fn() as FlopCounterMode sees them; the math SDPA backend decomposes
    attention into matmuls the counter knows (the CPU flash kernel is not registered)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops()), fc.get_flop_counts()["Global"]


def setup(family, patch, n_mels, preset="pico", **kw):
    torch.manual_seed(0)
    mc = ModelConfig(family=family, preset=preset, patch=patch, **kw)
    fe = FrontendConfig(n_mels=n_mels)
    return mc, fe, build_mae(mc, fe)


@pytest.mark.parametrize("family,patch,n_mels", CASES)
def test_forward_flops_match_counter(family, patch, n_mels):
    mc, fe, m = setup(family, patch, n_mels)
    b, secs = 2, 2.0
    x = torch.randn(b, n_mels, 1 + int(secs * 16000) // 160)
    got, _ = counted(lambda: m(x))
    want = pretrain_forward_flops(mc, fe, secs)
    assert got / b == pytest.approx(want, rel=0.02)
    got_enc, _ = counted(lambda: m.encoder.forward_features(x))
    assert got_enc / b == pytest.approx(forward_flops_per_example(mc, fe, secs), rel=0.02)


@pytest.mark.parametrize("family,patch,n_mels", CASES)
def test_train_flops_match_counter(family, patch, n_mels):
    mc, fe, m = setup(family, patch, n_mels, mask_ratio=0.6)
    b, secs = 2, 1.5
    x = torch.randn(b, n_mels, 1 + int(secs * 16000) // 160)
    got, ops = counted(lambda: m(x).loss.backward())
    conv_bwd = sum(v for k, v in ops.items() if "convolution_backward" in str(k))
    if conv_bwd:
        # FlopCounterMode counts a grouped (depthwise) conv's backward as if it were
        # ungrouped (x groups); the true backward is 2x its forward.
        conv_fwd = sum(v for k, v in ops.items() if str(k).endswith("convolution"))
        got = got - conv_bwd + 2 * conv_fwd
    want = train_flops_per_example(mc, fe, secs)
    # 3x forward over-counts the patch projection's input gradient, which is never formed
    assert got / b == pytest.approx(want, rel=0.03)
    assert got / b <= want


def test_tokens_and_flop_properties():
    fe = FrontendConfig()
    vit = ModelConfig(preset="base")
    assert tokens_per_example(vit, fe, 10.24) == (256, 64)
    assert tokens_per_example(vit, fe, 2.0) == (50, 12)
    sq = ModelConfig(preset="base", patch="square")
    assert tokens_per_example(sq, FrontendConfig(n_mels=128), 10.24) == (512, 128)
    # less masking -> more encoder tokens -> more FLOPs; conformer encodes every token
    lo = train_flops_per_example(vit.model_copy(update={"mask_ratio": 0.5}), fe, 10.0)
    assert lo > train_flops_per_example(vit, fe, 10.0)
    conf = ModelConfig(preset="base", family="conformer")
    assert forward_flops_per_example(conf, fe, 10.0) > forward_flops_per_example(vit, fe, 10.0)
    # Dasheng-base-like pretraining example (10 s): the anchor script's formula gives
    # 3 * (12 * 64 * (24 * 768^2 + 4 * 64 * 768) + 8 * 252 * (24 * 512^2 + 4 * 252 * 512))
    # for 63 of 252 visible tokens at 1008 frames; ours adds patch embed / head / projections.
    anchor = 3 * (12 * 63 * (24 * 768**2 + 4 * 63 * 768) + 8 * 252 * (24 * 512**2 + 4 * 252 * 512))
    ours = train_flops_per_example(vit, fe, 1007 * 160 / 16000)  # 1008 frames
    assert tokens_per_example(vit, fe, 1007 * 160 / 16000) == (252, 63)
    assert 1.0 < ours / anchor < 1.1


def test_count_params_definitions():
    _, _, vit = setup("vit", "time", 64, preset="atto")
    c = count_params(vit)
    assert c["total"] == sum(p.numel() for p in vit.parameters())
    assert c["encoder"] == sum(p.numel() for p in vit.encoder.parameters())
    assert c["encoder_nonembed"] == c["encoder"]  # ViT encoder: no mask token, fixed positions
    assert c["total"] - c["nonembed"] == vit.decoder.mask_token.numel()
    _, _, conf = setup("conformer", "time", 64, preset="atto")
    c = count_params(conf)
    assert c["encoder"] - c["encoder_nonembed"] == conf.encoder.mask_token.numel() == 64
    # Kaplan's 12 d^2 per block: the encoder is close to it plus the patch projection
    d, depth = 768, 12
    _, _, base = setup("vit", "time", 64, preset="base")
    enc = count_params(base)["encoder_nonembed"]
    assert enc == pytest.approx(12 * d * d * depth + 256 * d, rel=0.01)
