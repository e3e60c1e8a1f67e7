"""Evaluation strategies: successive halving's promotion, its exactness against scratch, and its resume."""

import logging
import re
import time

import pytest

from nas.evolve import objectives as objs
from nas.evolve import worker
from nas.evolve.evaluate import Evaluator, finalist_slowdown
from nas.evolve.fidelity import Fidelity
from nas.evolve.problem import Floor, Problem
from nas.evolve.strategies import Request, make_strategy
from nas.evolve.worker import EvalTask
from nas.genome.grammar import parse_genome
from nas.genome.space import load_space
from nas.rundir import Cache

TINY = load_space("tiny")
GENOMES = [
    "conv_k3_c8_s1_relu_bn | pool_max | gap",
    "conv_k3_c8_s2_relu_bn | gap | dense_u16_d0",
    "conv_k3_c16_s2_hardswish_bn | pool_avg | flat",
    "ir_k3_e2_c8_s2_r1 | gap",
    "pool_max | conv_k3_c4_s1_relu_bn | gap",
    "conv_k3_c4_s2_relu_bn | ir_k3_e1_c16_s1_r2_se | gap",
]
FID = Fidelity("two", train_images=140, epochs=2, batch_size=32)


class FakeEvaluator:
    """Records from a table; what halving asks for, rung by rung."""

    def __init__(self, table: dict[str, tuple[float, int]]) -> None:
        self.table, self.asked, self.dropped, self.cache = table, [], [], Cache()
        self.task = EvalTask("synthetic:70", Fidelity("f", 100, 4))

    def key_of(self, genome: str, until=None) -> str:
        return f"{genome}@{until}"

    def evaluate(self, jobs, on_record=None):
        self.asked.append([(j.genome, j.until) for j in jobs])
        return [{"genome": j.genome, "key": j.genome, "status": "ok", "val_acc": self.table[j.genome][0] * j.until / 4,
                 "params": self.table[j.genome][1], "epochs": j.until} for j in jobs]  # fmt: skip

    def drop_state(self, genome: str) -> None:
        self.dropped.append(genome)


def test_promotion_keeps_the_networks_non_dominated_at_the_rung():
    # accuracy, parameters: "tiny" is the least accurate, but nothing smaller is more accurate
    table = {"tiny": (0.20, 100), "big": (0.60, 10**6), "mid": (0.40, 10**4)}
    table |= {f"dominated{i}": (0.30, 10**5) for i in range(6)}
    ev = FakeEvaluator(table)
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, lambda g: {})
    halving = make_strategy("halving", ev, problem, rungs=(1, 4), eta=3)
    keys = list(table)  # the names stand in for genomes: the fake problem needs no network
    promoted = halving._promote(keys, {k: k for k in keys}, {k: ev.evaluate([_job(k, 1)])[0] for k in keys})
    assert len(promoted) == 3 and {"tiny", "big", "mid"} == set(promoted)


def _job(genome, until):
    return worker.Job(genome, until=until)


def test_rungs_must_end_at_the_fidelity_budget_and_eta_exceed_one():
    ev = FakeEvaluator({})
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, lambda g: {})
    with pytest.raises(ValueError, match="the last rung must be the fidelity's 4 epochs"):
        make_strategy("halving", ev, problem, rungs=(1, 2))
    with pytest.raises(ValueError, match="--eta must be > 1"):
        make_strategy("halving", ev, problem, rungs=(2, 4), eta=1)
    with pytest.raises(ValueError, match="--rungs: not an option of evaluation strategy 'scratch'"):
        make_strategy("scratch", ev, problem, rungs=(2, 4))


def test_default_rungs_are_three_quarters_of_the_schedule_then_all_of_it_and_the_estimate_counts_them():
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, lambda g: {})
    halving = make_strategy("halving", FakeEvaluator({}), problem)
    assert halving.rungs == (3, 4) and halving.epochs_per_network() == pytest.approx(3 + 1 / 3)
    assert make_strategy("halving", FakeEvaluator({}), problem, rungs=(1, 2, 4), eta=2).epochs_per_network() == 2
    assert make_strategy("scratch", FakeEvaluator({}), problem).epochs_per_network() == 4


def test_the_estimate_prices_a_finalist_at_the_budget_against_the_average_admitted_network():
    def costs(genome):  # made up: networks of an even number of blocks cost 2 MFLOPs, the others 8 (over the cap)
        return {"flops": 2e6 if len(genome.body) % 2 == 0 else 8e6, "params": 1.0}

    capped = Problem(TINY, objs.parse_objectives("acc,params"), {"flops": 4e6}, costs)
    ratio, why = finalist_slowdown(capped, samples=20)
    assert ratio == pytest.approx(2.0)  # the budget over the admitted networks' mean; over-budget ones left out
    assert why == " (finalists sit at the budget, 2.0x the 2 MFLOPs of the space's average network)"
    assert finalist_slowdown(Problem(TINY, objs.parse_objectives("acc,params"), {}, costs)) == (1.0, "")


@pytest.fixture
def task(synthetic_csv):
    return EvalTask(str(synthetic_csv), FID, seed=0)


def _halving(task, tmp_path, eta=3.0):
    ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"), state_dir=tmp_path / "states")
    problem = Problem.create(TINY, "acc,params")
    return make_strategy("halving", ev, problem, rungs=(1, 2), eta=eta), ev


def test_promoted_networks_end_exactly_as_scratch_training_and_states_are_cleaned_up(task, tmp_path):
    halving, ev = _halving(task, tmp_path)
    records = halving.evaluate([Request(parse_genome(g)) for g in GENOMES])
    scratch = {r["genome"]: r for r in Evaluator(task).evaluate(GENOMES)}
    full = [r for r in records if r["epochs"] == 2]
    assert len(full) == 2 and all(r["epochs"] == 1 for r in records if r not in full)  # ceil(6 / 3) promoted
    for r in full:
        assert (r["val_acc"], r["val_f1"], r["cache_key"]) == (
            scratch[r["genome"]]["val_acc"], scratch[r["genome"]]["val_f1"], scratch[r["genome"]]["cache_key"]
        )  # fmt: skip
    assert not list((tmp_path / "states").glob("*.pt"))


def test_a_generation_killed_mid_rung_resumes_without_training_anything_again(task, tmp_path, monkeypatch):
    uninterrupted = _halving(task, tmp_path / "clean")[0].evaluate([Request(parse_genome(g)) for g in GENOMES])
    real, calls = worker.train_candidate, []

    def dies_in_the_second_rung(genome, task, until=None, state=None, *rest):
        calls.append((genome, until, state is not None))
        if until == 2 and sum(c[1] == 2 for c in calls) == 2:
            raise KeyboardInterrupt  # the second promoted network, mid-training
        return real(genome, task, until, state, *rest)

    monkeypatch.setattr(worker, "train_candidate", dies_in_the_second_rung)
    with pytest.raises(KeyboardInterrupt):
        _halving(task, tmp_path / "run")[0].evaluate([Request(parse_genome(g)) for g in GENOMES])
    calls.clear()
    resumed = _halving(task, tmp_path / "run")[0].evaluate([Request(parse_genome(g)) for g in GENOMES])
    assert len(calls) == 1 and calls[0][1:] == (2, True)  # one network, its second epoch, from its kept state
    key = ("genome", "epochs", "val_acc", "val_f1", "status")
    assert [tuple(r[k] for k in key) for r in resumed] == [tuple(r[k] for k in key) for r in uninterrupted]


WSD = Fidelity("wsd", train_images=140, epochs=12, batch_size=32, scheduler="wsd", branch=0.25)


def test_on_a_continuable_schedule_rungs_stop_short_and_the_finalists_finish_their_own_training(
    synthetic_csv, tmp_path, monkeypatch
):
    task = EvalTask(str(synthetic_csv), WSD, seed=0)
    ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"), state_dir=tmp_path / "states")
    halving = make_strategy("halving", ev, Problem.create(TINY, "acc,params"), rungs=(1, 2))
    assert halving.epochs_per_network() == pytest.approx(1.25 + 1.25 / 3)  # each rung with its cool-down
    records = halving.evaluate([Request(parse_genome(g)) for g in GENOMES])
    top = [r for r in records if r["epochs"] == 2]
    assert len(top) == 2 and all(r["curve"][-1]["branch_acc"] == round(r["val_acc"], 5) for r in records)
    assert len(list((tmp_path / "states").glob("*.pt"))) == 2  # the top of the rungs may still be finalists
    real, calls = worker.train_candidate, []

    def spy(genome, task, until=None, state=None, *rest):
        calls.append((genome, until, state is not None))
        return real(genome, task, until, state, *rest)

    monkeypatch.setattr(worker, "train_candidate", spy)
    reported, reporting = [], ev.reporting
    monkeypatch.setattr(ev, "reporting", lambda *a: reported.append(a) or reporting(*a))
    finals = halving.finalize([parse_genome(r["genome"]) for r in top], "rich")
    assert [c[1:] for c in calls] == [(None, True), (None, True)]  # continued from their kept states
    assert reported == [([r["genome"] for r in top], 12, 600.0)]  # its progress logged every 10 minutes
    assert [f["epochs"] for f in finals] == [12, 12] and all(len(f["curve"]) == 12 for f in finals)
    straight = Evaluator(task).evaluate([top[0]["genome"]])[0]  # the same training, straight through
    assert (straight["val_acc"], straight["val_f1"]) == (finals[0]["val_acc"], finals[0]["val_f1"])
    halving.prune([top[1]])  # the other left the front: its state goes
    assert len(list((tmp_path / "states").glob("*.pt"))) == 1 and ev.state_bytes() > 0


def test_only_a_continuable_schedule_may_end_its_rungs_early():
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, lambda g: {})
    ev = FakeEvaluator({})
    ev.task = EvalTask("synthetic:70", WSD)
    assert make_strategy("halving", ev, problem).rungs == (2,)
    with pytest.raises(ValueError, match="the last rung must be at most 12 epochs"):
        make_strategy("halving", ev, problem, rungs=(1, 13))


def test_a_search_killed_in_its_top_rung_resumes_it_without_training_an_epoch_twice(synthetic_csv, tmp_path,
                                                                                      monkeypatch, caplog):  # fmt: skip
    import nas.training.loop

    task = EvalTask(str(synthetic_csv), WSD, seed=0)

    def strategy():
        ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"), state_dir=tmp_path / "states")
        return make_strategy("halving", ev, Problem.create(TINY, "acc,params"), rungs=(1, 2))

    records = strategy().evaluate([Request(parse_genome(g)) for g in GENOMES])
    finalists = [parse_genome(r["genome"]) for r in records if r["epochs"] == 2]
    real, trained = nas.training.loop._train_epoch, []

    def dies_at_epoch_7(loop, x, y, cfg, epoch, deadline):
        if epoch == 7 and "killed" not in trained:
            trained.append("killed")
            raise KeyboardInterrupt
        trained.append(epoch)
        return real(loop, x, y, cfg, epoch, deadline)

    monkeypatch.setattr(nas.training.loop, "_train_epoch", dies_at_epoch_7)
    with pytest.raises(KeyboardInterrupt):
        strategy().finalize(finalists, "rich")
    assert trained[-1] == "killed" and list((tmp_path / "states").glob("*-live.pt"))
    with (
        caplog.at_level(logging.INFO, logger="nas"),
        strategy().evaluator.reporting([str(g) for g in finalists], 12, every=0.01),
    ):
        time.sleep(0.3)  # the hours of a top rung say how far they have come: here, the killed finalist's 7 epochs
    assert re.search(rf"top rung: ({finalists[0].key}|{finalists[1].key}) at epoch 7/12, \d+ s an epoch", caplog.text)
    monkeypatch.setattr(nas.training.loop, "_train_epoch", lambda *a: trained.append(a[4]) or real(*a))
    finals = strategy().finalize(finalists, "rich")
    main = [e for e in trained if e != "killed"]
    assert sorted(main) == sorted(list(range(2, 12)) * 2)  # each finalist's epochs 3-12 once: none twice
    assert [f["epochs"] for f in finals] == [12, 12] and not list((tmp_path / "states").glob("*-live*"))


def test_a_network_under_the_floor_is_never_promoted_at_any_rung():
    genomes = [str(parse_genome(g)) for g in GENOMES]
    # a trade-off front (the smaller, the less accurate): promotion by crowding keeps its ends, the smallest too;
    # the fake accuracy at a rung is the table's times the rung's share of 4 epochs
    table = {g: (0.6 - 0.04 * i, 10 ** (6 - i)) for i, g in enumerate(genomes)}
    table[genomes[-1]] = (0.04, 10)  # under the floor at every rung
    objectives = objs.parse_objectives("acc,params")
    promoted = {}
    for floor in (None, Floor(0.135, 1)):  # at rung 1 only two networks are above it: fewer than the 3 slots
        ev = FakeEvaluator(table)
        problem = Problem(TINY, objectives, {}, lambda g: {}, floor=floor)
        make_strategy("halving", ev, problem, rungs=(1, 2, 4), eta=2).evaluate(
            [Request(parse_genome(g)) for g in genomes]
        )
        promoted[floor] = [([g for g, _ in rung], until) for rung, until in zip(ev.asked[1:], (1, 2))]
    assert genomes[-1] in promoted[None][0][0] and len(promoted[None][0][0]) == 3  # its size alone promotes it
    for networks, judged_at in promoted[Floor(0.135, 1)]:
        assert networks and all(table[g][0] * judged_at / 4 > 0.135 for g in networks)
