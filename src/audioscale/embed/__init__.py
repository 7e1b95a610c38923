"""Embeddings: the ``Encoder`` interface, our encoders and baselines, external adapters,
the checker, the registry (``get_encoder``) and batched, cached extraction.

``hf`` (transformers) is imported only when an ``hf:`` encoder is requested. The
function ``extract`` is not re-exported here: it would shadow the submodule
``audioscale.embed.extract``."""

from audioscale.embed.base import Encoder
from audioscale.embed.checker import check_encoder
from audioscale.embed.extract import Extraction, embed_clips, iter_frames
from audioscale.embed.registry import get_encoder

__all__ = [
    "Encoder",
    "Extraction",
    "check_encoder",
    "embed_clips",
    "get_encoder",
    "iter_frames",
]
