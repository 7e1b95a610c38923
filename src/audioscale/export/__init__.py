"""Our encoders in the field's own evaluation APIs, so users can check our numbers there.

- ``audioscale.export.hear``: the HEAR 2021 common API (Turian et al., 2022, "HEAR:
  Holistic Evaluation of Audio Representations", PMLR 176) — pass the module name to
  ``hear-validator`` / hear-eval-kit with ``-m RUN_DIR``.
- ``audioscale.export.xares``: the X-ARES encoder contract (``AudioscaleEncoder``, checked
  by ``xares.audio_encoder_checker.check_audio_encoder``).

Both share ``common.encode``, which embeds a batch exactly as ``embed.extract`` does, so
a clip's scene / mean embedding equals what ``audioscale probe`` and ``rankme`` use.
Nothing is imported here: each submodule is imported on its own.
"""
