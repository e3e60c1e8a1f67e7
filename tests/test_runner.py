"""The search logic on a fake evaluation: every algorithm, resume, caps and the front, in milliseconds each.

The fake strategy scores a genome by a deterministic function of its costs and its hash (bigger networks
are more accurate, with noise; some "diverge"), and the fake costs count channels, so nothing is built or
trained: what is tested is the runner and the algorithms alone.
"""

import json
import logging
import math
import os
import pickle
import random

import pytest

from nas import rundir
from nas.errors import RunDirError, SettingError
from nas.evolve import objectives as objs
from nas.evolve.problem import Floor, Problem
from nas.evolve.runner import Callback, Runner, SearchConfig
from nas.evolve.strategies import Request, Strategy
from nas.genome.grammar import Genome
from nas.genome.space import load_space
from nas.rundir import CHECKPOINT, Cache, read_checkpoint

TINY = load_space("tiny")
DEFAULT = load_space("default")


def fake_costs(genome: Genome) -> dict:
    channels = [getattr(g, "channels", 4) for g in genome.body]
    params = 100 + sum(c * c * 9 for c in channels) + sum(g.units * 20 for g in genome.head)
    return {"params": params, "flops": params * (40 + 10 * len(channels))}


class FakeStrategy(Strategy):
    """Records from a formula; fails the test if asked to evaluate a network the problem does not admit."""

    name = "fake"

    def __init__(self, cache: Cache, problem: Problem) -> None:
        self.cache, self.problem, self.requests = cache, problem, []

    def evaluate(self, requests: list[Request], on_record=None) -> list[dict]:
        out = []
        for r in requests:
            assert self.problem.admits(r.genome), f"asked to train {r.genome}, which breaks the caps"
            assert r.costs == fake_costs(r.genome)
            self.requests.append(r)
            key = f"{r.genome.key}|fake"
            if key not in self.cache:
                self.cache.put(self._record(r.genome, key, r.costs))
            out.append(self.cache.get(key))
            if on_record:
                on_record(out[-1], False)
        return out

    def measure(self, records):
        """Like the evaluator's latency phase: the measured records are cached."""
        out = [r | {"measured_latency_ms": r["latency_ms"]} for r in records]
        for r in out:
            self.cache.put(r)
        return out

    def finalize(self, genomes, fidelity):
        """A longer training reverses the brief ranking (as it does for fast learners)."""
        self.finalized = [str(g) for g in genomes]
        return [{"status": "ok", "val_acc": 1 - i / 10, "fidelity": fidelity} for i in reversed(range(len(genomes)))]

    def reject(self, genome, reason, costs):
        key = f"{genome.key}|fake"
        if key not in self.cache:
            self.cache.put({"cache_key": key, "key": genome.key, "genome": str(genome), "status": "failed",
                            "error": reason, **(costs or {})})  # fmt: skip
        return self.cache.get(key)

    @staticmethod
    def _record(genome: Genome, key: str, costs: dict) -> dict:
        noise = int(genome.key[:6], 16) / 16**6
        record = {"cache_key": key, "key": genome.key, "genome": str(genome), "error": "", **costs}
        if int(genome.key[6:8], 16) < 12:  # about one in twenty diverges
            return record | {"status": "failed", "error": "diverged: fake"}
        acc = 0.15 + 0.6 * (1 - math.exp(-costs["params"] / 4000)) * (0.7 + 0.3 * noise)
        return record | {"status": "ok", "val_acc": acc, "val_f1": acc * 0.9, "latency_ms": costs["flops"] / 1e6,
                         "epochs": 2}  # fmt: skip


def run(
    tmp_path, algorithm="nsga2", generations=4, space=TINY, caps=None, seed=3, population=8, finalists=0,
    floor=None, seeds=None, **options,
):  # fmt: skip
    problem = Problem(space, objs.parse_objectives("acc,params"), caps or {}, fake_costs, floor=floor)
    tmp_path.mkdir(parents=True, exist_ok=True)
    cache = Cache(tmp_path / "cache.jsonl")
    strategy = FakeStrategy(cache, problem)
    config = SearchConfig(generations, population, algorithm, seed, options, finalists=finalists, seeds=seeds or {})
    state = Runner(problem, strategy, cache, config, tmp_path).run()
    return state, strategy


def summary(state) -> tuple:
    return state.rows, [r["cache_key"] for r in state.front], state.champion["genome"], state.progress


ALGORITHMS = ["nsga2", "surrogate", "ga", "aging", "random"]
# Optuna's runs cost several times a DEAP algorithm's here (its sampler, not the fake trainings): in the
# default run its own behaviour is tested in test_algorithms.py; the sweep runs it on every property too
OPTUNA = pytest.param("optuna", marks=pytest.mark.sweep)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_search_and_another_seed_another(algorithm, tmp_path):
    a, _ = run(tmp_path / "a", algorithm)
    b, _ = run(tmp_path / "b", algorithm)
    c, _ = run(tmp_path / "c", algorithm, seed=4)
    strip = lambda s: [{k: v for k, v in p.items() if k != "seconds"} for p in s.progress]  # noqa: E731
    assert summary(a)[:3] == summary(b)[:3] and strip(a) == strip(b)
    assert a.rows != c.rows


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resumed_search_decides_like_an_uninterrupted_one(algorithm, tmp_path):
    whole, _ = run(tmp_path / "whole", algorithm, generations=5)
    run(tmp_path / "parts", algorithm, generations=2)
    checkpoint = json.loads((tmp_path / "parts" / CHECKPOINT).read_text())  # plain data, no pickle
    assert checkpoint["generation"] == 2 and isinstance(checkpoint["rng"]["random"], list)
    random.seed(999)  # as in a new process: the resumed run must restore DEAP's generator itself
    resumed, strategy = run(tmp_path / "parts", algorithm, generations=5)
    assert summary(resumed)[:3] == summary(whole)[:3]
    assert len(strategy.requests) == len(resumed.rows) - len(checkpoint["rows"])  # only the generations left


class RungStrategy(FakeStrategy):
    """Like successive halving: a network's first evaluation is an early rung's record; asked again, it is
    promoted to its full record (another cache key, another accuracy)."""

    def evaluate(self, requests: list[Request], on_record=None) -> list[dict]:
        out = []
        for r in requests:
            early, full = f"{r.genome.key}|fake@1", f"{r.genome.key}|fake"
            if early not in self.cache:
                record = self._record(r.genome, early, r.costs)
                if record["status"] == "ok":  # the early rung flatters half of the networks
                    record["val_acc"] += 0.03 if int(r.genome.key[8], 16) < 8 else -0.05
                self.cache.put(record | {"epochs": 1})
                out.append(self.cache.get(early))
                continue
            if full not in self.cache:
                self.cache.put(self._record(r.genome, full, r.costs))
            out.append(self.cache.get(full))
        return out


@pytest.mark.parametrize("algorithm", ["nsga2", "ga", "aging"])  # those that ask for a network again
def test_a_resumed_search_holds_each_network_by_the_record_it_was_told_not_its_latest(algorithm, tmp_path):
    def search(folder, generations):
        problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
        cache = Cache(rundir.make_dir(tmp_path / folder) / "cache.jsonl")
        config = SearchConfig(generations, 8, algorithm, 3, {}, finalists=0, seeds={})
        return Runner(problem, RungStrategy(cache, problem), cache, config, tmp_path / folder).run()

    whole = search("whole", 8)
    assert any(r["cache_key"].endswith("|fake") for r in whole.rows)  # some networks were promoted
    search("parts", 3)
    random.seed(999)
    assert summary(search("parts", 8))[:3] == summary(whole)[:3]


def test_ga_keeps_its_elites_and_breeds_the_rest(tmp_path):
    state, _ = run(tmp_path, "ga", generations=2, population=6)
    per_gen = [sum(r["generation"] == g for r in state.rows) for g in range(3)]
    assert per_gen == [6, 4, 4]  # two elites survive untouched, four children


def test_the_penalised_ga_keeps_as_elites_the_best_penalised_networks_not_the_most_accurate():
    from nas.evolve.algorithms.ga import Options, PenalizedGA, penalized_fitness

    problem = Problem(TINY, objs.parse_objectives("acc,params,latency"), {}, fake_costs)
    options = Options(penalty="linear", penalty_per_doubling=0.1, target_params=300, target_latency_ms=1.0)
    ga = PenalizedGA(problem, 6, random.Random(0), options)
    records = {}
    for genome in _samples(problem, 40):
        record = FakeStrategy._record(genome, genome.key, fake_costs(genome))
        if record["status"] == "ok":
            records[genome.key] = problem.evaluation(genome, record)
    first, children = list(records.values())[:6], list(records.values())[6:10]
    ga.tell(first)
    ga.tell(children)
    penalised = sorted(first, key=lambda ev: -penalized_fitness(ev.record, options, latency=True))
    accurate = sorted(first, key=lambda ev: -ev.record["val_acc"])
    kept = {ev.key for ev in ga.population}
    assert {ev.key for ev in penalised[:2]} != {ev.key for ev in accurate[:2]}, "the targets should bite"
    assert kept == {ev.key for ev in penalised[:2] + children}


def test_nsga2_wants_a_population_divisible_by_four(tmp_path):
    with pytest.raises(ValueError, match="population must be a multiple of 4"):
        run(tmp_path, "nsga2", population=6)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_searches_that_can_propose_only_admitted_networks(algorithm, tmp_path):
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    params = sorted(fake_costs(g)["params"] for g in _samples(problem, 200))
    cap = params[len(params) // 2]  # half the space is over it
    state, strategy = run(tmp_path, algorithm, caps={"params": cap})
    assert len(strategy.requests) == len(state.rows) and not any("over budget" in str(r) for r in state.rows)
    assert max(r.costs["params"] for r in strategy.requests) <= cap


def test_optuna_is_told_what_breaks_the_caps_and_never_trains_it(tmp_path):
    optuna = pytest.importorskip("optuna")
    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    params = sorted(fake_costs(g)["params"] for g in _samples(problem, 200))
    cap = params[len(params) // 2]
    state, strategy = run(tmp_path, "optuna", generations=2, caps={"params": cap})
    records = Cache(tmp_path / "cache.jsonl").records
    rejected = [records[r["cache_key"]] for r in state.rows if records[r["cache_key"]]["status"] == "failed"]
    assert any(r["error"].startswith("over budget:") for r in rejected), "the sampler should propose some"
    assert len(strategy.requests) + len(rejected) == len(state.rows) == 24
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'search.db'}")
    over = [t for t in study.trials if t.constraints["excess_params"] > 0]
    assert over and all(t.state == optuna.trial.TrialState.COMPLETE and t.values[0] == 0.0 for t in over)
    assert all(r["params"] <= cap for r in state.front)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_front_is_exactly_the_non_dominated_evaluations(algorithm, tmp_path):
    state, _ = run(tmp_path, algorithm, generations=3, space=DEFAULT, caps={"flops": 2e7})
    o = objs.parse_objectives("acc,params")
    records = Cache(tmp_path / "cache.jsonl").records
    ok = [records[r["cache_key"]] for r in state.rows if records[r["cache_key"]]["status"] == "ok"]
    front = {r["cache_key"] for r in state.front}
    point = lambda r: (r["val_acc"], r["params"])  # noqa: E731
    for r in ok:
        dominated = any(objs.dominates(point(x), point(r), o) for x in ok)
        assert dominated != (r["cache_key"] in front)
    assert state.champion["val_acc"] == max(r["val_acc"] for r in state.front)


def test_failed_evaluations_get_the_worst_values(tmp_path):
    state, _ = run(tmp_path, "nsga2", generations=6)
    records = Cache(tmp_path / "cache.jsonl").records
    failed = [records[r["cache_key"]] for r in state.rows if records[r["cache_key"]]["status"] != "ok"]
    assert failed, "the fake evaluation should fail some networks"
    assert not {r["cache_key"] for r in failed} & {r["cache_key"] for r in state.front}
    assert sum(p["failed"] for p in state.progress) == len(failed)


def test_each_generation_says_what_is_left_at_the_runs_own_pace(tmp_path, caplog):
    class Timed(FakeStrategy):  # a continuable schedule: the finalists train 98 epochs more at the top rung
        def final_epochs(self) -> float:
            return 98.0

        def state_file(self, genome):
            return None  # no kept training to hand on

        @staticmethod
        def _record(genome, key, costs):
            return FakeStrategy._record(genome, key, costs) | {"train_seconds": 20.0}  # 10 s an epoch

    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    cache = Cache(tmp_path / "cache.jsonl")
    config = SearchConfig(3, 8, "nsga2", 3, {}, finalists=1)
    with caplog.at_level(logging.INFO, logger="nas.evolve.runner"):
        Runner(problem, Timed(cache, problem), cache, config, tmp_path).run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("generation ")]
    assert len(lines) == 4 and all("h to go, the finalists' top rung included" in x for x in lines)
    assert lines[-1].endswith("; at this pace ~0.3 h to go, the finalists' top rung included")  # 10 s x 98


def test_callbacks_see_every_request_and_generation(tmp_path):
    class Spy(Callback):
        def __init__(self):
            self.events = []

        def start_run(self, run_dir, generations, state):
            self.events.append(("run", generations, state.generation))

        def start_generation(self, generation, n):
            self.events.append(("gen", generation, n))

        def on_record(self, record, cached):
            self.events.append(("record",))

        def end_generation(self, state):
            self.events.append(("end", state.generation, len(state.rows)))

    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    cache, spy = Cache(), Spy()
    config = SearchConfig(1, 4, "random", 0, finalists=0)
    Runner(problem, FakeStrategy(cache, problem), cache, config, None, [spy]).run()
    assert spy.events == [("run", 1, -1), ("gen", 0, 4), *[("record",)] * 4, ("end", 0, 4),
                          ("gen", 1, 4), *[("record",)] * 4, ("end", 1, 8)]  # fmt: skip


def test_an_old_pickled_checkpoint_is_never_loaded(tmp_path):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "checkpoint.pkl").write_bytes(pickle.dumps({"generation": 5, "x": Payload()}))
    state, _ = run(tmp_path, "nsga2", generations=1)
    assert not (tmp_path / "pwned").exists() and state.generation == 1 and read_checkpoint(tmp_path)


def _samples(problem, n):
    from nas.genome.space import sample

    rng = random.Random(0)
    return [sample(problem.space, rng) for _ in range(n)]


def test_the_surrogate_trains_a_generation_chosen_from_a_larger_pool_and_logs_its_tau(tmp_path):
    state, strategy = run(tmp_path, "surrogate", generations=5, space=DEFAULT, caps={"flops": 6e7})
    per_gen = [sum(r["generation"] == g for r in state.rows) for g in range(6)]
    assert per_gen == [8] * 6
    taus = [p.get("predictor_tau") for p in state.progress]
    chosen = [t for t in taus if t is not None]  # once 16 networks have trained (some fake ones diverge)
    assert taus[:2] == [None, None] and len(chosen) >= 2 and taus[-1] is not None
    assert sum(chosen) / len(chosen) > 0.3  # the fake accuracy grows with size: the forest learns it


def test_the_champion_is_the_best_finalist_after_a_longer_training(tmp_path):
    state, strategy = run(tmp_path, "nsga2", generations=2, finalists=3)
    by_brief = sorted(state.front, key=lambda r: -r["val_acc"])[:3]
    assert strategy.finalized == [r["genome"] for r in by_brief]  # the three most accurate after brief training
    champion = json.loads((tmp_path / "champion.json").read_text())
    assert champion["genome"] == by_brief[-1]["genome"] == state.champion["genome"]  # the longer training's best
    assert champion["finalist"]["val_acc"] == 1.0 and "rich" in champion["rule"]
    assert [f["genome"] for f in champion["finalists"]] == strategy.finalized


@pytest.mark.parametrize("jobs, expected", [(2, 400.0), (1, 600.0)])
def test_the_champion_says_how_long_the_finalists_trained_after_the_generations(tmp_path, jobs, expected):
    """Their own clocks (a resume continues them) less the first rung each already counted in the search's
    clock; finalists in parallel take the longest one's time, or the total over the workers if more."""

    class Continued(FakeStrategy):
        evaluator = type("Evaluator", (), {"jobs": jobs})()

        def final_epochs(self) -> float:
            return 98.0

        def state_file(self, genome):
            return None

        @staticmethod
        def _record(genome, key, costs):
            return FakeStrategy._record(genome, key, costs) | {"train_seconds": 26.0, "clock_seconds": 20.0}

        def finalize(self, genomes, fidelity):
            clocks = [420.0, 220.0]  # the first rung's training clock, 20 s, included (its 6 s of loading not)
            return [{"status": "ok", "val_acc": 0.5, "clock_seconds": c} for c in clocks[: len(genomes)]]

    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    cache = Cache(tmp_path / "cache.jsonl")
    Runner(problem, Continued(cache, problem), cache, SearchConfig(1, 8, "nsga2", 3, {}, finalists=2), tmp_path).run()
    assert json.loads((tmp_path / "champion.json").read_text())["top_rung_seconds"] == expected


def test_a_resume_that_fails_leaves_the_finalists_champion_in_place(tmp_path, monkeypatch):
    run(tmp_path, "nsga2", generations=2, finalists=3)
    before = (tmp_path / "champion.json").read_text()
    assert "finalist" in json.loads(before)

    def disk_full(self, requests, on_record=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FakeStrategy, "evaluate", disk_full)
    with pytest.raises(OSError):
        run(tmp_path, "nsga2", generations=3, finalists=3)
    assert (tmp_path / "champion.json").read_text() == before


def test_the_champion_rules_pick_by_accuracy_by_macro_f1_or_the_knee_within_the_budgets():
    from nas.evolve.runner import choose_champion

    front = [
        {"genome": "a", "val_acc": 0.60, "val_f1": 0.40, "params": 9e5, "latency_ms": 2.0},
        {"genome": "b", "val_acc": 0.58, "val_f1": 0.50, "params": 3e5, "latency_ms": 1.0},
        {"genome": "c", "val_acc": 0.40, "val_f1": 0.30, "params": 1e4, "latency_ms": 0.1},
    ]
    o = objs.parse_objectives("acc,params")
    pick = {rule: choose_champion(front, SearchConfig(champion_rule=rule), o) for rule in ("max-acc", "max-f1")}
    assert pick["max-acc"]["genome"] == "a" and pick["max-f1"]["genome"] == "b"
    assert "macro-F1" in pick["max-f1"]["rule"]
    budget = SearchConfig(champion_rule="max-f1", champion_max_params=1e5)
    assert (
        choose_champion(front, budget, o)["genome"] == "c"
        and "params <= 100000" in choose_champion(front, budget, o)["rule"]
    )
    assert choose_champion(front, SearchConfig(champion_rule="max-f1", champion_max_latency_ms=0.01), o) is None
    with pytest.raises(SettingError, match="max-acc, max-f1, knee"):
        SearchConfig(champion_rule="best")


def test_a_cache_line_cut_by_a_crash_is_skipped_and_ended_before_the_next_append(tmp_path):
    path = tmp_path / "cache.jsonl"
    Cache(path).put({"cache_key": "a", "key": "a", "status": "ok", "val_acc": 0.5})
    with path.open("a") as f:
        f.write('{"cache_key": "b", "sta')  # the process died mid-append
    cache = Cache(path)
    assert "a" in cache and "b" not in cache
    cache.put({"cache_key": "c", "status": "failed"})
    assert set(Cache(path).records) == {"a", "c"}


class Killed(BaseException):
    """Stands for SIGKILL at one point of the run: nothing after it runs, nothing is cleaned up."""


def files(run_dir) -> dict:
    """What a run leaves for its user, timings aside."""
    import pandas as pd

    progress = pd.read_csv(run_dir / "progress.csv").drop(columns=["seconds"])
    names = ("evaluations.csv", "pareto.csv")
    tables = {name: pd.read_csv(run_dir / name).astype(object).fillna("").to_dict("records") for name in names}
    return tables | {
        "progress": progress.to_dict("records"),
        "champion": json.loads((run_dir / "champion.json").read_text()),
    }


def arm_checkpoint_kill(m) -> None:
    """Die once the last generation's checkpoint is written, before its tables and champion are: the resume has
    no generation left to run, and must still bring them up to date."""
    original = rundir.write_checkpoint

    def write(run_dir, checkpoint):
        original(run_dir, checkpoint)
        if checkpoint["generation"] == 4:
            raise Killed

    m.setattr(rundir, "write_checkpoint", write)


def arm_generation_kill(m) -> None:
    """Die as generation 3 starts: generation 2 is saved in full."""
    original = Runner._generation

    def generation(self, g, state):
        if g == 3:
            raise Killed
        original(self, g, state)

    m.setattr(Runner, "_generation", generation)


def arm_cache_kill(m, n: int, cut: bool) -> None:
    """Die at the ``n``-th record a worker finishes (while others train), writing half its line if ``cut``."""
    original, calls = Cache.put, []

    def put(self, record):
        calls.append(record)
        if len(calls) == n:
            if cut:
                with self.path.open("a") as f:
                    f.write(json.dumps(record)[:40])
            raise Killed
        original(self, record)

    m.setattr(Cache, "put", put)


KILLS = {
    "between the checkpoint and the table writes": arm_checkpoint_kill,
    "just after a checkpoint": arm_generation_kill,
    "mid-training": lambda m: arm_cache_kill(m, 28, cut=False),
    "mid-append to the cache": lambda m: arm_cache_kill(m, 29, cut=True),
}


@pytest.mark.parametrize("point", KILLS)
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(point, tmp_path, monkeypatch):
    run(tmp_path / "whole", generations=4)
    with monkeypatch.context() as m:
        KILLS[point](m)
        with pytest.raises(Killed):
            run(tmp_path / "parts", generations=4)
    random.seed(12345)  # as in a new process
    run(tmp_path / "parts", generations=4)
    assert files(tmp_path / "parts") == files(tmp_path / "whole")


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, OPTUNA])
def test_an_objective_declared_once_runs_on_every_algorithm(algorithm, tmp_path, monkeypatch):
    """A new objective is one declaration: the algorithms, the surrogate's ranking, the front, the tables and
    the hypervolume take its column and direction from it."""
    size = objs.Objective("size", "params", False, "weights", True, (1e2, 1e5), (1e1, 1e5))
    monkeypatch.setitem(objs.OBJECTIVES, "size", size)
    problem = Problem(TINY, objs.parse_objectives("acc,size"), {}, fake_costs)
    cache = Cache(tmp_path / "cache.jsonl")
    options = {"warmup": 8} if algorithm == "surrogate" else {}  # the predictor ranks from generation 1 on
    config = SearchConfig(3, 8, algorithm, 0, options, finalists=0)
    state = Runner(problem, FakeStrategy(cache, problem), cache, config, tmp_path).run()
    front = [(r["val_acc"], r["params"]) for r in state.front]
    assert front and all(not objs.dominates(a, b, problem.objectives) for a in front for b in front)
    assert state.progress[-1]["hypervolume"] > 0
    if algorithm == "surrogate":
        assert any(p["predictor_tau"] is not None for p in state.progress)


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, OPTUNA])
def test_a_network_under_the_accuracy_floor_is_never_on_the_front_nor_the_champion(algorithm, tmp_path):
    state, _ = run(tmp_path, algorithm, generations=3, floor=Floor(0.45, 2))
    records = Cache(tmp_path / "cache.jsonl").records
    trained = [records[r["cache_key"]] for r in state.rows if records[r["cache_key"]]["status"] == "ok"]
    assert any(r["val_acc"] <= 0.45 for r in trained), "the floor should bite in this test"
    assert state.front and all(r["val_acc"] > 0.45 for r in state.front) and state.champion["val_acc"] > 0.45
    unjudged, _ = run(tmp_path / "early", algorithm, generations=3, floor=Floor(0.45, 3))  # after the 2 epochs
    assert any(r["val_acc"] <= 0.45 for r in unjudged.front)


def test_the_surrogate_never_chooses_a_child_it_predicts_under_the_floor(tmp_path, monkeypatch):
    from nas.evolve.algorithms.surrogate import SurrogateNSGA2

    generations = []  # the predictions of each generation the predictor chose
    tell = SurrogateNSGA2.tell
    monkeypatch.setattr(SurrogateNSGA2, "tell", lambda self, evs: generations.append(list(self.predicted.values()))
                        or tell(self, evs))  # fmt: skip
    run(tmp_path, "surrogate", generations=5, floor=Floor(0.6, 2), warmup=8)
    chosen = [g for g in generations if g]
    assert chosen and any(len(g) < 8 for g in chosen)  # too few children predicted above it: a smaller generation
    assert all(sum(p <= 0.6 for p in g) <= 2 for g in chosen)  # only the exploration share (2 of 8) may be under


SEEDS = {"big": "conv_k3_c16_s1_relu_bn | conv_k3_c16_s1_relu_bn | gap", "small": "conv_k3_c4_s2_relu_bn | gap"}


@pytest.mark.parametrize("algorithm", ["nsga2", "surrogate", "ga", "aging", OPTUNA])
def test_the_first_generation_starts_from_the_seeds_and_their_descendants_say_so(algorithm, tmp_path):
    state, _ = run(tmp_path, algorithm, generations=3, seeds=SEEDS)
    first = [r for r in state.rows if r["generation"] == 0]
    assert {r["origin"]: r["variations"] for r in first if r["origin"]} == {"big": 0, "small": 0}
    later = [r for r in state.rows if r["generation"] > 0 and r["origin"]]
    if algorithm != "optuna":  # Optuna's sampler breeds without telling from whom
        assert later and all(r["variations"] >= 1 or r["cached"] for r in later)
    champion = state.champion
    assert "origin" in champion and "variations" in champion


def test_a_lineage_counts_breedings_from_the_seed_through_the_first_parent_with_one():
    from nas.evolve.algorithms import Proposal
    from nas.genome.grammar import parse_genome

    runner = Runner(Problem(TINY, objs.parse_objectives("acc,params")), None, Cache(), SearchConfig())
    a, b, c, d = (parse_genome(g) for g in (*SEEDS.values(), "conv_k3_c8_s1_relu_bn | gap", "pool_max | gap"))
    runner.lineage = {a.key: {"origin": "big", "variations": 2}, b.key: {"origin": "", "variations": None}}
    assert runner._descent(Proposal(c, (b, a))) == {"origin": "big", "variations": 3}
    assert runner._descent(Proposal(a, (a,))) == {"origin": "big", "variations": 2}  # a parent given back
    assert runner._descent(Proposal(d, (b,))) == {"origin": "", "variations": None}
    assert runner._descent(Proposal(d, (), origin="mine")) == {"origin": "mine", "variations": 0}


def test_random_search_ignores_the_seeds_and_says_so(tmp_path, caplog):
    state, _ = run(tmp_path, "random", generations=1, seeds=SEEDS)
    assert not any(r["origin"] for r in state.rows)
    assert "random search ignores the seed networks" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no fchmod on this platform")
def test_a_written_file_has_the_permissions_of_any_file_not_owner_only(tmp_path):
    """People sharing a run directory read each other's results: a new file gets 0666 less the umask (as
    ``open`` gives), a replaced one keeps its mode."""
    new = rundir.atomic_write(tmp_path / "new.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(new, 0o640)
    rundir.atomic_write(new, "[]")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_text() == "[]"


def test_files_written_together_stay_the_old_set_when_a_rename_or_a_name_is_refused(tmp_path):
    """A folder where the third file goes: the first two, renamed already, get their old versions back; a
    name too long for the file system is one line naming it. No temporary file or kept copy is left."""
    old = {"a.json": "a0", "b.onnx": "b0"}
    for name, text in old.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "c.md").mkdir()
    with pytest.raises(RunDirError, match=r"c.md: cannot write \(Is a directory\)$"):
        rundir.atomic_write_all(tmp_path, {"a.json": "a1", "b.onnx": "b1", "new.txt": "n1", "c.md": "c1"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.onnx", "c.md"]
    assert {name: (tmp_path / name).read_text() for name in old} == old
    with pytest.raises(RunDirError, match=r"x{300}: cannot write \(File name too long\)$"):
        rundir.atomic_write(tmp_path / ("x" * 300), "{}")
    with pytest.raises(RunDirError, match=r"y{300}: cannot write \(File name too long\)$"):
        rundir.atomic_write_all(tmp_path, {"a.json": "a1", "y" * 300: "{}"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.onnx", "c.md"]
    assert {name: (tmp_path / name).read_text() for name in old} == old


def test_the_surrogate_asks_for_no_more_than_a_population_when_its_pool_runs_short(tmp_path):
    state, _ = run(tmp_path, "surrogate", generations=3, warmup=8, pool=1)  # one breeding a generation: short
    per_gen = [sum(r["generation"] == g for r in state.rows) for g in range(4)]
    assert max(per_gen) <= 8 and sum(per_gen) > 8


def test_a_search_whose_finalists_all_fail_says_so_and_keeps_the_brief_champion(tmp_path, caplog):
    class Failing(FakeStrategy):
        def finalize(self, genomes, fidelity):
            return [{"status": "failed", "error": "diverged: at epoch 7"} for _ in genomes]

    problem = Problem(TINY, objs.parse_objectives("acc,params"), {}, fake_costs)
    cache = Cache(tmp_path / "cache.jsonl")
    with caplog.at_level(logging.WARNING, logger="nas.evolve.runner"):
        state = Runner(problem, Failing(cache, problem), cache, SearchConfig(1, 8, "nsga2", 3, {}, finalists=2)).run()
    assert "every finalist's training failed (diverged: at epoch 7)" in caplog.text
    assert "finalist" not in state.champion and state.champion["genome"] in {r["genome"] for r in state.front}
