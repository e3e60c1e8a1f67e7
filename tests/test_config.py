"""The run configuration and the registries are the one place a setting is declared: the command line,
the Python API and config.json derive from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas import config
from nas.cli import main
from nas.errors import NasError, SettingError
from nas.evolve.strategies import STRATEGIES

TINY = ["--space", "tiny", "--population", "4", "--generations", "0", "--fidelity", "200x1", "--jobs", "1"]
STRATEGY = """
from dataclasses import dataclass

from nas.settings import setting
from nas.evolve.strategies import Strategy


@dataclass(frozen=True)
class Options:
    repeats: int = setting(1, "how often every network is trained")


class Repeated(Strategy):
    name = "repeated"
    Options = Options

    def evaluate(self, requests, on_record=None):
        return self.evaluator.evaluate([str(r.genome) for r in requests], on_record)
"""


def test_a_strategy_registered_in_one_module_gets_its_flag_its_help_and_its_config(
    tmp_path, synthetic_csv, monkeypatch, capsys
):
    (tmp_path / "repeated_strategy.py").write_text(STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(STRATEGIES, "repeated", "repeated_strategy:Repeated")
    assert main(["evolve", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--repeats REPEATS" in help_text and "how often every network is trained (repeated: default 1)" in help_text
    run = tmp_path / "run"
    args = ["evolve", "-q", "--data", str(synthetic_csv), "--run-dir", str(run), *TINY]
    assert main([*args, "--strategy", "repeated", "--repeats", "3", "--finalists", "0"]) == 0
    stored = json.loads((run / "config.json").read_text())["evaluation"]
    assert stored["strategy"] == "repeated" and stored["strategy_options"] == {"repeats": 3}
    assert main([*args[: -len(TINY)], "--run-dir", str(tmp_path / "other"), *TINY, "--repeats", "3"]) == 2
    assert "--repeats: not an option of evaluation strategy 'halving'" in capsys.readouterr().err


def test_every_default_is_declared_once_and_the_api_and_the_flags_take_it():
    assert config.SearchConfig().generations == 30 and config.EvaluationConfig().strategy == "halving"
    import inspect

    import nas.api

    assert "generations" not in inspect.signature(nas.api.search).parameters  # no second default to drift
    with pytest.raises(SettingError, match="unknown search setting 'generation'"):
        config.create("synthetic:70", "tiny", generation=3)


def test_the_tune_and_train_flags_are_their_options_declared_once(tmp_path, capsys):
    """tune's and train's flags derive from nas.training.options; the functions that run them hold no second
    default, and a value out of range names its own flag (the confirmation's flags included)."""
    import inspect

    import nas.training.final
    import nas.training.tuning
    from nas.cli import build_parser
    from nas.settings import given
    from nas.training.options import ConfirmOptions, FinalOptions, StudyOptions

    assert not {"trials", "epochs", "pruner"} & set(inspect.signature(nas.training.tuning.tune).parameters)
    assert not {"epochs", "patience", "recipe"} & set(inspect.signature(nas.training.final.train_final).parameters)
    args = build_parser().parse_args(
        ["tune", "--run", "r", "--confirm-epochs", "7", "--epochs", "3", "--train-images", "0"]
    )
    assert given(args, ConfirmOptions) == {"epochs": 7} and given(args, StudyOptions) == {
        "epochs": 3,
        "train_images": 0,
    }
    assert StudyOptions(train_images=0).train_images is None and StudyOptions().trials == 30
    args = build_parser().parse_args(["train", "--run", "r", "--ema", "0.9"])
    assert FinalOptions(**given(args, FinalOptions)).changes() == {"ema": 0.9}
    for argv, message in [
        (["tune", "--run", str(tmp_path), "--confirm-epochs", "0"], "--confirm-epochs must be >= 1, got 0"),
        (["tune", "--run", str(tmp_path), "--trials", "0"], "--trials must be >= 1, got 0"),
        (["train", "--run", str(tmp_path), "--patience", "-1"], "--patience must be >= 0, got -1"),
        (["train", "--run", str(tmp_path), "--untuned", "--recipe", "vgg"], "--untuned and --recipe vgg exclude"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err.strip().splitlines()[-1], argv
    with pytest.raises(SettingError, match="--class-balance must be one of none, weighted, softmax, got 'x'"):
        FinalOptions(class_balance="x")


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("search", {"generations": "1"}, r"\[search\]: generations must be an integer, got '1'"),
        ("evaluation", {"jobs": 0.5}, r"\[evaluation\]: jobs must be an integer or null, got 0.5"),
        ("problem", {"objectives": "acc"}, r"\[problem\]: objectives must be a list of a string, got 'acc'"),
        ("search", {"generation": 1}, r"\[search\]: unknown setting\(s\) generation"),
        ("evaluation", {"time_limit": "abc"}, r"\[evaluation\]: time_limit must be a number or null, got 'abc'"),
        ("search", {"champion_rule": "best"}, r"--champion-rule must be one of max-acc, max-f1, knee, got 'best'"),
        ("evaluation", {"fidelity": "cheap"}, r"\[evaluation\] needs fidelity as a table"),
        ("evaluation", {"class_balance": "weighted"}, r"\[evaluation\] class_balance 'weighted' is not its fidel"),
    ],
)
def test_a_stored_configuration_is_read_by_its_types(section, value, message):
    stored = json.loads((Path(__file__).parent / "fixtures/reference/run/config.json").read_text())
    stored[section] |= value
    with pytest.raises(NasError, match=f"config.json: {message}"):
        config.RunConfig.from_dict(stored, "config.json")


def test_an_older_configuration_migrates_to_what_those_runs_did():
    stored = json.loads((Path(__file__).parent / "fixtures/reference/run/config.json").read_text())
    for name in ("latency_model", "numerics", "bf16_above_mflops", "class_balance"):
        stored["evaluation"].pop(name, None)
    for name in ("validate_every_epoch", "validate_bf16"):
        stored["evaluation"]["fidelity"].pop(name)
    old = config.RunConfig.from_dict(stored, "config.json").evaluation
    assert old.latency_model == "measured" and old.numerics == "fp32" and old.bf16_above_mflops is None
    assert old.fidelity["validate_every_epoch"] and not old.fidelity["validate_bf16"]
    roundtrip = config.RunConfig.from_dict(config.RunConfig.from_dict(stored, "c").to_dict(), "c")
    assert roundtrip.evaluation == old


def test_a_torch_latency_is_refused_where_the_latency_table_would_give_onnx_figures(tmp_path, capsys):
    with pytest.raises(SettingError, match="--latency-backend torch needs --latency-model measured"):
        config.EvaluationConfig(latency_backend="torch")
    assert config.EvaluationConfig(latency_backend="torch", latency_model="measured").latency_backend == "torch"
    assert (
        main(["evolve", "--data", "synthetic:70", "--latency-backend", "torch", "--run-dir", str(tmp_path / "r")]) == 2
    )
    assert "--latency-backend torch needs" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_time_limit_of_zero_is_none_and_every_api_function_is_reachable_from_nas():
    import inspect

    import nas
    from nas import api

    assert config.EvaluationConfig(time_limit=0).time_limit is None
    with pytest.raises(SettingError, match="--time-limit must be positive, or 0 for none"):
        config.EvaluationConfig(time_limit=-1)
    public = {n for n, f in vars(api).items() if inspect.isfunction(f) and f.__module__ == api.__name__ and n[0] != "_"}
    assert public <= set(nas.__all__) and all(getattr(nas, name) is getattr(api, name) for name in public)


def test_a_runs_data_that_is_no_path_is_one_line_for_the_commands_that_read_it(tmp_path):
    from nas import rundir

    (tmp_path / "config.json").write_text(json.dumps({"data": [1]}))  # train, distill: the run's data by default
    with pytest.raises(NasError, match=r"config.json: data must be a path \(a text\), got \[1\]"):
        rundir.run_data(tmp_path)
