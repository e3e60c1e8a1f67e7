"""The Optuna study on the champion: optimizer, learning-rate schedule and training settings.

Study, sampler, pruner and storage each come from Optuna; this module only says what a trial may
choose (``suggest``) and how a trial is scored (train, report validation accuracy after every epoch,
let the pruner stop hopeless trials). The study lives in SQLite inside the run directory by default
(``optuna-dashboard sqlite:///runs/<id>/tune.db`` opens it), or in any RDB URL so several machines
can work one study. Only ``Training`` and ``PublicTest`` are used.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import optuna
import torch
from sqlalchemy.exc import SQLAlchemyError

from nas import data as fer
from nas.build import build
from nas.errors import NasError, SettingError, first_line
from nas.genome import parse_genome
from nas.rundir import write_json
from nas.training import TrainConfig, resolve_device, train


def suggest(trial: optuna.Trial, epochs: int) -> TrainConfig:
    """One point of the search space; each scheduler's own parameters are conditional on it."""
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "nesterov", "adam", "adamw"])
    if optimizer in ("sgd", "nesterov"):
        lr = trial.suggest_float("lr_sgd", 1e-3, 0.3, log=True)
        momentum = trial.suggest_float("momentum", 0.8, 0.99)
    else:
        lr = trial.suggest_float("lr_adam", 1e-4, 1e-2, log=True)
        momentum = 0.9
    scheduler = trial.suggest_categorical(
        "scheduler", ["plateau", "cosine", "cosine_restarts", "onecycle", "step", "none"]
    )
    extra: dict = {}
    if scheduler == "plateau":
        extra["plateau_factor"] = trial.suggest_float("plateau_factor", 0.1, 0.7)
        extra["plateau_patience"] = trial.suggest_int("plateau_patience", 1, 4)
    elif scheduler == "cosine_restarts":
        extra["restart_period"] = trial.suggest_int("restart_period", 1, max(1, epochs // 2))
    elif scheduler == "step":
        extra["step_size"] = trial.suggest_int("step_size", 1, max(1, epochs // 2))
        extra["step_gamma"] = trial.suggest_float("step_gamma", 0.1, 0.5)
    return TrainConfig(
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        scheduler=scheduler,
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        epochs=epochs,
        label_smoothing=trial.suggest_float("label_smoothing", 0.0, 0.2),
        augment=trial.suggest_float("augment", 0.0, 1.0),
        class_weighted=trial.suggest_categorical("class_weighted", [False, True]),
        **extra,
    )


def default_params() -> dict:
    """The default recipe (``TrainConfig()``) as a trial's parameters: the study's first trial, so the
    tuned recipe is never worse than the untuned one at the tuning budget."""
    d = TrainConfig()
    params = {
        "optimizer": d.optimizer,
        "lr_adam" if d.optimizer in ("adam", "adamw") else "lr_sgd": d.lr,
        "scheduler": d.scheduler,
        "weight_decay": d.weight_decay,
        "batch_size": d.batch_size,
        "label_smoothing": d.label_smoothing,
        "augment": d.augment,
        "class_weighted": d.class_weighted,
    }
    if d.optimizer in ("sgd", "nesterov"):
        params["momentum"] = d.momentum
    return params


def config_from_params(params: dict, epochs: int) -> TrainConfig:
    """Rebuild the TrainConfig of a finished trial from its parameters."""
    return suggest(optuna.trial.FixedTrial(params), epochs)


def tuned_config(tuned: dict, epochs: int) -> TrainConfig:
    """The tuned recipe for a longer (or shorter) run than the trials had.

    Step size and restart period are counted in epochs, so a schedule found in 3-epoch trials would
    decay every epoch of a 30-epoch run; they are stretched with the budget so the schedule keeps its shape.
    """
    cfg = TrainConfig(**tuned["train_config"])
    stretch = epochs / tuned["budget"]["epochs"]
    return cfg.replace(
        epochs=epochs,
        step_size=max(1, round(cfg.step_size * stretch)),
        restart_period=max(1, round(cfg.restart_period * stretch)),
    )


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SettingError(f"--pruner: unknown pruner {name!r}; choose median, hyperband or none")


def tune(
    genome: str,
    data_path: str,
    run_dir: Path,
    trials: int = 30,
    epochs: int = 6,
    train_images: int | None = 10_000,
    pruner: str = "median",
    storage: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
) -> optuna.Study:
    """Run (or continue) the study and write ``tuned.json`` and its plots into ``run_dir``.

    Every setting, the genome and the data are checked before the study is created; a study this call
    created that ends without a finished trial is deleted again, so a retry is not told it exists."""
    if trials < 1 or epochs < 1:
        raise SettingError(f"--trials (got {trials}) and --epochs (got {epochs}) must be >= 1")
    if train_images is not None and train_images < 0:
        raise SettingError(f"--train-images must be >= 0 (0: all), got {train_images}")
    resolve_device(device)
    model_genome = parse_genome(genome)
    dataset = fer.load(data_path, ("train", "val"))
    train_split, val_split = dataset["train"].subset(train_images, seed), dataset["val"]
    db = Path(run_dir) / "tune.db"
    made_db = storage is None and not db.exists()
    storage = storage or f"sqlite:///{db}"
    name = f"tune-{model_genome.key}"
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            # TPE's first trials are random; a short study still gets some guided ones
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3))),
            pruner=make_pruner(pruner, epochs),
            load_if_exists=resume,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise NasError(f"{storage}: study {name} exists already; continue it with --resume") from None
    except (ImportError, SQLAlchemyError) as exc:
        raise SettingError(f"--storage {storage}: cannot open ({first_line(exc)})") from None
    default = default_params()
    if not any(default in (t.params, t.system_attrs.get("fixed_params")) for t in study.trials):
        study.enqueue_trial(default)
    study.set_user_attr("genome", genome)
    study.set_user_attr("epochs", epochs)
    study.set_user_attr("train_images", train_images)
    try:
        return _optimize(study, model_genome, train_split, val_split, trials, epochs, seed, device, Path(run_dir))
    except BaseException:
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            optuna.delete_study(study_name=name, storage=storage)
            if made_db:
                db.unlink(missing_ok=True)
        raise


def _optimize(study: optuna.Study, model_genome, train_split, val_split, trials: int, epochs: int, seed: int,
              device: str, run_dir: Path) -> optuna.Study:  # fmt: skip
    """The trials still to run, then ``tuned.json``; an error when none finished."""

    def objective(trial: optuna.Trial) -> float:
        cfg = suggest(trial, epochs).replace(seed=seed)
        torch.manual_seed(seed)
        model = build(model_genome)

        def report(epoch: int, row: dict) -> None:
            trial.report(row["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        result = train(model, train_split, val_split, cfg, device, on_epoch=report)
        trial.set_user_attr("val_f1", result.best_f1)
        return result.best_acc

    done = len([t for t in study.trials if t.state.is_finished()])
    study.optimize(objective, n_trials=max(0, trials - done), catch=(RuntimeError,))
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise NasError(f"study {study.study_name}: no trial finished (all {len(study.trials)} failed or were pruned)")
    write_outputs(study, run_dir, epochs)
    return study


def write_outputs(study: optuna.Study, run_dir: Path, epochs: int) -> dict:
    """``tuned.json`` and PNGs of the optimization history and the parameter importances."""
    best = study.best_trial
    states = [t.state.name for t in study.trials]
    tuned = {
        "genome": study.user_attrs.get("genome"),
        "value": best.value,
        "val_f1": best.user_attrs.get("val_f1"),
        "params": best.params,
        "train_config": asdict(config_from_params(best.params, epochs)),
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "study": study.study_name,
        "budget": {"epochs": epochs, "train_images": study.user_attrs.get("train_images")},
    }
    write_json(run_dir / "tuned.json", tuned)
    from optuna.visualization import matplotlib as ovm

    from nas.report import save_figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        plots = [("tune_history.png", ovm.plot_optimization_history)]
        if len([t for t in study.trials if t.state.name == "COMPLETE"]) > 1:
            plots.append(("tune_importance.png", ovm.plot_param_importances))
        for file, plot in plots:
            save_figure(plot(study).figure, run_dir / file, size=(8, 5))
    return tuned
