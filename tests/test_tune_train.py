import json

import optuna
import pytest
from conftest import CHAMPION, load_benchmark

from nas.cli import main
from nas.training.tuning import config_from_params, default_params

GENOME = CHAMPION


def test_study_with_pruning_writes_db_and_tuned_json_and_resumes(run_dir, capsys):
    args = [
        "tune",
        "--run",
        str(run_dir),
        "--trials",
        "3",
        "--epochs",
        "2",
        "--train-images",
        "0",
        "--confirm-epochs",
        "2",
    ]
    assert main(args) == 0
    tuned = json.loads((run_dir / "tuned.json").read_text())
    assert set(tuned["confirmation"]["runs"]) == {"default", "trial 1", "trial 2"}  # the full-length runs
    assert (run_dir / "tune.db").exists() and (run_dir / "tune_history.png").exists()
    assert tuned["genome"] == GENOME and 0 <= tuned["value"] <= 1
    assert tuned["train_config"]["optimizer"] in ("sgd", "nesterov", "adam", "adamw")
    assert main(args) == 2  # an existing study is not silently reused ...
    longer = [*args[:6], "3", *args[7:]]  # trials of another length would not compare with the kept ones
    assert main([*longer, "--resume"]) == 2
    assert "--epochs 3: the study in sqlite:///" in capsys.readouterr().err
    assert main([*args, "--resume", "--seed", "1"]) == 2  # other trials' subsets and training seeds
    assert "--seed 1: the study in sqlite:///" in capsys.readouterr().err
    assert main([*args, "--resume", "--data", "synthetic:300"]) == 2  # other data
    assert "--data (content " in capsys.readouterr().err
    assert main([*args[:4], "5", *args[5:], "--resume"]) == 0  # ... but continued on request
    assert len(json.loads((run_dir / "confirm.json").read_text())) >= 3
    study = optuna.load_study(study_name=tuned["study"], storage=f"sqlite:///{run_dir / 'tune.db'}")
    assert len(study.trials) == 5
    assert study.trials[0].params == default_params()  # the default recipe is measured first, once
    assert tuned["value"] >= study.trials[0].value
    assert all(len(t.intermediate_values) == 2 for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.parametrize("seed", ["0", "1"])  # the study's seed: its sampler's and its trials', not a recipe's
def test_the_final_training_continues_the_confirmations_run_of_its_recipe(run_dir, caplog, seed):
    args = ["tune", "--run", str(run_dir), "--trials", "2", "--epochs", "1", "--confirm", "1", "--confirm-epochs", "2",
            "--seed", seed]  # fmt: skip
    assert main(args) == 0
    runs = json.loads((run_dir / "tuned.json").read_text())["confirmation"]["runs"]
    with caplog.at_level("INFO", logger="nas"):
        assert main(["train", "--run", str(run_dir), "--epochs", "2"]) == 0
    assert "continued, not repeated" in caplog.text
    report = json.loads((run_dir / "report.json").read_text())
    assert report["val_acc"] in {r["val_acc"] for r in runs.values()} and report["epochs_run"] == 2
    caplog.clear()
    with caplog.at_level("INFO", logger="nas"):  # other settings: a training of its own
        assert main(["train", "--run", str(run_dir), "--epochs", "1", "--out", str(run_dir / "other")]) == 0
    assert "continued, not repeated" not in caplog.text


@pytest.mark.parametrize("pruner, pruned", [("median", [4]), ("none", [])])
def test_the_pruner_stops_a_hopeless_trial_after_its_first_epoch(pruner, pruned, run_dir, monkeypatch):
    import nas.training.tuning
    from nas.training.loop import TrainResult

    epochs_run = []

    def fake_train(model, train_split, val_split, cfg, device, on_epoch, targets=None):  # trial 4 is hopeless
        acc = 0.1 if len(epochs_run) == 4 else 0.9
        epochs_run.append(0)
        for epoch in range(cfg.epochs):
            epochs_run[-1] += 1
            on_epoch(epoch, {"val_acc": acc})
        return TrainResult(best_acc=acc, best_f1=acc, epochs_run=cfg.epochs)

    monkeypatch.setattr(nas.training.tuning, "train", fake_train)
    study = nas.training.tuning.tune(
        GENOME, "synthetic:70", run_dir,
        nas.training.tuning.StudyOptions(trials=6, epochs=3, train_images=None, pruner=pruner),
        confirmation=nas.training.tuning.Confirmation(best=0),
    )  # fmt: skip
    assert [i for i, t in enumerate(study.trials) if t.state == optuna.trial.TrialState.PRUNED] == pruned
    assert epochs_run == [3, 3, 3, 3, 2 if pruned else 3, 3]  # pruned at the end of its second epoch


def test_a_study_without_a_finished_trial_leaves_nothing_that_blocks_the_retry(run_dir, monkeypatch, capsys):
    import nas.training.tuning

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure of every trial")

    monkeypatch.setattr(nas.training.tuning, "train", broken)
    args = ["tune", "--run", str(run_dir), "--trials", "2", "--epochs", "1", "--data", "synthetic:70"]
    assert main(args) == 2
    assert "no trial finished" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (run_dir / "tune.db").exists() and not (run_dir / "tuned.json").exists()
    monkeypatch.undo()
    assert main(args) == 0  # not "study exists already"


def test_train_resumes_and_writes_checkpoint_and_report(run_dir, monkeypatch):
    import nas.training.loop

    real_train = nas.training.loop.train

    def interrupted(*args, on_epoch, **kwargs):  # Ctrl-C at the end of the first epoch
        def hook(epoch, row):
            on_epoch(epoch, row)
            raise KeyboardInterrupt

        return real_train(*args, on_epoch=hook, **kwargs)

    monkeypatch.setattr(nas.training.loop, "train", interrupted)
    assert main(["train", "--run", str(run_dir), "--epochs", "2"]) == 130  # one line, as for evolve
    assert (run_dir / "train_state.pt").exists() and not (run_dir / "report.json").exists()
    monkeypatch.setattr(nas.training.loop, "train", real_train)
    # other settings: refused, not mixed (a longer wsd schedule would continue it: its epoch 1 is a prefix)
    assert main(["train", "--run", str(run_dir), "--epochs", "2", "--label-smoothing", "0.1"]) == 2
    progress = "gen,evals,cache_hits,failed,seconds\n0,16,0,0,100.0\n1,12,2,1,190.5\n"  # the search behind it
    (run_dir / "progress.csv").write_text(progress)
    assert main(["train", "--run", str(run_dir), "--epochs", "2"]) == 0  # continues from epoch 1
    report = json.loads((run_dir / "report.json").read_text())
    assert report["search"] == {"run": "run", "generations": 1, "networks_trained": 25, "minutes": 3.2}
    assert (
        "Searched in run run: 1 generations, 25 networks trained, 3.2 minutes." in (run_dir / "report.md").read_text()
    )
    assert report["epochs_run"] == 2 and report["split"] == "PrivateTest" and report["images"] == 70
    for key in ("single_crop", "ten_crop"):
        assert 0 <= report[key]["acc"] <= 1 and 0 <= report[key]["f1"] <= 1
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(map(sum, report["confusion"])) == 70
    assert (run_dir / "model.pt").exists() and (run_dir / "confusion.png").exists()
    assert "| champion |" in (run_dir / "report.md").read_text()  # the name given by scripts/train.py


def test_baseline_with_same_recipe_appears_in_report(run_dir):
    (run_dir / "progress.csv").write_text("gen,evals,cache_hits,failed,seconds\n0,16,0,0,100.0\n")
    assert main(["train", "--run", str(run_dir), "--baseline", "mini_xception", "--epochs", "1"]) == 0
    assert "search" not in json.loads((run_dir / "baselines" / "mini_xception" / "report.json").read_text())
    assert main(["train", "--run", str(run_dir), "--epochs", "1"]) == 0
    assert "| mini_xception |" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "report.json").read_text())["search"]["networks_trained"] == 16
    other = GENOME.replace("c16", "c8")  # neither the champion nor on a front: the search did not find it
    assert main(["train", "--run", str(run_dir), "--genome", other, "--epochs", "1", "--out", str(run_dir / "g")]) == 0
    assert "search" not in json.loads((run_dir / "g" / "report.json").read_text())
    champion = (run_dir / "model.pt").read_bytes()
    assert main(["train", "--run", str(run_dir), "--genome", other, "--epochs", "1"]) == 0  # no --out: its own folder
    from nas.genome.grammar import parse_genome

    assert (run_dir / "networks" / parse_genome(other).key / "model.pt").exists()
    assert (run_dir / "model.pt").read_bytes() == champion  # the champion's training is not written over


def test_missing_champion_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--run", str(tmp_path / "empty"), "--data", "synthetic:70"]) == 2
    assert "no champion yet" in capsys.readouterr().err


def test_default_params_are_the_default_recipe():
    from nas.training.loop import TrainConfig

    assert config_from_params(default_params(), 5) == TrainConfig(epochs=5)


def test_tuned_schedule_is_stretched_to_the_full_run():
    from nas.training.tuning import tuned_config

    tuned = {
        "train_config": {"scheduler": "step", "step_size": 1, "restart_period": 2, "epochs": 3},
        "budget": {"epochs": 3},
    }
    cfg = tuned_config(tuned, 30)
    assert (cfg.epochs, cfg.step_size, cfg.restart_period) == (30, 10, 20)
    assert tuned_config(tuned, 3).step_size == 1


def _stub_training(monkeypatch, tuned_full: float, short: dict[int, float] | None = None):
    """Trials: the default scores 0.5 at the short budget, every other recipe more. Full length (7 epochs):
    the default 0.7, any other recipe ``tuned_full``. Returns the list of full-length recipes trained."""
    import nas.training.tuning
    from nas.training.loop import RECIPES, TrainResult

    full_runs = []

    def fake_train(model, train_split, val_split, cfg, device, on_epoch=None, checkpoint=None, targets=None):
        default = cfg.replace(epochs=RECIPES["default"].epochs, early_stop=0, seed=0, cpu_bf16=False)
        is_default = default == RECIPES["default"]
        if cfg.epochs == 7:
            full_runs.append("default" if is_default else cfg.optimizer)
            acc = 0.7 if is_default else tuned_full
        else:
            acc = 0.5 if is_default else 0.6 + 0.01 * len(full_runs)
        return TrainResult(best_acc=acc, best_f1=acc, epochs_run=cfg.epochs, seconds=1.0)

    monkeypatch.setattr(nas.training.tuning, "train", fake_train)
    return full_runs


@pytest.mark.parametrize(
    "tuned_full, adopted, said", [(0.65, False, "the default won"), (0.705, False, "a tie"), (0.75, True, "beat")]
)
def test_the_tuned_recipe_is_adopted_only_if_it_beats_the_default_at_full_length(
    run_dir, monkeypatch, tuned_full, adopted, said, caplog
):
    import logging

    from nas.training.final import choose_recipe

    full_runs = _stub_training(monkeypatch, tuned_full)
    args = ["tune", "--run", str(run_dir), "--trials", "4", "--epochs", "2", "--data", "synthetic:70"]
    assert main([*args, "--confirm", "2", "--confirm-epochs", "7"]) == 0
    tuned = json.loads((run_dir / "tuned.json").read_text())
    c = tuned["confirmation"]
    assert len(full_runs) == 3 and full_runs[0] == "default" and c["adopted"] is adopted
    assert c["runs"]["default"]["val_acc"] == 0.7 and said in c["verdict"]
    assert c["margin"] == 0.01  # a win by 0.005 at one seed each is a tie
    assert tuned["value"] > 0.5  # the study's best at the short budget is never the default here
    caplog.set_level(logging.INFO)
    cfg, name = choose_recipe(run_dir, "auto", 30)
    assert name == ("tuned" if adopted else "default")
    if not adopted:
        assert f"not adopted ({said} at 7 epochs" in caplog.text
        assert choose_recipe(run_dir, "tuned", 30)[1] == "tuned"  # still there on request
    # the confirmation is kept: tuning again with more trials trains no recipe twice
    assert main([*args[:4], "5", *args[5:], "--resume", "--confirm", "2", "--confirm-epochs", "7"]) == 0
    assert len(full_runs) == len(set(json.loads((run_dir / "confirm.json").read_text()))) <= 5


def test_a_confirmation_over_its_cap_trains_nothing_and_keeps_the_default(run_dir, monkeypatch):
    from nas.training.final import choose_recipe

    full_runs = _stub_training(monkeypatch, 0.9)
    args = ["tune", "--run", str(run_dir), "--trials", "3", "--epochs", "2", "--data", "synthetic:70"]
    assert main([*args, "--confirm-epochs", "7", "--confirm-core-hours", "1e-9"]) == 0
    c = json.loads((run_dir / "tuned.json").read_text())["confirmation"]
    assert full_runs == [] and not c["adopted"] and "over --confirm-core-hours" in c["verdict"]
    assert choose_recipe(run_dir, "auto", 30)[1] == "default"


def test_train_writes_its_curve_and_names_the_recipe(run_dir, capsys):
    args = ["train", "--run", str(run_dir), "--epochs", "2", "--recipe", "vgg", "--class-balance", "softmax"]
    assert main([*args, "--patience", "5"]) == 0
    out = run_dir / "recipe-vgg"
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"] == "vgg + class_balance=softmax" and report["epochs_run"] == 2
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,val_acc") and len(history) == 3
    assert (out / "history.png").exists()
    err = capsys.readouterr().err
    assert "2/2" in err and "cuts it while" not in err  # the bar over the epochs; a plateau schedule may stop early
    assert main(["train", "--run", str(run_dir), "--epochs", "1", "--patience", "1"]) == 0
    assert "| same genome, recipe-vgg |" in (run_dir / "report.md").read_text()
    assert "--patience 1 with a wsd schedule" in capsys.readouterr().err  # the trap of early stopping


@pytest.mark.bench
def test_final_benchmark_trains_its_plan_resumes_and_reports(tmp_path, run_dir, capsys, monkeypatch):
    bench = load_benchmark("bench_final")
    out = tmp_path / "final"
    front = f"key,genome,origin,variations\n0123456789abcdef,{GENOME.replace('c16', 'c8')},cnn4,3\n"
    (run_dir / "pareto.csv").write_text(front)
    args = ["--data", "synthetic:70", "--out", str(out), "--epochs", "1", "--device", "cpu", "--run", str(run_dir)]
    plan = [
        "--plan",
        "cnn4:default:0,cnn4:vgg+class_balance=softmax+ema=0.9:1,cnn4:default:1,0123456789abcdef:default:0",
    ]
    assert bench.main([*args, *plan]) == 0
    table = (out / "final.md").read_text()
    assert "| cnn4 | default | 0 |" in table and "| cnn4 | vgg + class_balance=softmax, ema=0.9 | 1 |" in table
    reports = {p: p.read_text() for p in out.glob("*/report.json")}
    assert len(reports) == 4
    assert json.loads(reports[out / "0123456789abcdef-default-0" / "report.json"])["genome"] == GENOME.replace(
        "c16", "c8"
    )
    accs = [json.loads(reports[out / f"cnn4-default-{seed}" / "report.json"])["ten_crop"]["acc"] for seed in (0, 1)]
    summary = next(line for line in table.splitlines() if line.startswith("| cnn4 | default | 2 |"))
    assert f"{sum(accs) / 2:.4f}" in summary and (out / "final.png").exists()  # mean over the two seeds
    assert summary.startswith("| cnn4 | default | 2 | 1,012,199 | 66.3 |")  # parameters and MFLOPs
    assert "| cnn4 +3 |" in table.split("Over seeds")[0]  # the searched row's lineage
    from nas.genome.space import load_baselines

    seed_genome = load_baselines()["cnn4"].genome
    assert f"| 0123456789abcdef | cnn4 +3 | `{GENOME.replace('c16', 'c8')}` | `{seed_genome}` |" in table
    recalls = [
        json.loads(reports[out / f"cnn4-default-{s}" / "report.json"])["per_class"]["happy"]["recall"] for s in (0, 1)
    ]
    recall_row = table.split("Recall per class")[1].split("| cnn4 | default |")[1].splitlines()[0]
    assert recall_row.split("|")[3].strip() == f"{sum(recalls) / 2:.3f}"  # happy, the 4th class: a mean of the values
    assert bench.main([*args, *plan]) == 0  # finished entries are read back, not trained again
    assert {p: p.read_text() for p in out.glob("*/report.json")} == reports and (out / "final.md").read_text() == table
    (out / "0123456789abcdef-default-0" / "model.pt").unlink()  # a report kept without its weights
    timed, bench_measure = [], bench.measure
    monkeypatch.setattr(bench, "measure", lambda models: timed.append(sorted(models)) or bench_measure(models))
    assert bench.main([*args, *plan, "--report-only"]) == 0  # each network timed again, once for all its seeds
    assert timed == [["0123456789abcdef", "cnn4"]]  # in one measurement, the one without its weights too
    rows = json.loads((out / "final.json").read_text())["rows"]
    cnn4 = {r["latency ms"] for r in rows if r["network"] == "cnn4"}
    assert len(rows) == 4 and len(cnn4) == 1 and "timed again" in (out / "final.md").read_text()
    assert rows[0]["settings"]["optimizer"] == "adamw" and "Not one recipe" not in (out / "final.md").read_text()
    with pytest.raises(SystemExit, match="is not NETWORK:RECIPE"):
        bench.main([*args, "--plan", "cnn4:default"])
    with pytest.raises(SystemExit, match="nor a key of"):  # before cnn4:default:2 trains
        bench.main([*args, "--plan", "cnn4:default:2,fedcba9876543210:default:0"])
    assert not (out / "cnn4-default-2").exists()


@pytest.mark.bench
def test_final_benchmark_continues_a_longer_wsd_entry_from_a_shorter_one(tmp_path, capsys):
    bench = load_benchmark("bench_final")
    out = tmp_path / "final"
    args = ["--data", "synthetic:70", "--out", str(out), "--epochs", "5", "--device", "cpu"]
    assert bench.main([*args, "--jobs", "2", "--plan", "mini_xception:default+scheduler=wsd+epochs=5:0,"
                       "mini_xception:default+scheduler=wsd+epochs=10:0"]) == 0  # fmt: skip
    err = capsys.readouterr().err  # the 10-epoch entry waits for the 5-epoch one and starts from its epoch 4
    assert "epochs10-0: continues " in err and "epochs5-0/train_state.stable.pt" in err
    long = json.loads((out / "mini_xception-default_schedulerwsd_epochs10-0" / "report.json").read_text())
    short = json.loads((out / "mini_xception-default_schedulerwsd_epochs5-0" / "report.json").read_text())
    assert long["epochs_run"] == 10 and short["epochs_run"] == 5
    assert "| default+scheduler=wsd, 10 epochs | 1 |" in (out / "final.md").read_text()  # the summary: as planned


def test_the_final_benchmark_trains_an_entry_after_the_ones_it_continues_or_learns_from():
    bench = load_benchmark("bench_final")
    entries = bench.parse_plan(
        "cnn4:default+scheduler=wsd+epochs=50:0,cnn4:default+scheduler=wsd:0,cnn4:default+scheduler=wsd:1,"
        "cnn4:default:0,mini_xception:default+teacher=cnn4-default_schedulerwsd-0;cnn4-default-0:0"
    )
    for e in entries:
        e["epochs"] = int(e["changes"].pop("epochs", 100))
    waits = {e["label"]: bench.waits_for(e, entries) for e in entries}
    assert waits == {
        "cnn4-default_schedulerwsd_epochs50-0": set(),
        "cnn4-default_schedulerwsd-0": {"cnn4-default_schedulerwsd_epochs50-0"},  # continues its stable state
        "cnn4-default_schedulerwsd-1": set(),  # another seed
        "cnn4-default-0": set(),
        "mini_xception-default_teachercnn4-default_schedulerwsd-0;cnn4-default-0-0": {
            "cnn4-default_schedulerwsd-0", "cnn4-default-0"
        },  # its teachers
    }  # fmt: skip


@pytest.mark.bench
def test_the_headline_benchmark_picks_per_latency_bound_the_champion_where_it_fits(run_dir, capsys, monkeypatch):
    bench = load_benchmark("bench_headline")
    big = "conv_k3_c64_s1_relu_bn | conv_k3_c64_s1_relu_bn | gap"  # slower than mini-Xception, within 1 ms
    rows = [
        ("c" * 16, big, 0.5, 80000, 2),
        ("d" * 16, GENOME, 0.3, 1500, 2),
        ("e" * 16, "conv_k3_c4_s2_relu_bn | gap", 0.2, 1500, 2),
    ]
    (run_dir / "pareto.csv").write_text(
        "key,genome,val_acc,params,epochs\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    (run_dir / "champion.json").write_text(json.dumps({"genome": big, "key": "c" * 16}))
    chosen, latency = bench.choose(run_dir)  # timed now: whatever this machine's load, a choice fits its bound
    assert set(latency) == {r[0] for r in rows} | {"mini_xception", "cnn4"} and min(latency.values()) > 0
    assert all(c["key"] is None or latency[c["key"]] <= c["limit_ms"] for c in chosen)
    # the plan from timings that do not depend on this machine's load (under load the 1 ms bound missed
    # the champion): the champion fits cnn4's bound and 1 ms, only the two small ones mini-Xception's
    fixed = {"c" * 16: 0.5, "d" * 16: 0.09, "e" * 16: 0.05, "mini_xception": 0.1, "cnn4": 0.6}
    monkeypatch.setattr(bench, "timed", lambda front, baselines: fixed)
    assert [c["key"] for c in bench.choose(run_dir)[0]] == ["d" * 16, "c" * 16, "c" * 16]
    out = run_dir.parent / "headline"
    assert (
        bench.main(
            ["--data", "synthetic:70", "--run", str(run_dir), "--out", str(out), "--seeds", "0,1", "--plan-only"]
        )
        == 0
    )
    plan = (out / "selection.md").read_text().split("plan: ")[1].strip().split(",")
    assert sorted(plan) == sorted(f"{n}:{s}" for n in ("champion:searched", "d" * 16 + ":default", "cnn4:default",
                                                       "mini_xception:default") for s in (0, 1))  # fmt: skip
    kept = json.loads((out / "selection.json").read_text())
    kept["latency"]["c" * 16] = 5.0  # a timing no measurement would give: outside every bound
    (out / "selection.json").write_text(json.dumps(kept))
    rerun = ["--data", "synthetic:70", "--run", str(run_dir), "--out", str(out), "--plan-only"]
    assert bench.main(rerun) == 0
    plan = (out / "selection.md").read_text().split("plan: ")[1]
    assert "champion" not in plan and "d" * 16 + ":default:0" in plan  # a rerun chooses from the kept timing
    (run_dir / "champion.json").write_text(json.dumps({"genome": GENOME, "key": "d" * 16}))  # the top rung's choice
    assert bench.main(rerun) == 0
    assert "champion:searched:0" in (out / "selection.md").read_text().split("plan: ")[1]  # the choice follows it


def test_the_final_benchmark_counts_a_training_planned_under_another_name_as_a_seed():
    bench = load_benchmark("bench_final")
    figures = {"params": 1, "MFLOPs": 0.1, "latency ms": 0.1, "train min": 1.0, "disgust recall": 0.5,
               "test acc (1 crop)": 0.6, "test acc (10 crops)": 0.6, "macro-F1 (10 crops)": 0.5}  # fmt: skip
    rows = [{"network": "champion", "plan": "searched", "seed": 0, **figures},
            {"network": "abc", "plan": "default+scheduler=wsd", "seed": 1, **figures},
            {"network": "abc", "plan": "default", "seed": 2, **figures}]  # fmt: skip
    rows[1] |= {"test acc (10 crops)": 0.6, "disgust recall": 0.5}  # two seeds alike still show their range
    bench.count_as(rows, bench.parse_same([["champion:searched", "abc:default+scheduler=wsd"]]))
    table = bench.summary(rows)
    assert table[["network", "plan", "seeds"]].values.tolist() == [["abc", "default+scheduler=wsd", 2],
                                                                     ["abc", "default", 1]]  # fmt: skip
    assert table["disgust recall text"].tolist() == ["0.500 (0.500-0.500)", "0.500"]  # k/55 of 55 images: 3 decimals
    settings = [{"lr": 3e-3, "epochs": 100}, {"lr": 1e-2, "epochs": 100}, {}]  # the last: an older report
    labelled = [{"network": "abc", "plan": "default", "settings": s} for s in settings]
    assert bench.mixed_settings(labelled) == ["- abc (default): its seeds trained with different lr"]
    assert bench.mixed_settings(labelled[1:]) == []
    with pytest.raises(SystemExit, match="--same: 'champion' 'abc:default' is not NETWORK:RECIPE"):
        bench.parse_same([["champion", "abc:default"]])


def test_a_default_trial_killed_while_running_is_measured_on_resume(run_dir):
    from nas.genome.grammar import parse_genome

    storage = f"sqlite:///{run_dir / 'tune.db'}"
    study = optuna.create_study(study_name=f"tune-{parse_genome(GENOME).key}", storage=storage, direction="maximize")
    study.enqueue_trial(default_params())
    study.ask()  # the default recipe's trial, then the process was killed: it stays RUNNING
    args = ["tune", "--run", str(run_dir), "--trials", "2", "--epochs", "1", "--confirm", "0", "--resume"]
    assert main(args) == 0
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    done = [t.params for t in study.trials if t.state.name == "COMPLETE"]
    assert default_params() in done


def test_a_resumed_study_does_not_draw_its_first_recipes_again(tmp_path):
    from dataclasses import replace

    from nas.training.options import StudyOptions
    from nas.training.tuning import _study

    def draw(study):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        study.tell(trial, x)
        return x

    storage, o = f"sqlite:///{tmp_path / 'tune.db'}", StudyOptions(trials=30)  # ten random trials first
    study = _study("s", storage, o)
    first = [draw(study) for _ in range(2)]
    assert draw(_study("s", storage, replace(o, resume=True))) not in first


def test_a_continued_study_that_fails_is_kept(run_dir, monkeypatch):
    import nas.training.tuning
    from nas.genome.grammar import parse_genome

    storage, name = f"sqlite:///{run_dir / 'tune.db'}", f"tune-{parse_genome(GENOME).key}"
    optuna.create_study(study_name=name, storage=storage).ask()  # another process's trial, still running
    monkeypatch.setattr(nas.training.tuning, "train", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    args = ["tune", "--run", str(run_dir), "--trials", "2", "--epochs", "1", "--confirm", "0", "--resume"]
    assert main(args) == 2
    assert len(optuna.load_study(study_name=name, storage=storage).trials) >= 1  # not deleted under the other
