import math
from dataclasses import replace

import pytest

from nas.evolve.problem import Floor, Problem, accuracy_floor
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


def test_the_default_space_budgets_latency_at_1_ms_and_admits_cnn4_not_vgg():
    from nas.deploy.latency import LatencyTable, machine_table_path
    from nas.genome.space import load_baselines

    space = load_space("default")
    assert space.max_latency_ms == 1.0 and space.max_mflops is None
    table = LatencyTable(machine_table_path())  # the suite's fixed table (conftest)
    problem = Problem.create(space, "acc,params,latency", latency_fn=lambda g: table.predict(g))
    assert problem.caps == {"latency_ms": 1.0}
    baselines = {name: b.genome for name, b in load_baselines().items()}
    assert problem.admits(baselines["cnn4"]) and problem.admits(baselines["mini_xception"])
    assert not problem.admits(baselines["vgg"]) and not problem.admits(baselines["mobilenetv2_fer"])
    both = Problem.create(space, "acc,params", max_mflops=60, latency_fn=lambda g: table.predict(g))
    assert both.caps == {"flops": 60e6, "latency_ms": 1.0} and not both.admits(baselines["cnn4"])  # 66 MFLOPs


def test_the_floor_is_the_majority_rate_plus_the_margin_judged_once_enough_training_is_seen():
    counts = [10, 0, 10, 50, 20, 5, 5]  # 50 of 100 in the majority class
    floor = accuracy_floor(0.02, 2.0, counts, train_images=1000, all_train_images=1000, epochs=4)
    assert floor == Floor(0.52, 2)
    assert accuracy_floor(0.02, 2.0, counts, 500, 1000, 4).from_epoch == 4  # half of Training an epoch
    assert accuracy_floor(0.02, 2.0, counts, 200, 1000, 4) is None  # never 2 epochs' worth: no floor
    assert accuracy_floor(None, 2.0, counts, 1000, 1000, 4) is None  # runs made before the floor


def test_a_network_under_the_floor_is_infeasible_and_never_beats_a_feasible_one():
    from nas.evolve import objectives as objs

    problem = Problem.create(TINY, "acc,params,latency", floor=Floor(0.30, 2))
    record = {"status": "ok", "params": 100, "flops": 1e5, "latency_ms": 0.1}
    useless = problem.evaluation(SMALL, record | {"val_acc": 0.29, "epochs": 2})
    at_floor = problem.evaluation(SMALL, record | {"val_acc": 0.30, "epochs": 3})
    early = problem.evaluation(SMALL, record | {"val_acc": 0.29, "epochs": 1})  # not judged yet
    weak = problem.evaluation(BIG, record | {"val_acc": 0.31, "epochs": 2, "params": 10**7, "latency_ms": 50})
    assert not useless.feasible and not at_floor.feasible and not useless.ok
    assert useless.violation == pytest.approx(1e-6 + 0.01 / 0.30) and early.feasible and weak.feasible
    objectives = problem.objectives
    for infeasible in (useless, at_floor):  # worst everywhere: dominated by the weakest feasible network
        assert infeasible.objectives == {"acc": 0.0, "params": math.inf, "latency": math.inf}
        assert objs.dominates(weak.values(objectives), infeasible.values(objectives), objectives)
        ranked = objs.preference([infeasible.values(objectives), weak.values(objectives)], objectives)
        assert ranked == [1, 0]


def test_a_parameter_floor_is_the_users_to_set_and_smaller_networks_are_never_trained():
    assert "min_params" not in Problem.create(TINY, "acc,params").caps  # none by default
    problem = Problem.create(TINY, "acc,params", max_mflops=1, min_params=1000)
    small, big = problem.costs(SMALL), problem.costs(BIG)
    assert small["params"] < 1000 and not problem.admits(SMALL) and not problem.admits(BIG)
    assert problem.rejection(SMALL, small) == (
        f"{small['params']:,} parameters, under the run's minimum of 1,000 parameters"
    )
    assert problem.rejection(BIG, big) == "over budget: 11.3 MFLOPs, over the run's budget of 1 MFLOPs"
    assert problem.violation(small) == pytest.approx(1 - small["params"] / 1000)
    assert Problem.create(TINY, "acc,params", min_params=small["params"]).admits(SMALL)  # at the floor: allowed
