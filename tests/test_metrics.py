"""The figures every table reports, checked against values worked out by hand: classification metrics,
the hypervolume and the Pareto machinery, and the surrogate's predictor."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from nas.evolve import objectives as objs
from nas.evolve.predictor import FEATURES, Predictor, features
from nas.genome.grammar import parse_genome
from nas.training import metrics

ACC_PARAMS = objs.parse_objectives("acc,params")


def test_confusion_and_per_class_figures_match_a_hand_count():
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    cm = metrics.confusion(np.array(y_true), np.array(y_pred), 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    figures = metrics.per_class(cm)
    assert figures["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert figures["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0, 0.0])  # an absent class: 0, not NaN
    assert figures["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3, 0.0])
    summary = metrics.summary(np.array(y_true), np.array(y_pred), 4)
    # class 3 neither occurs nor is predicted: macro-F1 is over the other three, as scikit-learn counts it
    assert summary == pytest.approx({"acc": 4 / 6, "f1": (0.8 + 0.5 + 2 / 3) / 3})
    assert summary["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    predicted_only = metrics.summary(np.array([0, 0]), np.array([0, 3]), 4)  # predicted, never true: counts, as 0
    assert predicted_only["f1"] == pytest.approx(f1_score([0, 0], [0, 3], average="macro", zero_division=0))


def test_the_hypervolume_is_the_share_of_the_box_the_front_dominates():
    # acc normalised as (1 - acc) / (1 - 0.249); params as log10 between 1e4 (0) and 1e7 (1)
    one = {"status": "ok", "val_acc": 1 - 0.751 / 2, "params": 10**5.5}  # the point (0.5, 0.5)
    assert objs.hypervolume([one], ACC_PARAMS) == pytest.approx(0.25)
    two = {"status": "ok", "val_acc": 1 - 0.751 * 0.75, "params": 10**4.75}  # (0.75, 0.25)
    assert objs.hypervolume([one, two], ACC_PARAMS) == pytest.approx(0.25 + 0.25 * 0.25)
    worse = {"status": "ok", "val_acc": 0.1, "params": 1e8}  # past every bound: dominates nothing
    failed = {"status": "failed", "val_acc": 0.99, "params": 1}
    assert objs.hypervolume([one, two, worse, failed], ACC_PARAMS) == pytest.approx(0.3125)
    assert objs.hypervolume([], ACC_PARAMS) == 0.0


def test_the_front_keeps_the_non_dominated_and_preference_ranks_as_nsga2_survival():
    points = [(0.6, 1000), (0.5, 500), (0.55, 2000), (0.7, 5000), (0.5, 600)]
    assert objs.nondominated(points, ACC_PARAMS) == [True, True, False, True, False]
    # rank 0 is 0, 1, 3 (its extremes 1 and 3 first, by crowding), rank 1 is 2 and 4 (each dominated once)
    assert objs.preference(points, ACC_PARAMS) == [1, 3, 0, 2, 4]


def test_the_predictor_learns_a_monotone_trend_and_says_how_sure_it_is():
    genomes = [parse_genome(f"conv_k3_c{c}_s2_relu_bn | gap") for c in (4, 8, 16, 32, 64, 128)]
    rows = [features(g, {"params": 10 * c, "flops": 1000 * c}, 4) for g, c in zip(genomes, (4, 8, 16, 32, 64, 128))]
    assert len(rows[0]) == len(FEATURES)
    predictor = Predictor(seed=0).fit(rows, [0.3, 0.35, 0.4, 0.45, 0.5, 0.55])
    mean, spread = predictor.predict([rows[0], rows[-1]])
    assert mean[0] < mean[1] and (spread >= 0).all()
    again, _ = Predictor(seed=0).fit(rows, [0.3, 0.35, 0.4, 0.45, 0.5, 0.55]).predict([rows[0], rows[-1]])
    assert again.tolist() == mean.tolist()  # seeded: the same search ranks the same
