"""Models: ladder, patch geometry, positions, masking, loss, encoder interface, training."""

from __future__ import annotations

import pytest
import torch

from audioscale.config import FrontendConfig, ModelConfig
from audioscale.errors import ConfigError
from audioscale.models import SIZE_PRESETS, build_mae, resolve
from audioscale.models.patch import geometry, n_visible, patchify, unpatchify
from audioscale.models.posemb import sincos_table

torch.set_num_threads(1)

GEOMS = [("time", 64), ("square", 128)]
FAMILIES = ["vit", "conformer"]


def make(family="vit", patch="time", n_mels=64, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, preset="atto", patch=patch, **kw)
    return build_mae(cfg, FrontendConfig(n_mels=n_mels))


def mel_batch(b, n_mels, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n_mels, frames, generator=g) * 20 - 45


# --------------------------------------------------------------------------- ladder


def test_resolve_fills_every_field_and_explicit_wins():
    cfg = resolve(ModelConfig(preset="pico", depth=7))
    assert (cfg.width, cfg.depth, cfg.heads) == (128, 7, 4)
    for key in ("decoder_width", "decoder_depth", "decoder_heads"):
        assert getattr(cfg, key) == SIZE_PRESETS["pico"][key]
    base = resolve(ModelConfig(preset="base"))
    assert (base.width, base.depth, base.heads) == (768, 12, 12)
    assert (base.decoder_width, base.decoder_depth, base.decoder_heads) == (512, 8, 16)
    free = resolve(ModelConfig(preset=None, width=160, depth=3, heads=5))
    assert free.decoder_width % free.decoder_heads == 0 and free.decoder_depth >= 1
    assert resolve(ModelConfig(family="conformer", preset="base")).decoder_depth == 1
    for c in (cfg, base, free, ModelConfig(family="conformer", decoder_width=96)):
        once = resolve(c)
        assert resolve(once) == once  # the trainer and build_mae both resolve


def test_resolve_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.preset.*atto.*large"):
        resolve(ModelConfig(preset="gigantic"))
    with pytest.raises(ConfigError, match="model.heads"):
        resolve(ModelConfig(preset="pico", heads=3))
    with pytest.raises(ConfigError, match="model.width"):
        resolve(ModelConfig(preset=None, depth=2, heads=2))
    with pytest.raises(ConfigError, match="model.conv_kernel"):
        resolve(ModelConfig(conv_kernel=8))
    with pytest.raises(ConfigError, match="model.patch"):
        build_mae(ModelConfig(patch="square"), FrontendConfig(n_mels=40))


def test_preset_param_counts_increase():
    from audioscale.models.accounting import count_params

    sizes = []
    for name in list(SIZE_PRESETS)[:6]:  # atto .. tiny: fast to build
        sizes.append(count_params(build_mae(ModelConfig(preset=name)))["encoder_nonembed"])
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert 1e5 < sizes[0] < 1e6  # atto: a few hundred thousand parameters
    # the larger rungs, analytically: 12 d^2 per block dominates and must grow
    n = [SIZE_PRESETS[k]["depth"] * SIZE_PRESETS[k]["width"] ** 2 for k in SIZE_PRESETS]
    assert n == sorted(n)


# --------------------------------------------------------------------------- patches


@pytest.mark.parametrize("patch,n_mels", GEOMS)
def test_patchify_roundtrip_and_order(patch, n_mels):
    g = geometry(patch, n_mels)
    x = torch.randn(3, n_mels, 20 * g.patch_w)
    p = patchify(x, g)
    assert p.shape == (3, 20 * g.n_freq, g.patch_dim)
    assert torch.equal(unpatchify(p, g), x)
    # token t * n_freq + f holds frames [t*w, (t+1)*w) and mels [f*h, (f+1)*h)
    t, f = 7, g.n_freq - 1
    want = x[1, f * g.patch_h : (f + 1) * g.patch_h, t * g.patch_w : (t + 1) * g.patch_w]
    assert torch.equal(p[1, t * g.n_freq + f], want.reshape(-1))


def test_posemb_prefix_serves_shorter_clips():
    for nf, d in [(1, 64), (8, 64)]:
        long, short = sincos_table(100, nf, d), sincos_table(10, nf, d)
        assert torch.equal(long[: 10 * nf], short)
        assert torch.unique(long, dim=0).shape[0] == long.shape[0]  # every position distinct
    m = make(max_seconds=1.0)
    assert m.encoder.max_frames == 100
    assert m.encoder.forward_features(mel_batch(1, 64, 37))[0].shape == (1, 9, 64)
    m(mel_batch(1, 64, 101))  # exactly max_seconds: 101 frames, cut to 100
    with pytest.raises(ValueError, match="frames"):
        m(mel_batch(1, 64, 104))


# --------------------------------------------------------------------------- MAE


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("patch,n_mels", GEOMS)
def test_shapes(family, patch, n_mels):
    m = make(family, patch, n_mels)
    g = m.geom
    x = mel_batch(2, n_mels, 203)  # 203 frames: the remainder is dropped
    out = m(x)
    n_t = 203 // g.patch_w
    assert out.pred.shape == (2, n_t * g.n_freq, g.patch_dim)
    assert out.mask.shape == (2, n_t * g.n_freq) and out.loss.ndim == 0
    feats = m.encoder.forward_features(x, layers=[0, -1])
    assert [f.shape for f in feats] == [(2, n_t, 64)] * 2
    assert m.encoder.frames_per_token == g.patch_w and m.encoder.n_layers == 2
    assert m.encoder.dim == 64 and m.encoder.max_frames == 1024


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 0.9])
def test_mask_ratio_exact(ratio):
    m = make()
    out = m(mel_batch(4, 64, 200), mask_ratio=ratio)
    n = out.mask.shape[1]
    assert torch.all(out.mask.sum(1) == n - n_visible(n, ratio))
    assert n_visible(50, 0.75) == 12 and n_visible(10, 0.99) == 1
    if 0 < ratio:
        assert not torch.equal(out.mask[0], out.mask[1])  # per-example masks


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_only_on_masked_patches(family):
    m = make(family)
    x = mel_batch(2, 64, 120)
    out = m(x, generator=torch.Generator().manual_seed(1))
    out.pred.retain_grad()
    out.loss.backward()
    g = out.pred.grad.abs().sum(-1)
    assert torch.all(g[out.mask == 0] == 0) and torch.all(g[out.mask == 1] > 0)
    # the loss is MSE against per-patch normalised targets
    p = m.encoder.patches(x)
    t = (p - p.mean(-1, keepdim=True)) / (p.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    want = (((out.pred - t) ** 2).mean(-1) * out.mask).sum() / out.mask.sum()
    torch.testing.assert_close(out.loss, want)


def test_attention_matches_explicit_softmax_with_gradients():
    # Attention (fused qkv, unbind, SDPA) against softmax(q k^T / sqrt(d_h)) v written out
    # in float64 with the same weights, key-padding mask included. Outputs are O(1) sums
    # of ~8-25 float32 products: atol/rtol 1e-5 (~100 ulp); gradients the same.
    from audioscale.models.blocks import Attention

    torch.manual_seed(0)
    att = Attention(32, 4)
    x = torch.randn(3, 9, 32, requires_grad=True)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    y = att(x, mask)
    x64 = x.detach().double().requires_grad_()
    w, bias = att.qkv.weight.double(), att.qkv.bias.double()
    q, k, v = (x64 @ w.T + bias).view(3, 9, 3, 4, 8).permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(~mask, float("-inf")).softmax(-1)
    o = (a @ v).transpose(1, 2).reshape(3, 9, 32)
    want = o @ att.proj.weight.double().T + att.proj.bias.double()
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)
    g = torch.randn(3, 9, 32)
    y.backward(g)
    want.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)


def test_norm_pix_targets_match_mean_var_formula_with_gradients():
    # targets() is one layer_norm kernel (issue #23, CPU step); the reference is the MAE
    # formula it replaced, in float64. Patches of log-mel dB sit far from zero (offset
    # -45 dB), where a one-pass variance would lose digits; the Welford/two-pass kernels
    # both stay at float32 rounding: values of order 1 -> atol/rtol 1e-5 (~100 ulp), and
    # the same for the gradient through a random upstream weight.
    m = make()
    g = torch.Generator().manual_seed(2)
    p = (torch.randn(4, 25, 256, generator=g) * 20 - 45).requires_grad_()
    p64 = p.detach().double().requires_grad_()
    mean, var = p64.mean(-1, keepdim=True), p64.var(-1, unbiased=False, keepdim=True)
    want = (p64 - mean) / (var + 1e-6).sqrt()
    got = m.targets(p)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    w = torch.randn(4, 25, 256, generator=g)
    (got * w).sum().backward()
    (want * w.double()).sum().backward()
    torch.testing.assert_close(p.grad.double(), p64.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_determinism_and_seeded_masks(family):
    x = mel_batch(2, 64, 100)
    a, b = make(family, seed=3), make(family, seed=3)
    la = a(x, generator=torch.Generator().manual_seed(5))
    lb = b(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(la.loss, lb.loss) and torch.equal(la.mask, lb.mask)
    lc = a(x, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(la.mask, lc.mask)
    r1 = a.reconstruction_loss(x, torch.Generator().manual_seed(0))
    r2 = a.reconstruction_loss(x, torch.Generator().manual_seed(0))
    assert torch.equal(r1, r2) and not r1.requires_grad


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("patch,n_mels", GEOMS)
def test_gradient_reaches_every_parameter(family, patch, n_mels):
    m = make(family, patch, n_mels)
    m(mel_batch(2, n_mels, 96)).loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bf16_autocast_forward():
    m = make()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(mel_batch(2, 64, 80))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("family", FAMILIES)
def test_input_norm_batchnorm_option(family):
    """Default: no extra parameters or buffers (old checkpoints load strictly). batchnorm:
    per-mel-bin BatchNorm after the fixed affine, batch stats in training, running stats
    in eval (so embeddings do not depend on the batch), identity at init."""
    plain = make(family)
    bn = make(family, input_norm="batchnorm")
    assert set(bn.state_dict()) - set(plain.state_dict()) == {
        f"encoder.input_norm.{k}"
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert plain.encoder.input_norm is None and bn.encoder.input_norm.num_features == 64
    x = mel_batch(4, 64, 80)
    bn.eval()
    torch.testing.assert_close(  # fresh running stats (0, 1): identity up to eps
        bn.encoder.patches(x), plain.encoder.patches(x), atol=1e-4, rtol=1e-4
    )
    bn.train()
    bn(x).loss.backward()
    assert bn.encoder.input_norm.weight.grad is not None
    assert bn.encoder.input_norm.num_batches_tracked == 1
    bn.eval()
    one = bn.encoder.forward_features(x[:1])[0]
    torch.testing.assert_close(one, bn.encoder.forward_features(x)[0][:1], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- encoder


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_indexing(family):
    m = make(family, depth=3)
    x = mel_batch(1, 64, 40)
    a, b, c = m.encoder.forward_features(x, layers=[-1, 2, 0])
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(a.mean(-1), torch.zeros_like(a.mean(-1)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="layer"):
        m.encoder.forward_features(x, layers=[3])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("patch,n_mels", GEOMS)
def test_padding_lengths_match_unpadded(family, patch, n_mels):
    m = make(family, patch, n_mels)
    w = m.geom.patch_w
    x = mel_batch(2, n_mels, 12 * w)
    short = 7 * w
    padded = x.clone()
    padded[1, :, short:] = 0.0
    out = m.encoder.forward_features(padded, layers=[0, -1], lengths=[12 * w, short])
    ref = m.encoder.forward_features(x[1:, :, :short], layers=[0, -1])
    full = m.encoder.forward_features(x[:1], layers=[0, -1])
    for o, r, f in zip(out, ref, full, strict=True):
        torch.testing.assert_close(o[1, :7], r[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(o[0], f[0], atol=1e-5, rtol=1e-4)


def test_square_time_tokens_average_frequency_patches():
    m = make("vit", "square", 128)
    x = mel_batch(1, 128, 64)
    enc = m.encoder
    p = enc.patches(x)
    h = enc.run_blocks(enc.patch_embed(p) + enc.pos_embed[:, : p.shape[1]], [-1])[0]
    want = h.reshape(1, 4, enc.geom.n_freq, -1).mean(2)
    torch.testing.assert_close(enc(x), want)


def test_base_preset_is_dasheng_base_size():
    from audioscale.models.accounting import count_params

    torch.manual_seed(0)
    counts = count_params(build_mae(ModelConfig(preset="base")))
    assert 84e6 < counts["encoder"] < 87e6  # Dasheng-base: ~86 M
    assert counts["total"] > counts["encoder"]


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_preset_learns_fixed_batch(family):
    torch.manual_seed(0)
    m = make(family, seed=0)
    t = torch.arange(160, dtype=torch.float32)
    f = torch.arange(64, dtype=torch.float32)[:, None]
    # structured spectrogram: drifting harmonic stripes plus a little noise
    x = torch.stack([-45 + 25 * torch.sin(f / (3 + k) + t / (9 + 2 * k)) for k in range(8)])
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = m(x, generator=gen).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    # predicting each patch's mean gives exactly 1.0 on normalised targets: beat it clearly
    assert last < 0.85 and last < 0.7 * first, losses
