import json

import optuna
import pytest

from nas.cli import main
from nas.tuning import config_from_params, default_params

GENOME = "conv_k3_c8_s1_relu_bn | pool_max | conv_k3_c16_s1_relu_bn | gap"


@pytest.fixture
def run_dir(tmp_path, synthetic_csv):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": str(synthetic_csv)}))
    (run / "champion.json").write_text(json.dumps({"genome": GENOME, "rule": "test"}))
    return run


def test_study_with_pruning_writes_db_and_tuned_json_and_resumes(run_dir):
    args = ["tune", "--run", str(run_dir), "--trials", "3", "--epochs", "2", "--train-images", "0"]
    assert main(args) == 0
    tuned = json.loads((run_dir / "tuned.json").read_text())
    assert (run_dir / "tune.db").exists() and (run_dir / "tune_history.png").exists()
    assert tuned["genome"] == GENOME and 0 <= tuned["value"] <= 1
    assert tuned["train_config"]["optimizer"] in ("sgd", "nesterov", "adam", "adamw")
    assert main(args) == 2  # an existing study is not silently reused ...
    assert main([*args[:4], "5", *args[5:], "--resume"]) == 0  # ... but continued on request
    study = optuna.load_study(study_name=tuned["study"], storage=f"sqlite:///{run_dir / 'tune.db'}")
    assert len(study.trials) == 5
    assert study.trials[0].params == default_params()  # the default recipe is measured first, once
    assert tuned["value"] >= study.trials[0].value
    assert all(len(t.intermediate_values) == 2 for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.parametrize("pruner, pruned", [("median", [4]), ("none", [])])
def test_the_pruner_stops_a_hopeless_trial_after_its_first_epoch(pruner, pruned, run_dir, monkeypatch):
    import nas.tuning
    from nas.training import TrainResult

    epochs_run = []

    def fake_train(model, train_split, val_split, cfg, device, on_epoch):  # trial 4 is hopeless
        acc = 0.1 if len(epochs_run) == 4 else 0.9
        epochs_run.append(0)
        for epoch in range(cfg.epochs):
            epochs_run[-1] += 1
            on_epoch(epoch, {"val_acc": acc})
        return TrainResult(best_acc=acc, best_f1=acc, epochs_run=cfg.epochs)

    monkeypatch.setattr(nas.tuning, "train", fake_train)
    study = nas.tuning.tune(GENOME, "synthetic:70", run_dir, trials=6, epochs=3, train_images=None, pruner=pruner)
    assert [i for i, t in enumerate(study.trials) if t.state == optuna.trial.TrialState.PRUNED] == pruned
    assert epochs_run == [3, 3, 3, 3, 2 if pruned else 3, 3]  # pruned at the end of its second epoch


def test_a_study_without_a_finished_trial_leaves_nothing_that_blocks_the_retry(run_dir, monkeypatch, capsys):
    import nas.tuning

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure of every trial")

    monkeypatch.setattr(nas.tuning, "train", broken)
    args = ["tune", "--run", str(run_dir), "--trials", "2", "--epochs", "1", "--data", "synthetic:70"]
    assert main(args) == 2
    assert "no trial finished" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (run_dir / "tune.db").exists() and not (run_dir / "tuned.json").exists()
    monkeypatch.undo()
    assert main(args) == 0  # not "study exists already"


def test_train_resumes_and_writes_checkpoint_and_report(run_dir, monkeypatch):
    import nas.training

    real_train = nas.training.train

    def interrupted(*args, on_epoch, **kwargs):  # Ctrl-C at the end of the first epoch
        def hook(epoch, row):
            on_epoch(epoch, row)
            raise KeyboardInterrupt

        return real_train(*args, on_epoch=hook, **kwargs)

    monkeypatch.setattr(nas.training, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--run", str(run_dir), "--epochs", "2"])
    assert (run_dir / "train_state.pt").exists() and not (run_dir / "report.json").exists()
    monkeypatch.setattr(nas.training, "train", real_train)
    assert main(["train", "--run", str(run_dir), "--epochs", "3"]) == 2  # other settings: refused, not mixed
    assert main(["train", "--run", str(run_dir), "--epochs", "2"]) == 0  # continues from epoch 1
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 2 and report["split"] == "PrivateTest" and report["images"] == 70
    for key in ("single_crop", "ten_crop"):
        assert 0 <= report[key]["acc"] <= 1 and 0 <= report[key]["f1"] <= 1
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(map(sum, report["confusion"])) == 70
    assert (run_dir / "model.pt").exists() and (run_dir / "confusion.png").exists()
    assert "| champion |" in (run_dir / "report.md").read_text()  # the name given by scripts/train.py


def test_baseline_with_same_recipe_appears_in_report(run_dir):
    assert main(["train", "--run", str(run_dir), "--baseline", "mini_xception", "--epochs", "1"]) == 0
    assert (run_dir / "baselines" / "mini_xception" / "report.json").exists()
    assert main(["train", "--run", str(run_dir), "--epochs", "1"]) == 0
    assert "| mini_xception |" in (run_dir / "report.md").read_text()


def test_missing_champion_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--run", str(tmp_path / "empty"), "--data", "synthetic:70"]) == 2
    assert "no champion yet" in capsys.readouterr().err


def test_default_params_are_the_default_recipe():
    from nas.training import TrainConfig

    assert config_from_params(default_params(), 5) == TrainConfig(epochs=5)


def test_tuned_schedule_is_stretched_to_the_full_run():
    from nas.tuning import tuned_config

    tuned = {
        "train_config": {"scheduler": "step", "step_size": 1, "restart_period": 2, "epochs": 3},
        "budget": {"epochs": 3},
    }
    cfg = tuned_config(tuned, 30)
    assert (cfg.epochs, cfg.step_size, cfg.restart_period) == (30, 10, 20)
    assert tuned_config(tuned, 3).step_size == 1
