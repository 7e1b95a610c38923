"""Named model sizes (the size ladder) and resolution of a ModelConfig.

Widths double roughly every two rungs; head width is 32 for the small rungs and 64 from
``tiny`` up (as ViT-S/B and Dasheng). ``base`` is Dasheng-base (Dinkel et al., 2024:
encoder 768 wide, 12 deep, 12 heads; decoder 512/8/16), ``large`` is one rung above
(1024/24/16, as ViT-L / MAE-large, with MAE's 512/8/16 decoder).

Decoders are lighter than encoders: width ``max(64, w/2)`` rounded to a multiple of 32,
head width 32, depth ``clamp(depth // 2, 1, 8)`` (MAE, He et al. 2022, shows a shallow
narrow decoder suffices). The same rule fills the decoder when ``preset`` is null.

The conformer family puts mask tokens into the encoder, so the encoder already does the
inpainting; its decoder defaults to one block (a light head, as in SimMIM/BEiT-style
in-place masking) unless ``decoder_depth`` is set explicitly.
"""

from __future__ import annotations

from audioscale.config import ModelConfig
from audioscale.errors import ConfigError


def _dec(width: int, depth: int) -> dict:
    dw = max(64, 32 * round(width / 64))
    return {
        "decoder_width": dw,
        "decoder_depth": min(8, max(1, depth // 2)),
        "decoder_heads": dw // 32,
    }


def _rung(width: int, depth: int, heads: int, **decoder) -> dict:
    out = {"width": width, "depth": depth, "heads": heads, **_dec(width, depth)}
    out.update(decoder)
    return out


# the fields a size sets (a rung of the ladder)
SIZE_KEYS = ("width", "depth", "heads", "decoder_width", "decoder_depth", "decoder_heads")

# name -> width, depth, heads, decoder_width, decoder_depth, decoder_heads
SIZE_PRESETS: dict[str, dict] = {
    "atto": _rung(64, 2, 2),
    "femto": _rung(96, 3, 3),
    "pico": _rung(128, 4, 4),
    "nano": _rung(192, 4, 4),
    "micro": _rung(256, 6, 4),
    "tiny": _rung(384, 6, 6),
    "small": _rung(512, 8, 8),
    "medium": _rung(640, 10, 10),
    "base": _rung(768, 12, 12, decoder_width=512, decoder_depth=8, decoder_heads=16),
    "large": _rung(1024, 24, 16, decoder_width=512, decoder_depth=8, decoder_heads=16),
}


def resolve(cfg: ModelConfig) -> ModelConfig:
    """Return a copy of ``cfg`` with width/depth/heads/decoder_* all filled.

    Explicit values win over the preset, field by field (an explicit width keeps the
    preset's decoder). ``preset: null`` needs width, depth and heads; the decoder then
    follows the rule in the module docstring. Raises ConfigError for an
    unknown preset, a width not divisible by its heads, or an even conv kernel.
    """
    if cfg.preset is None:
        for key in ("width", "depth", "heads"):
            if getattr(cfg, key) is None:
                raise ConfigError(f"model.{key}", "required when model.preset is null")
        base = {"width": cfg.width, "depth": cfg.depth, "heads": cfg.heads}
        base.update(_dec(cfg.width, cfg.depth))
    elif cfg.preset not in SIZE_PRESETS:
        names = ", ".join(SIZE_PRESETS)
        raise ConfigError("model.preset", f"unknown preset {cfg.preset!r}; choose one of: {names}")
    else:
        base = dict(SIZE_PRESETS[cfg.preset])
    out = {k: v if getattr(cfg, k) is None else getattr(cfg, k) for k, v in base.items()}
    if cfg.decoder_width is not None and cfg.decoder_heads is None:
        out["decoder_heads"] = max(1, cfg.decoder_width // 32)
    if cfg.family == "conformer" and cfg.decoder_depth is None:
        out["decoder_depth"] = 1
    if out["width"] % out["heads"]:
        raise ConfigError("model.heads", f"width {out['width']} is not divisible by {out['heads']}")
    if out["decoder_width"] % out["decoder_heads"]:
        raise ConfigError(
            "model.decoder_heads",
            f"decoder_width {out['decoder_width']} is not divisible by {out['decoder_heads']}",
        )
    step = 4 if cfg.patch == "square" else 2  # sin-cos tables (posemb.py)
    for key in ("width", "decoder_width"):
        if out[key] % step:
            raise ConfigError(f"model.{key}", f"must be divisible by {step} for sin-cos positions")
    if cfg.conv_kernel % 2 == 0:
        raise ConfigError("model.conv_kernel", f"must be odd, got {cfg.conv_kernel}")
    return cfg.model_copy(update=out)
