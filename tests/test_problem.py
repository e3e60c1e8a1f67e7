import math
from dataclasses import replace

import pytest

from nas.evolve.problem import Problem
from nas.genome.grammar import parse_genome
from nas.genome.space import load_space

TINY = load_space("tiny")
BIG = parse_genome("conv_k3_c16_s1_relu_bn | conv_k3_c16_s1_relu_bn | gap")  # 11.3 MFLOPs, 2,631 parameters
SMALL = parse_genome("conv_k3_c4_s2_relu_bn | gap")


def test_caps_come_from_the_space_unless_the_run_sets_its_own():
    assert Problem.create(replace(TINY, max_mflops=250), "acc,params").caps == {"flops": 250e6}
    assert Problem.create(replace(TINY, max_mflops=250), "acc,params", max_mflops=1).caps == {"flops": 1e6}
    assert Problem.create(TINY, "acc,params", max_params=5e4).caps == {"params": 5e4}
    assert Problem.create(TINY, "acc,params").caps == {}
    with pytest.raises(ValueError, match="caps are known before training"):
        Problem(TINY, (), {"energy_mj": 1.0})
    with pytest.raises(ValueError, match="a latency cap needs the latency known before training"):
        Problem(TINY, (), {"latency_ms": 1.0})
    with pytest.raises(ValueError, match="caps must be positive"):
        Problem(TINY, (), {"flops": 0})


def test_over_the_caps_means_not_admitted_and_says_why_in_the_users_units():
    problem = Problem.create(TINY, "acc,params", max_mflops=1, max_params=1000)
    costs = problem.costs(BIG)
    assert costs["flops"] > 1e6 and costs["params"] > 1000 and not problem.admits(BIG) and problem.admits(SMALL)
    assert problem.rejection(BIG, costs) == (
        "over budget: 11.3 MFLOPs, over the run's budget of 1 MFLOPs; 2,631 parameters, over the run's budget "
        "of 1,000 parameters"
    )
    assert problem.violation(costs) == pytest.approx(costs["flops"] / 1e6 - 1 + costs["params"] / 1000 - 1)
    assert problem.violation(problem.costs(SMALL)) == 0 and problem.violation(None) == math.inf


def test_costs_are_counted_once_per_network():
    calls = []
    problem = Problem(TINY, (), {"flops": 1e6}, lambda g: calls.append(g) or {"flops": 5.0, "params": 1})
    assert problem.admits(SMALL) and problem.admits(SMALL) and problem.costs(SMALL) == {"flops": 5.0, "params": 1}
    assert calls == [SMALL]


def test_an_evaluation_carries_objectives_by_name_worst_when_failed():
    problem = Problem.create(TINY, "acc,params,latency", max_mflops=1)
    ok = problem.evaluation(SMALL, {"status": "ok", "val_acc": 0.5, "params": 100, "flops": 1e5, "latency_ms": 0.1})
    assert ok.objectives == {"acc": 0.5, "params": 100, "latency": 0.1} and ok.ok and ok.feasible
    failed = problem.evaluation(SMALL, {"status": "failed", "params": 100, "flops": 1e5})
    assert failed.objectives == {"acc": 0.0, "params": math.inf, "latency": math.inf} and not failed.ok
    over = problem.evaluation(BIG, {"status": "failed", "params": 2631, "flops": 11.3e6})
    assert over.violation == pytest.approx(10.3) and not over.feasible


def test_with_a_latency_table_latency_is_a_cost_known_before_training_and_may_be_capped():
    predicted = {BIG.key: 0.9, SMALL.key: 0.2}
    problem = Problem.create(TINY, "acc,params,latency", max_latency_ms=0.5, latency_fn=lambda g: predicted[g.key])
    assert problem.admits(SMALL) and not problem.admits(BIG)
    assert problem.rejection(BIG, problem.costs(BIG)) == (
        "over budget: 0.9 ms (predicted), over the run's budget of 0.5 ms (predicted)"
    )
    uncapped = Problem.create(TINY, "acc,params,latency", latency_fn=lambda g: predicted[g.key])
    assert "latency_ms" not in uncapped.costs(BIG) and uncapped.costs(BIG, latency=True)["latency_ms"] == 0.9
