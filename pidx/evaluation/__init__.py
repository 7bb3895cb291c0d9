"""Evaluation: metrics, baselines, plots and reports."""

from ..training.metrics import accuracy, balanced_accuracy, classification_metrics, macro_auc

__all__ = ["accuracy", "balanced_accuracy", "classification_metrics", "macro_auc"]
