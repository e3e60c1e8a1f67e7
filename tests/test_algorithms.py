"""The baselines the genetic search must beat: random sampling and Optuna's NSGA-II, same run directory."""

import json
import random
from collections import Counter

import optuna
import pandas as pd
import pytest
from conftest import load_benchmark
from test_evolve import FAST, _evolve, _summary

from nas.cli import main
from nas.evolve import objectives as objs
from nas.genome.space import draw, is_valid, load_space, sample


def _search(algorithm: str, data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("alg") / algorithm
    assert _evolve(run_dir, data, "--algorithm", algorithm, *FAST) == 0
    return run_dir


@pytest.fixture(scope="module")
def random_run(synthetic_csv, tmp_path_factory):
    return _search("random", synthetic_csv, tmp_path_factory)


@pytest.fixture(scope="module")
def optuna_run(synthetic_csv, tmp_path_factory):
    return _search("optuna", synthetic_csv, tmp_path_factory)


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_same_run_directory_as_the_genetic_search(algorithm, request):
    run_dir = request.getfixturevalue(f"{algorithm}_run")
    for name in ("config.json", "evaluations.csv", "pareto.csv", "progress.csv", "checkpoint.json", "champion.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert json.loads((run_dir / "config.json").read_text())["search"]["algorithm"] == algorithm
    evals = pd.read_csv(run_dir / "evaluations.csv")
    assert len(evals) == 8 * 3 and sorted(evals["generation"].unique()) == [0, 1, 2]
    front, ok = pd.read_csv(run_dir / "pareto.csv"), evals[evals["status"] == "ok"]
    o = objs.parse_objectives(objs.DEFAULT_OBJECTIVES)
    for f in front.itertuples():
        point = (f.val_acc, f.params, f.latency_ms)
        assert not any(objs.dominates((e.val_acc, e.params, e.latency_ms), point, o) for e in ok.itertuples())
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "progress.png").exists()


def test_random_search_never_repeats_a_genome(random_run):
    evals = pd.read_csv(random_run / "evaluations.csv")
    assert evals["genome"].is_unique and not evals["cached"].any()


def test_optuna_study_holds_every_evaluation(optuna_run):
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{optuna_run / 'search.db'}")
    assert len(study.trials) == 24 and all(t.state.is_finished() for t in study.trials)
    evals = pd.read_csv(optuna_run / "evaluations.csv")
    assert Counter(t.user_attrs["genome"] for t in study.trials) == Counter(evals["genome"])
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in study.trials]
    assert generations[0] == 0 and max(generations) >= 1  # Optuna's NSGA-II chose them, generation by generation


def test_random_search_resumes_exactly(random_run, synthetic_csv, tmp_path):
    run_dir = tmp_path / "part"
    assert _evolve(run_dir, synthetic_csv, "--algorithm", "random", "--generations", "1", *FAST) == 0
    assert main(["evolve", "--resume", str(run_dir), "--generations", "2"]) == 0
    assert _summary(run_dir) == _summary(random_run)


def test_optuna_search_interrupted_mid_generation_resumes_its_asked_trials(synthetic_csv, tmp_path, monkeypatch):
    from nas.evolve.evaluate import Evaluator

    real, calls = Evaluator.evaluate, []

    def evaluate(self, genomes, on_record=None):
        calls.append(len(genomes))
        if len(calls) == 2:  # Ctrl-C while generation 1 trains
            raise KeyboardInterrupt
        return real(self, genomes, on_record)

    run_dir = tmp_path / "opt"
    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    assert _evolve(run_dir, synthetic_csv, "--algorithm", "optuna", "--generations", "1", *FAST) == 130
    monkeypatch.setattr(Evaluator, "evaluate", real)
    storage = f"sqlite:///{run_dir / 'search.db'}"
    left = optuna.load_study(study_name="search", storage=storage).trials
    assert sum(t.state == optuna.trial.TrialState.RUNNING for t in left) == 8
    assert main(["evolve", "--resume", str(run_dir), "--generations", "1"]) == 0
    trials = optuna.load_study(study_name="search", storage=storage).trials
    assert len(trials) == 16 and all(t.state.is_finished() for t in trials)  # the asked 8, not 8 more
    assert [t.user_attrs["genome"] for t in trials[8:]] == [t.user_attrs["genome"] for t in left[8:]]


def test_optuna_sampler_sees_over_budget_networks_as_infeasible(synthetic_csv, tmp_path):
    run_dir = tmp_path / "budget"
    assert _evolve(run_dir, synthetic_csv, "--algorithm", "optuna", "--max-mflops", "0.3", "--generations", "1",
                   *FAST) == 0  # fmt: skip
    trials = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'search.db'}").trials
    mflops = pd.read_csv(run_dir / "evaluations.csv").groupby("genome")["flops"].first() / 1e6
    excess = [mflops[t.user_attrs["genome"]] / 0.3 - 1 for t in trials]
    assert any(e > 0 for e in excess) and any(e <= 0 for e in excess), "the budget should split the tiny space"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.constraints for t in trials] == [{"excess_flops": pytest.approx(e)} for e in excess]
    # told as failed, over-budget trials would not count, and generation 0 would still be sampling at random
    assert [t.system_attrs["NSGAIISampler:generation"] for t in trials] == [0] * 8 + [1] * 8


def test_draw_is_uniform_sampling_or_an_optuna_encoding():
    space = load_space("default")
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert [sample(space, rng_a) for _ in range(20)] == [
        draw(space, lambda _n, options: rng_b.choice(options)) for _ in range(20)
    ]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        trial = study.ask()
        assert is_valid(draw(space, trial.suggest_categorical), space)
        assert trial.params["blocks"] in range(space.min_blocks, space.max_blocks + 1)


def test_alternatives_refuse_penalty_mode_and_options_of_others(synthetic_csv, tmp_path, capsys):
    assert _evolve(tmp_path / "r", synthetic_csv, "--algorithm", "random", "--mode", "penalty") == 2
    assert "--mode penalty is the penalised GA" in capsys.readouterr().err.strip().splitlines()[-1]
    assert _evolve(tmp_path / "s", synthetic_csv, "--algorithm", "random", "--sample-size", "3") == 2
    assert "algorithm 'random' has no option(s) ['sample_size']" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "s").exists()


def test_options_given_from_python_or_a_config_file_are_checked_by_type(synthetic_csv, tmp_path):
    import nas
    from nas.errors import SettingError

    common = dict(data=str(synthetic_csv), space="tiny", fidelity="cheap", generations=1, population=4)
    with pytest.raises(SettingError, match=r"algorithm 'ga': target_params must be a number, got '1e5'"):
        nas.search(run_dir=tmp_path / "a", algorithm="ga", options={"target_params": "1e5"}, **common)
    with pytest.raises(SettingError, match=r"evaluation strategy 'halving': eta must be a number, got '3'"):
        nas.search(run_dir=tmp_path / "b", strategy="halving", strategy_options={"eta": "3"}, **common)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    for bad, says in (({"cx_prob": 5.0}, "--cx-prob and --mut-prob must lie in"), ({"cx_points": 7}, "--cx-points"),
                      ({"mutation_weights": {"add": "x"}}, "mutation_weights must be a table of numbers"),
                      ({"mutation_weights": {"addd": 1}}, "mutation_weights: odds >= 0 of add, remove"),
                      ({"mutation_weights": {"add": 0}}, "one > 0 at least")):  # fmt: skip
        with pytest.raises(SettingError, match=says):
            nas.search(run_dir=tmp_path / "c", algorithm="ga", options=bad, **common)
    assert not (tmp_path / "c").exists()


@pytest.mark.bench
def test_search_benchmark_quick_run_writes_table_plot_and_resumes(tmp_path, capsys):
    bench = load_benchmark("bench_search")
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    table = (out / "search.md").read_text()
    for name in ("| nsga2 | 2 |", "| random | 2 |", "| optuna | 2 |", "| mini_xception |", "| vgg |"):
        assert name in table
    curves = pd.read_csv(out / "search_curves.csv")
    assert {"evaluations", "train_seconds", "hypervolume"} <= set(curves.columns)
    assert len(set(zip(curves["algorithm"], curves["seed"]))) == 6
    assert (curves.groupby(["algorithm", "seed"])["train_seconds"].diff().dropna() >= 0).all()
    assert (out / "search.png").stat().st_size > 0
    trained = {p: p.read_text() for p in out.glob("*/cache.jsonl")}
    assert bench.main(["--quick", "--out", str(out)]) == 0  # finished runs are skipped, not trained again
    assert {p: p.read_text() for p in out.glob("*/cache.jsonl")} == trained


@pytest.mark.bench
def test_region_benchmark_runs_both_arms_and_resumes_them(synthetic_csv, tmp_path, capsys):
    bench = load_benchmark("bench_region")
    args = ["--data", str(synthetic_csv), "--generations", "0", "--out", str(tmp_path)]
    extra = "--population 4 --fidelity 140x1b32 --strategy scratch --jobs 2"
    assert bench.main([*args, "--extra", extra]) == 0
    table = capsys.readouterr().out
    assert "| region | 4 |" in table and "| old | 4 |" in table  # four networks trained in each arm
    for arm in ("region", "old"):  # the arms compare the search, not the finalists' full training
        assert json.loads((tmp_path / arm / "config.json").read_text())["search"]["finalists"] == 0
    trained = (tmp_path / "region" / "cache.jsonl").read_text()
    assert bench.main([*args, "--extra", extra, "--generations", "1"]) == 0  # resumed, generation 0 not again
    assert (tmp_path / "region" / "cache.jsonl").read_text().startswith(trained)


@pytest.mark.bench
def test_region_benchmark_takes_its_region_arm_from_a_longer_search_without_training(synthetic_csv, tmp_path, capsys):
    bench = load_benchmark("bench_region")
    extra = ["--extra", "--finalists 0 --population 4 --fidelity 140x1b32 --strategy scratch --jobs 2"]
    longer = ["--data", str(synthetic_csv), "--generations", "1", "--out", str(tmp_path / "long"), "--arms", "region"]
    assert bench.main([*longer, *extra]) == 0
    source = tmp_path / "long" / "region"
    capsys.readouterr()
    args = ["--data", str(synthetic_csv), "--generations", "0", "--out", str(tmp_path / "cut"), "--arms", "region"]
    assert bench.main([*args, *extra, "--region-from", str(source)]) == 0
    assert "| region | 4 |" in capsys.readouterr().out  # generation 0's four trainings, the longer search's own
    cut = tmp_path / "cut" / "region"
    assert (cut / "cache.jsonl").read_text() == (source / "cache.jsonl").read_text()  # nothing trained again
    assert json.loads((cut / "config.json").read_text())["search"]["generations"] == 0


@pytest.mark.bench
def test_floor_benchmark_reads_the_committed_fidelity_results(capsys):
    load_benchmark("bench_floor").main([])
    out = capsys.readouterr().out
    assert "| full, epoch 2 + cool-down | 0.284 | 1 (0) | 1 (0) |" in out
