"""Label-free spectral metrics of embeddings: RankMe, alpha-ReQ, NESum, stable rank,
participation ratio (one spectrum, SVD or streaming Gram route), and ``measure`` for an
encoder on a pool of clips.

``audioscale.metrics.rankme`` and ``audioscale.metrics.measure`` are the functions
(the pinned estimator and ``measure`` of docs/ARCHITECTURE.md); the modules of the same
names are reached with ``from audioscale.metrics.rankme import ...`` /
``from audioscale.metrics.measure import ...``. Nothing here imports the embed stage
until ``measure`` runs.
"""

from audioscale.metrics.gram import GramAccumulator
from audioscale.metrics.measure import measure, measure_embeddings
from audioscale.metrics.rankme import EPS, rankme
from audioscale.metrics.spectral import SpectralResult, spectrum_metrics

__all__ = [
    "EPS",
    "GramAccumulator",
    "SpectralResult",
    "measure",
    "measure_embeddings",
    "rankme",
    "spectrum_metrics",
]
