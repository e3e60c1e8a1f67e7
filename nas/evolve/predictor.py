"""A predictor of a network's accuracy from its genome and the costs known before training (the surrogate).

Features are read off the genome (depth, downsampling, widths, kernels, expansion, squeeze-excitation, the
head) and its costs (parameters, FLOPs), plus the epochs the accuracy was measured at, so that records of
early successive-halving rungs teach the predictor too; it predicts at the fidelity's full budget. The model
is scikit-learn's random forest: robust on tens to hundreds of points, no tuning, and its trees' spread
says how sure it is.
"""

from __future__ import annotations

import math

import numpy as np

from nas.genome.grammar import Genome, feature_shapes

FEATURES = (
    "blocks", "depth", "conv", "pool", "ir", "res", "downsamples", "final_size", "log_max_channels",
    "log_mean_channels", "kernel5", "mean_expansion", "se", "flat", "dense", "log_dense_units", "log_params",
    "log_flops", "epochs",
)  # fmt: skip


def features(genome: Genome, costs: dict, epochs: float, input_shape: tuple[int, int, int] = (1, 48, 48)) -> list:
    """One row of ``FEATURES``."""
    body = genome.body
    shapes = feature_shapes(genome, input_shape) or [tuple(input_shape)]
    channels = [getattr(g, "channels", 0) for g in body if hasattr(g, "channels")] or [input_shape[0]]
    kinds = [g.kind for g in body]
    expansions = [g.expansion for g in body if hasattr(g, "expansion")]
    head = genome.head
    return [
        len(body),
        sum(getattr(g, "repeats", 1) for g in body),
        *(kinds.count(k) for k in ("conv", "pool", "ir", "res")),
        sum(getattr(g, "stride", 2) == 2 for g in body),
        shapes[-1][1],
        math.log2(max(channels)),
        math.log2(sum(channels) / len(channels)),
        sum(getattr(g, "kernel", 3) == 5 for g in body),
        sum(expansions) / len(expansions) if expansions else 0.0,
        sum(bool(getattr(g, "se", False)) for g in body),
        float(genome.readout is not None and genome.readout.op == "flat"),
        len(head),
        math.log2(1 + sum(g.units for g in head)),
        math.log10(max(costs["params"], 1)),
        math.log10(max(costs["flops"], 1)),
        epochs,
    ]


class Predictor:
    """Random forest on ``features``; ``fit`` on evaluated networks, ``predict`` mean and spread."""

    def __init__(self, seed: int = 0, trees: int = 200) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.model = RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, random_state=seed, n_jobs=1)

    def fit(self, rows: list[list], accuracies: list[float]) -> Predictor:
        self.model.fit(np.asarray(rows, dtype=float), np.asarray(accuracies, dtype=float))
        return self

    def predict(self, rows: list[list]) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(rows, dtype=float)
        per_tree = np.stack([t.predict(x) for t in self.model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
