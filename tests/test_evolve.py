import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main
from nas.evolve import objectives as objs
from nas.genome.build import build, count_flops
from nas.genome.space import load_space, sample
from nas.rundir import cpu_model

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--space",
    "tiny",
    "--population",
    "8",
    "--generations",
    "2",
    "--fidelity",
    "cheap",
    "--jobs",
    "2",
    "--seed",
    "7",
    "--accuracy-margin",  # what the reference of 2026-12-05 did (tests/reference.py)
    "-1",
    "--seed-networks",
    "none",
]


# for tests that check run files, resume and errors, not what training finds: one epoch of 140 images
FAST = ("--fidelity", "140x1b32", "--strategy", "scratch", "--finalists", "0")


def _evolve(run_dir: Path, data: Path, *extra: str) -> int:
    return main(["evolve", "--data", str(data), "--run-dir", str(run_dir), *ARGS, *extra])


def _summary(run_dir: Path) -> tuple:
    """What must not depend on interruptions: evaluations, front and champion (timings aside)."""
    columns = ["generation", "cached", "genome", "status", "val_acc", "params", "latency_ms", "numerics"]
    ev = pd.read_csv(run_dir / "evaluations.csv")[columns]
    front = sorted(pd.read_csv(run_dir / "pareto.csv")["genome"])
    champion = json.loads((run_dir / "champion.json").read_text())["genome"]
    return ev.to_dict("records"), front, champion


def _spawn_evolve(run_dir: Path, data: Path, *extra: str, **popen) -> subprocess.Popen:
    """scripts/evolve.py in its own process, for tests that signal or kill it."""
    cmd = [
        sys.executable,
        str(ROOT / "scripts/evolve.py"),
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        *ARGS,
        *extra,
    ]
    return subprocess.Popen(cmd, **popen)


def _wait_for_first_generation(run_dir: Path, deadline: float) -> None:
    while not (run_dir / "progress.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def uninterrupted(synthetic_csv, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    assert _evolve(run_dir, synthetic_csv) == 0
    return run_dir


def test_the_default_search_finds_what_the_code_of_2026_12_05_found(uninterrupted):
    """The restructuring's check (tests/reference.py): same evaluations, front and champion."""
    import reference

    expected = json.loads((reference.REFERENCE / "searches.json").read_text())["surrogate-halving"]
    reference.assert_same(reference.summary(uninterrupted), expected)


def test_run_directory_is_complete_and_consistent(uninterrupted):
    run = uninterrupted
    for name in (
        "config.json",
        "evaluations.csv",
        "pareto.csv",
        "progress.csv",
        "checkpoint.json",
        "champion.json",
        "cache.jsonl",
        "pareto_params.png",
        "progress.png",
    ):
        assert (run / name).stat().st_size > 0, name
    config = json.loads((run / "config.json").read_text())
    assert config["search"]["seed"] == 7 and config["space"]["name"] == "tiny" and config["versions"]["torch"]
    assert config["evaluation"]["strategy"] == "halving"  # the default, chosen by benchmarks/bench_fidelity.py
    assert config["evaluation"]["strategy_options"] == {"rungs": [2], "eta": 3.0}  # resolved: kept on --resume
    evals = pd.read_csv(run / "evaluations.csv")
    assert len(evals) == 8 * 3 and sorted(evals["generation"].unique()) == [0, 1, 2]
    front = pd.read_csv(run / "pareto.csv")
    ok = evals[evals["status"] == "ok"]
    o = objs.parse_objectives(objs.DEFAULT_OBJECTIVES)

    def point(r):
        return r.val_acc, r.params, r.latency_ms

    for f in front.itertuples():
        assert f.genome in set(ok["genome"])
        assert not any(objs.dominates(point(e), point(f), o) for e in ok.itertuples())
    for e in ok.itertuples():  # and everything not on the front is dominated by it
        if e.genome not in set(front["genome"]):
            assert any(objs.dominates(point(f), point(e), o) for f in front.itertuples())
    progress = pd.read_csv(run / "progress.csv")
    assert list(progress["gen"]) == [0, 1, 2] and (progress["hypervolume"].diff().fillna(0) >= 0).all()
    champion = json.loads((run / "champion.json").read_text())
    assert champion["genome"] in set(front["genome"]) and champion["rule"].startswith("max-acc")
    finalists = champion["finalists"]  # the most accurate after the brief training (two: the default), again
    assert [f["val_acc"] for f in finalists] == sorted(front["val_acc"], reverse=True)[: len(finalists)]
    assert len(finalists) == min(2, len(front))
    assert champion["finalist"]["val_acc"] == max(f["finalist_val_acc"] for f in finalists)


def test_a_run_replayed_from_its_config_is_the_same_search(uninterrupted, tmp_path, capsys):
    argv = ["evolve", "--config", str(uninterrupted / "config.json"), "--run-dir", str(tmp_path / "again")]
    assert main([*argv, "--population", "12", "--jobs", "1"]) == 0
    assert "--population: ignored" in capsys.readouterr().err
    assert _summary(tmp_path / "again") == _summary(uninterrupted)  # its workers are this machine's, as asked
    replayed = json.loads((tmp_path / "again" / "config.json").read_text())
    assert replayed["evaluation"]["jobs"] == 1 and replayed["cpu"] == cpu_model()


def test_run_log_tells_the_story_and_quiet_keeps_the_console_to_warnings(uninterrupted, capsys):
    text = (uninterrupted / "run.log").read_text()
    assert "started: " in text and "generation 2/2: 8 networks" in text and "hypervolume" in text
    assert main(["evolve", "-q", "--resume", str(uninterrupted), "--jobs", "1"]) == 0
    assert "loading data" not in capsys.readouterr().err
    assert (uninterrupted / "run.log").read_text().count("resumed: ") == 1


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume_equals_uninterrupted(uninterrupted, synthetic_csv, tmp_path):
    run_dir = tmp_path / "killed"
    proc = _spawn_evolve(
        run_dir, synthetic_csv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    _wait_for_first_generation(run_dir, deadline)
    cache = run_dir / "cache.jsonl"
    n_after_gen0 = len(cache.read_text().splitlines())
    while len(cache.read_text().splitlines()) < n_after_gen0 + 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # ... and a couple of generation-1 evaluations are in the cache
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pd.read_csv(run_dir / "progress.csv")["gen"].max() < 2, "the run finished before it was killed"

    assert main(["evolve", "--resume", str(run_dir), "--generations", "2"]) == 0
    assert _summary(run_dir) == _summary(uninterrupted)
    # a training appends a record without latency (its latency comes in a record appended after it); the
    # finalists' longer trainings are other evaluations of the same genomes
    records = [r for r in map(json.loads, cache.read_text().splitlines()) if r["fidelity"] == "cheap"]
    trainings = Counter(r["genome"] for r in records if "latency_ms" not in r)
    assert set(trainings.values()) == {1}, "resume trained a recorded genome again"


def test_penalty_mode_runs(synthetic_csv, tmp_path):
    assert _evolve(tmp_path / "pen", synthetic_csv, "--mode", "penalty", "--generations", "1", *FAST) == 0
    evals = pd.read_csv(tmp_path / "pen" / "evaluations.csv")
    assert (evals["generation"] == 1).sum() == 8 - 2  # two elites survive untouched, six children
    assert (tmp_path / "pen" / "champion.json").exists()


@functools.cache
def _share_over(space: str, mflops: float, n: int = 100) -> float:
    """The share of uniform samples of ``space`` over a FLOPs budget: what a budget-blind search would waste."""
    rng, sp = random.Random(0), load_space(space)
    return sum(count_flops(build(sample(sp, rng))) > mflops * 1e6 for _ in range(n)) / n


@pytest.mark.parametrize("algorithm", ["nsga2", "random"])
def test_searches_spend_no_evaluation_on_networks_over_the_budget(algorithm, synthetic_csv, tmp_path):
    assert _share_over("tiny", 0.3) > 0.3, "the budget should split the tiny space's networks"
    run = tmp_path / algorithm
    assert (
        _evolve(run, synthetic_csv, "--algorithm", algorithm, "--max-mflops", "0.3", "--generations", "1", *FAST) == 0
    )
    evals = pd.read_csv(run / "evaluations.csv")
    assert len(evals) == 16 and (evals["status"] == "ok").all() and (evals["flops"] <= 0.3e6).all()
    assert evals["genome"].nunique() >= 12  # new networks, not the budget's fallback of repeating parents


def test_max_mflops_replaces_the_space_budget_and_survives_resume(synthetic_csv, tmp_path):
    run = tmp_path / "budget"
    assert _evolve(run, synthetic_csv, "--max-mflops", "0.3", "--generations", "0", *FAST) == 0
    assert json.loads((run / "config.json").read_text())["problem"]["max_mflops"] == 0.3
    assert main(["evolve", "--resume", str(run), "--generations", "1"]) == 0
    evals = pd.read_csv(run / "evaluations.csv")
    assert (evals["generation"] == 1).sum() == 8 and (evals["flops"] <= 0.3e6).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "/nonexistent/fer.csv"], "/nonexistent/fer.csv: data file or folder not found"),
        (["--space", "/nonexistent.toml"], "/nonexistent.toml: search-space file not found"),
        (["--population", "6"], "population must be a multiple of 4"),
        (["--objectives", "acc,speed"], "unknown objective(s) ['speed']"),
        (["--resume", "/nonexistent_run"], "/nonexistent_run: not a run directory"),
        (["--max-mflops", "0"], "--max-mflops must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(synthetic_csv, tmp_path, capsys, extra, message):
    argv = ["evolve", "--data", str(synthetic_csv), "--run-dir", str(tmp_path / "r"), *ARGS, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_existing_run_is_not_overwritten(uninterrupted, synthetic_csv, capsys):
    before = (uninterrupted / "cache.jsonl").read_text()
    assert _evolve(uninterrupted, synthetic_csv) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    assert (uninterrupted / "cache.jsonl").read_text() == before


def test_a_search_started_where_another_has_just_begun_leaves_its_config_alone(synthetic_csv, tmp_path, capsys):
    from nas import rundir

    run = rundir.make_dir(tmp_path / "r")
    (run / "config.json").write_text('{"the first search": "its settings"}')  # before its first cache line
    with rundir.locked(run):  # the first search holds the directory
        assert _evolve(run, synthetic_csv) == 2
    assert "in use by process" in capsys.readouterr().err
    assert (run / "config.json").read_text() == '{"the first search": "its settings"}'


def test_a_resume_refused_for_fewer_generations_or_a_lost_evaluation_changes_nothing(uninterrupted, tmp_path, capsys):
    import shutil

    run = shutil.copytree(uninterrupted, tmp_path / "run")
    before = (run / "config.json").read_text()
    assert main(["evolve", "--resume", str(run), "--generations", "1"]) == 2
    assert f"--generations 1: {run} has searched 2 already" in capsys.readouterr().err
    assert (run / "config.json").read_text() == before
    lines = (run / "cache.jsonl").read_text().splitlines(keepends=True)
    lost = json.loads(lines[0])["cache_key"]  # an evaluation the checkpoint holds (its lines: training, latency)
    (run / "cache.jsonl").write_text("".join(line for line in lines if json.loads(line)["cache_key"] != lost))
    assert main(["evolve", "--resume", str(run), "--generations", "3", "--jobs", "1"]) == 2
    assert "is missing from cache.jsonl" in capsys.readouterr().err
    assert (run / "config.json").read_text() == before


def test_a_resume_finds_its_data_where_it_moved_and_refuses_other_data(uninterrupted, synthetic_csv, tmp_path,
                                                                       monkeypatch, capsys):  # fmt: skip
    import shutil

    run = shutil.copytree(uninterrupted, tmp_path / "run")
    shutil.copy(synthetic_csv, tmp_path / "moved.csv")
    monkeypatch.chdir(tmp_path)  # a relative path is kept absolute: a later resume may start anywhere
    assert main(["evolve", "--resume", str(run), "--data", "moved.csv", "--jobs", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["data"] == str(tmp_path / "moved.csv")
    before = (run / "config.json").read_text()
    assert main(["evolve", "--resume", str(run), "--data", "synthetic:300", "--jobs", "1"]) == 2
    assert "synthetic:300 is not the data this run started with" in capsys.readouterr().err
    assert (run / "config.json").read_text() == before


def test_report_redraws_from_csv(uninterrupted):
    """The plots come from the tables alone: redrawn from them, they are the very images the search drew."""
    drawn = {png.name: png.read_bytes() for png in uninterrupted.glob("*.png")}
    assert {"pareto_params.png", "progress.png"} <= set(drawn)
    for png in uninterrupted.glob("*.png"):
        png.unlink()
    assert main(["report", str(uninterrupted)]) == 0
    assert {png.name: png.read_bytes() for png in uninterrupted.glob("*.png")} == drawn


DRAWN = [("evaluations.csv", "generation"), ("evaluations.csv", "genome"), ("pareto.csv", "val_acc"),
         ("pareto.csv", "params"), ("progress.csv", "hypervolume"), ("progress.csv", "front_size")]  # fmt: skip


@pytest.mark.parametrize(("table", "column"), DRAWN)
def test_report_on_a_table_without_a_column_it_draws_is_one_line(uninterrupted, tmp_path, table, column, capsys):
    import shutil

    run = shutil.copytree(uninterrupted, tmp_path / "run")
    pd.read_csv(run / table).drop(columns=[column]).to_csv(run / table, index=False)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run / table}: no column(s)") and column in err and len(err.splitlines()) == 1


def test_penalty_forms_reward_small_and_punish_large():
    from nas.evolve.algorithms.ga import Options, penalized_fitness

    def rec(params):
        return {"status": "ok", "val_acc": 0.6, "params": params, "latency_ms": 1.0}

    for form in ("mnas", "linear"):
        options = Options(penalty=form, target_params=1e5)
        at, small, large = (penalized_fitness(rec(p), options, latency=True) for p in (1e5, 5e4, 4e5))
        assert at == pytest.approx(0.6) and small > at > large
        assert penalized_fitness({"status": "failed"}, options, latency=True) < large
    linear = Options(penalty="linear", target_params=1e5)
    assert penalized_fitness(rec(2e5), linear, latency=True) == pytest.approx(0.6 - 0.02)  # 2 points per doubling


def test_baselines_command_prints_their_sizes(capsys):
    assert main(["baselines"]) == 0
    out = capsys.readouterr().out
    assert "mini_xception" in out and "64,023" in out and "812,903" in out


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(synthetic_csv, tmp_path):
    run_dir = tmp_path / "term"
    proc = _spawn_evolve(
        run_dir, synthetic_csv, "--generations", "5", *FAST, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_first_generation(run_dir, time.monotonic() + 300)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"continue with: python scripts/evolve.py --resume {run_dir}" in err  # as it was run
    assert (run_dir / "checkpoint.json").exists()


def test_resume_before_the_first_checkpoint_restarts_from_the_cache(uninterrupted, synthetic_csv, tmp_path):
    run_dir = tmp_path / "early"
    assert _evolve(run_dir, synthetic_csv, "--generations", "0", *FAST) == 0
    (run_dir / "checkpoint.json").unlink()  # as if stopped before the first checkpoint was written
    lines = len((run_dir / "cache.jsonl").read_text().splitlines())
    assert main(["evolve", "--resume", str(run_dir), "--generations", "0"]) == 0
    assert len((run_dir / "cache.jsonl").read_text().splitlines()) == lines  # nothing trained again


def test_a_second_process_on_a_run_directory_in_use_exits_2(uninterrupted, capsys):
    from nas import rundir

    before = {name: (uninterrupted / name).read_text() for name in ("cache.jsonl", "config.json")}
    with rundir.locked(uninterrupted):  # as a search still running in it holds it
        assert main(["evolve", "--resume", str(uninterrupted), "--generations", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and f"in use by process {os.getpid()}" in err
    assert {name: (uninterrupted / name).read_text() for name in before} == before  # its generations too


def test_on_a_continuable_schedule_the_champion_leaves_the_search_fully_trained(synthetic_csv, tmp_path, monkeypatch):
    """Rungs of 1 and 2 epochs of a 6-epoch wsd schedule; the finalists finish their own training (the top
    rung), the champion's test report is written, and train.py reuses that training: no epoch again."""
    import nas.training.loop

    run = tmp_path / "run"
    assert _evolve(run, synthetic_csv, "--fidelity", "140x6b32wsd", "--rungs", "1,2", "--generations", "1",
                   "--finalists", "2") == 0  # fmt: skip
    champion = json.loads((run / "champion.json").read_text())
    assert champion["finalist"]["epochs"] == 6 and (run / champion["finalist"]["checkpoint"]).is_file()
    assert champion["rule"].endswith("then the best of the top 2 after their full training (the top rung)")
    report = json.loads((run / "report.json").read_text())
    assert report["genome"] == champion["genome"] and report["epochs_run"] == 6 and report["recipe"] == "searched"
    assert report["val_acc"] == champion["finalist"]["val_acc"]  # the very training the champion was chosen on
    top_rung = report["search"]["top_rung_minutes"]  # from the command to this report: the search, then this
    assert top_rung == round(champion["top_rung_seconds"] / 60, 1) and champion["top_rung_seconds"] > 0
    assert f"then {top_rung} minutes of the finalists' full training" in (run / "report.md").read_text()
    evaluations = pd.read_csv(run / "evaluations.csv")
    assert set(evaluations["epochs"].dropna()) <= {1, 2}  # the rungs; the top rung is the finalists' alone
    progress = pd.read_csv(run / "progress.csv")
    assert list(progress["rung_networks"]) == ["8/3", "8/3"] and (progress["states_mb"] > 0).all()
    trained = []
    real = nas.training.loop._train_epoch
    monkeypatch.setattr(nas.training.loop, "_train_epoch", lambda *a: trained.append(a[4]) or real(*a))
    (run / "report.json").unlink()
    assert main(["train", "--run", str(run), "--epochs", "6"]) == 0  # the seed: the search's own (7)
    again = json.loads((run / "report.json").read_text())
    assert trained == [] and again["ten_crop"] == report["ten_crop"] and again["recipe"] == "searched"
    other = ["train", "--run", str(run), "--epochs", "2", "--seed", "1", "--out", str(tmp_path / "seed1")]
    assert main(other) == 0  # another seed of the search's recipe, validated every epoch (the search's: at rungs)
    history = pd.read_csv(tmp_path / "seed1" / "history.csv")
    assert trained == [0, 1] and history["val_acc"].notna().all()


def test_a_default_search_starts_from_the_baselines_that_fit_marked_as_seeds_and_resume_keeps_them(
    synthetic_csv, tmp_path
):
    run = tmp_path / "seeded"
    args = ("--data", str(synthetic_csv), "--space", "default", "--population", "4", "--jobs", "2", *FAST)
    assert main(["evolve", "--run-dir", str(run), *args, "--generations", "0"]) == 0  # the defaults otherwise
    config = json.loads((run / "config.json").read_text())
    assert config["search"]["seed_networks"] == "baselines" and "cnn4" in config["search"]["seeds"]
    assert config["problem"]["max_latency_ms"] == 1.0 and config["problem"]["max_mflops"] is None
    first = pd.read_csv(run / "evaluations.csv")
    seeds = first[first["origin"].notna()]
    assert sorted(seeds["origin"]) == ["cnn4", "mini_xception"] and (seeds["variations"] == 0).all()
    assert (seeds["generation"] == 0).all() and (seeds["status"] == "ok").all()  # vgg and mobilenetv2: over 1 ms
    assert main(["evolve", "--resume", str(run), "--generations", "1"]) == 0
    resumed = pd.read_csv(run / "evaluations.csv")
    assert resumed[resumed["generation"] == 0][["genome", "origin", "variations"]].equals(
        first[["genome", "origin", "variations"]]
    )
    cached = [json.loads(line) for line in (run / "cache.jsonl").read_text().splitlines()]
    cnn4 = [r for r in cached if r["genome"] == config["search"]["seeds"]["cnn4"]]  # lines: its record, updated
    assert len({(r["cache_key"], r["train_seconds"]) for r in cnn4}) == 1  # trained once, resumed or not
    descendants = resumed[(resumed["generation"] > 0) & resumed["origin"].notna()]
    assert (descendants["variations"] >= 0).all()
    front = pd.read_csv(run / "pareto.csv")
    champion = json.loads((run / "champion.json").read_text())
    assert {"origin", "variations"} <= set(front.columns) and "origin" in champion


def test_seed_networks_from_a_file_and_bad_lines_named(synthetic_csv, tmp_path, capsys):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# mine\nconv_k3_c8_s1_relu_bn | gap\n\nconv_k3_c4_s2_relu_bn | pool_max | gap\n")
    assert _evolve(tmp_path / "r", synthetic_csv, "--seed-networks", str(seeds), "--generations", "0", *FAST) == 0
    evals = pd.read_csv(tmp_path / "r" / "evaluations.csv")
    assert sorted(evals["origin"].dropna()) == ["seeds.txt:2", "seeds.txt:4"]
    seeds.write_text("conv_k3_c8_s1_relu_bn | gap\nconv_k3_c8 | gap\n")
    assert _evolve(tmp_path / "bad", synthetic_csv, "--seed-networks", str(seeds), *FAST) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {seeds}:2: not a genome")
    assert not (tmp_path / "bad").exists()
