"""Classification metrics from a confusion matrix: accuracy, macro-F1, per-class figures."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predictions."""
    idx = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class; a class never predicted (or absent) scores 0, not NaN."""
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)}


def summary(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1; the mean is over the classes that occur (as a label or a prediction), as
    scikit-learn's ``f1_score(average="macro")`` takes it: a class a small split lacks does not count as 0."""
    cm = confusion(y_true, y_pred, num_classes)
    seen = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    f1 = float(per_class(cm)["f1"][seen].mean()) if seen.any() else 0.0
    return {"acc": float(np.trace(cm) / max(cm.sum(), 1)), "f1": f1}
