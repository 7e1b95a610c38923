"""Probes on frozen clip embeddings (linear, kNN), task metrics and suite aggregation."""

from audioscale.probe.knn import knn_probe
from audioscale.probe.linear import linear_probe
from audioscale.probe.metrics import accuracy, average_precision, mean_average_precision
from audioscale.probe.suite import SuiteResult, evaluate, evaluate_embeddings

__all__ = [
    "SuiteResult",
    "accuracy",
    "average_precision",
    "evaluate",
    "evaluate_embeddings",
    "knn_probe",
    "linear_probe",
    "mean_average_precision",
]
