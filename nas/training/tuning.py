"""The Optuna study on the champion: optimizer, learning-rate schedule and training settings.

Study, sampler, pruner and storage each come from Optuna; this module only says what a trial may
choose (``suggest``) and how a trial is scored (train, report validation accuracy after every epoch,
let the pruner stop hopeless trials). The study lives in SQLite inside the run directory by default
(``optuna-dashboard sqlite:///runs/<id>/tune.db`` opens it), or in any RDB URL so several machines
can work one study. Only ``Training`` and ``PublicTest`` are used.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch
from sqlalchemy.exc import SQLAlchemyError

from nas import data as fer
from nas import rundir
from nas.errors import NasError, SettingError, first_line
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.rundir import make_dir, read_json, write_json
from nas.training.distill import Teacher, teacher_for
from nas.training.loop import RECIPES, Targets, TrainConfig, read_tuned, resolve_device, train
from nas.training.numerics import fastest
from nas.training.options import (
    CLASS_BALANCE,
    DISTILL_TARGETS,
    DISTILL_WEIGHT,
    PRUNERS,
    ConfirmOptions,
    StudyOptions,
)

log = logging.getLogger(__name__)
CONFIRMED = "confirm.json"  # the confirmation's results, kept as they come
optuna.logging.disable_default_handler()  # its lines go through the command line's handler (nas.cli._console)


def suggest(trial: optuna.Trial, epochs: int, teacher: str = "") -> TrainConfig:
    """One point of the search space; each scheduler's own parameters are conditional on it. With a
    ``teacher`` (its fingerprint), the distillation's weight, temperature and targets too."""
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "nesterov", "adam", "adamw"])
    if optimizer in ("sgd", "nesterov"):
        lr = trial.suggest_float("lr_sgd", 1e-3, 0.3, log=True)
        momentum = trial.suggest_float("momentum", 0.8, 0.99)
    else:
        lr = trial.suggest_float("lr_adam", 1e-4, 1e-2, log=True)
        momentum = 0.9
    scheduler = trial.suggest_categorical(
        "scheduler", ["plateau", "cosine", "cosine_restarts", "onecycle", "wsd", "step", "none"]
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
        class_balance=trial.suggest_categorical("class_balance", list(CLASS_BALANCE)),
        **extra,
        **(_suggest_distillation(trial) | {"teacher": teacher} if teacher else {}),
    )


def _suggest_distillation(trial: optuna.Trial) -> dict:
    return {
        "distill_weight": trial.suggest_float("distill_weight", 0.1, 0.9),
        "distill_temperature": trial.suggest_float("distill_temperature", 1.0, 8.0, log=True),
        "distill_targets": trial.suggest_categorical("distill_targets", list(DISTILL_TARGETS)),
    }


def default_params(distilled: bool = False) -> dict:
    """The default recipe (``TrainConfig()``) as a trial's parameters: the study's first trial, so the
    tuned recipe is never worse than the untuned one at the tuning budget (``distilled``: with the
    distillation's defaults, in a study that tunes one)."""
    d = TrainConfig()
    params = {
        "optimizer": d.optimizer,
        "lr_adam" if d.optimizer in ("adam", "adamw") else "lr_sgd": d.lr,
        "scheduler": d.scheduler,
        "weight_decay": d.weight_decay,
        "batch_size": d.batch_size,
        "label_smoothing": d.label_smoothing,
        "augment": d.augment,
        "class_balance": d.class_balance,
    }
    if d.optimizer in ("sgd", "nesterov"):
        params["momentum"] = d.momentum
    if distilled:
        params |= {"distill_weight": DISTILL_WEIGHT, "distill_temperature": d.distill_temperature,
                   "distill_targets": d.distill_targets}  # fmt: skip
    return params


def config_from_params(params: dict, epochs: int, teacher: str = "") -> TrainConfig:
    """Rebuild the TrainConfig of a finished trial from its parameters (``teacher``: the fingerprint of the
    study's teachers, for a trial that distils)."""
    return suggest(optuna.trial.FixedTrial(params), epochs, teacher if "distill_weight" in params else "")


def tuned_config(tuned: dict, epochs: int) -> TrainConfig:
    """The tuned recipe for a longer (or shorter) run than the trials had.

    Step size and restart period are counted in epochs, so a schedule found in 3-epoch trials would
    decay every epoch of a 30-epoch run; they are stretched with the budget so the schedule keeps its shape.
    """
    return stretched(TrainConfig.from_dict(tuned["train_config"], "tuned.json"), tuned["budget"]["epochs"], epochs)


def stretched(cfg: TrainConfig, from_epochs: int, epochs: int) -> TrainConfig:
    """``cfg``, written for ``from_epochs``, over ``epochs``, its epoch-counted schedule scaled alike."""
    stretch = epochs / from_epochs
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
    raise SettingError(f"--pruner: unknown pruner {name!r}; choose {', '.join(PRUNERS)}")


def tune(genome: str, data_path: str, run_dir: Path, options: StudyOptions | None = None,
         confirmation: Confirmation | None = None) -> optuna.Study:  # fmt: skip
    """Run (or continue) the study, confirm its best recipes at full length, and write ``tuned.json`` and
    its plots into ``run_dir``.

    ``options``: the study's (default: ``StudyOptions()``); ``confirmation``: how the best recipes are
    confirmed at full length (default: ``Confirmation()``); both checked when made. The genome and the data
    are checked before the study is created; a study this call created that ends without a finished trial
    is deleted again, so a retry is not told it exists."""
    o, confirmation = options or StudyOptions(), confirmation or Confirmation()
    resolve_device(o.device)
    for name in (rundir.TUNED, rundir.TUNE_STUDY, CONFIRMED):  # before any work; sqlite would follow a link
        rundir.no_link(Path(run_dir) / name)
    model_genome = parse_genome(genome)
    teacher = teacher_for(Path(run_dir), o.teacher, model_genome)  # checked before the study starts
    dataset = fer.load(data_path, ("train", "val"))
    train_split, val_split = dataset["train"].subset(o.train_images, o.seed), dataset["val"]
    db = Path(run_dir) / rundir.TUNE_STUDY
    made_db = o.storage is None and not db.exists()
    storage = o.storage or f"sqlite:///{db}"
    study = _study(f"tune-{model_genome.key}" + ("-distilled" if teacher else ""), storage, o)
    made_study = not study.trials  # never delete a study this call only continued
    _same_budget(study, o, storage, dataset.fingerprint, teacher.fingerprint if teacher else None)
    default = default_params(teacher is not None)
    alive = [t for t in study.trials if t.state != optuna.trial.TrialState.RUNNING]  # killed ones run again
    if not any(default in (t.params, t.system_attrs.get("fixed_params")) for t in alive):
        study.enqueue_trial(default)
    study.set_user_attr("genome", genome)
    study.set_user_attr("epochs", o.epochs)
    study.set_user_attr("train_images", o.train_images)
    study.set_user_attr("seed", o.seed)
    study.set_user_attr("data", dataset.fingerprint)
    study.set_user_attr("full_train_images", len(dataset["train"]))
    if teacher is not None:
        paths = [m["path"] for m in teacher.members]
        study.set_user_attr("teacher", {"paths": paths, "fingerprint": teacher.fingerprint})
    try:
        _optimize(study, model_genome, (train_split, val_split), o, Path(run_dir), teacher)
    except BaseException:
        if made_study and not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            optuna.delete_study(study_name=study.study_name, storage=storage)
            if made_db:
                db.unlink(missing_ok=True)
        raise
    trainer = _full_length_trainer(model_genome, dataset, o.device, Path(run_dir), teacher)
    confirmation.run(study, Path(run_dir), trainer, identity=f"{model_genome.key}|{o.seed}|{dataset.fingerprint}")
    return study


def _same_budget(study: optuna.Study, o: StudyOptions, storage: str, data: str, teacher: str | None) -> None:
    """A continued study keeps its trials' budget, seed (their subset and training), data and teacher: trials
    of two lengths, subsets, data sets or teachers do not compare (a study of before a setting was kept
    passes on it)."""
    kept_teacher = (study.user_attrs.get("teacher") or {}).get("fingerprint", teacher)
    for flag, value, kept in (("--epochs", o.epochs, study.user_attrs.get("epochs", o.epochs)),
                              ("--train-images", o.train_images, study.user_attrs.get("train_images", o.train_images)),
                              ("--seed", o.seed, study.user_attrs.get("seed", o.seed)),
                              ("--data", f"(content {data})", f"(content {study.user_attrs.get('data', data)})"),
                              ("--teacher", f"(files {teacher})", f"(files {kept_teacher})")):  # fmt: skip
        if kept != value:
            raise SettingError(f"{flag} {value}: the study in {storage} ran its trials with {kept}; continue it "
                               "with that, or start another")  # fmt: skip


def _study(name: str, storage: str, o: StudyOptions) -> optuna.Study:
    """The study, new (or continued with ``resume``); a storage it cannot open is a setting's error."""
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", pruner=make_pruner(o.pruner, o.epochs),
            load_if_exists=o.resume,
        )  # fmt: skip
        # TPE's first trials are random (a short study still gets some guided ones); seeded past the trials
        # already run, so a resumed study does not draw its first recipes again
        study.sampler = optuna.samplers.TPESampler(seed=o.seed + len(study.trials),
                                                   n_startup_trials=max(3, min(10, o.trials // 3)))  # fmt: skip
        return study
    except optuna.exceptions.DuplicatedStudyError:
        raise NasError(f"{storage}: study {name} exists already; continue it with --resume") from None
    except (ImportError, SQLAlchemyError) as exc:
        raise SettingError(f"--storage {storage}: cannot open ({first_line(exc)})") from None


def _optimize(study: optuna.Study, model_genome, splits: tuple, o: StudyOptions, run_dir: Path,
              teacher: Teacher | None) -> optuna.Study:  # fmt: skip
    """The trials still to run, then ``tuned.json``; an error when none finished."""
    (train_split, val_split), epochs, seed, device = splits, o.epochs, o.seed, o.device
    made: dict[str, Targets] = {}  # the teachers' targets, online or offline, made once for every trial

    def objective(trial: optuna.Trial) -> float:
        cfg = suggest(trial, epochs, teacher.fingerprint if teacher else "").replace(seed=seed)
        torch.manual_seed(seed)
        model = build(model_genome)
        if cfg.distill_weight and cfg.distill_targets not in made:
            made[cfg.distill_targets] = teacher.targets(cfg, train_split.x, device, run_dir / rundir.DISTILLED)

        def report(epoch: int, row: dict) -> None:
            trial.report(row["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        targets = made.get(cfg.distill_targets) if cfg.distill_weight else None
        result = train(model, train_split, val_split, cfg, device, on_epoch=report, targets=targets)
        trial.set_user_attr("val_f1", result.best_f1)
        # the cost of an epoch on one image, for the confirmation's estimate
        per_epoch = result.seconds / max(result.epochs_run, 1) * torch.get_num_threads()
        trial.set_user_attr("core_seconds_per_image_epoch", per_epoch / len(train_split))
        return result.best_acc

    done = len([t for t in study.trials if t.state.is_finished()])
    study.optimize(objective, n_trials=max(0, o.trials - done), catch=(RuntimeError,))
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise NasError(f"study {study.study_name}: no trial finished (all {len(study.trials)} failed or were pruned)")
    write_outputs(study, run_dir, epochs)
    return study


def write_outputs(study: optuna.Study, run_dir: Path, epochs: int) -> dict:
    """``tuned.json`` and PNGs of the optimization history and the parameter importances."""
    best = study.best_trial
    states = [t.state.name for t in study.trials]
    teacher = study.user_attrs.get("teacher")
    tuned = {
        "genome": study.user_attrs.get("genome"),
        "value": best.value,
        "val_f1": best.user_attrs.get("val_f1"),
        "params": best.params,
        "train_config": asdict(config_from_params(best.params, epochs, _fingerprint(teacher))),
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "study": study.study_name,
        "budget": {"epochs": epochs, "train_images": study.user_attrs.get("train_images")},
        **({"teacher": teacher} if teacher else {}),
    }
    write_json(run_dir / rundir.TUNED, tuned)
    from optuna.visualization import matplotlib as ovm

    from nas.training.report import save_figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        plots = [("tune_history.png", ovm.plot_optimization_history)]
        if len([t for t in study.trials if t.state.name == "COMPLETE"]) > 1:
            plots.append(("tune_importance.png", ovm.plot_param_importances))
        for file, plot in plots:
            save_figure(plot(study).figure, run_dir / file, size=(8, 5))
    return tuned


def _fingerprint(teacher: dict | None) -> str:
    """The fingerprint of a study's teachers as ``tuned.json`` keeps them (none: an empty one)."""
    return (teacher or {}).get("fingerprint", "")


# ---------------------------------------------------------------- confirmation at full length


@dataclass(frozen=True)
class Confirmation(ConfirmOptions):
    """A short budget rewards recipes that converge fast (a study's best recipe at 3 epochs lost to the
    default at 10): the default and the study's ``best`` few recipes train again at full length, and the
    tuned recipe is adopted only if it beats the default there. Capped in core-hours, estimated from the
    trials' own speed; results are kept in ``confirm.json`` as they come, so an interrupted tune resumes.
    One seed each: a tuned recipe must win by more than ``margin`` (PublicTest accuracy), since two seeds of
    the default recipe on mini-Xception ended 1.6 points apart here; a smaller win is noise."""

    def candidates(self, study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
        """The best distinct finished recipes that are not the default, by name."""
        done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: -t.value)
        picked: dict[str, optuna.trial.FrozenTrial] = {}
        for t in done:
            if t.params != default_params("distill_weight" in t.params) and t.params not in [
                p.params for p in picked.values()
            ]:
                picked[f"trial {t.number}"] = t
        return dict(list(picked.items())[: self.best])

    def run(self, study: optuna.Study, run_dir: Path, score: Callable[[str, TrainConfig], dict],
            identity: str = "") -> dict:  # fmt: skip
        """Train what fits the cap with ``score(name, config) -> {"val_acc": ...}``; record the verdict in
        ``tuned.json`` (``confirmation``) and return it. ``identity`` (genome, seed, data) keeps the results
        of another network's confirmation in the same run directory from being taken for this one's."""
        tuned_path = run_dir / rundir.TUNED
        tuned = read_tuned(tuned_path)
        trials = self.candidates(study) if self.best else {}
        per_image = [t.user_attrs.get("core_seconds_per_image_epoch") for t in study.trials]
        per_image = sorted(x for x in per_image if x)
        images = study.user_attrs.get("full_train_images") or 0
        per_run = per_image[len(per_image) // 2] * images * self.epochs / 3600 if per_image else 0.0
        fits = int(self.core_hours // per_run) - 1 if per_run else len(trials)  # the default runs too
        figures = {"epochs": self.epochs, "patience": self.patience, "margin": self.margin,
                   "estimated_core_hours_per_run": round(per_run, 2)}  # fmt: skip
        if not trials or fits < 1:
            why = "--confirm 0" if not self.best else (
                "no finished recipe other than the default" if not trials else
                f"the default and one recipe at full length are estimated at 2 x {per_run:.1f} core-hours, over "
                f"--confirm-core-hours {self.core_hours:g}"
            )  # fmt: skip
            confirmation = figures | {"adopted": False, "verdict": f"not confirmed at full length ({why})"}
        else:
            named = {"default": RECIPES["default"].replace(epochs=self.epochs)}
            budget, fp = tuned["budget"]["epochs"], _fingerprint(tuned.get("teacher"))  # stretched from the trials'
            named |= {n: stretched(config_from_params(t.params, budget, fp), budget, self.epochs)
                      for n, t in list(trials.items())[:fits]}  # fmt: skip
            configs = {n: c.replace(early_stop=self.patience) for n, c in named.items()}
            results = self._scores(run_dir, configs, score, identity)
            best = max((n for n in results if n != "default"), key=lambda n: results[n]["val_acc"])
            tuned_acc, default_acc = results[best]["val_acc"], results["default"]["val_acc"]
            adopted = tuned_acc > default_acc + self.margin
            scores = f"{tuned_acc:.4f} for {best} vs {default_acc:.4f} for the default (PublicTest accuracy)"
            if adopted:
                verdict = f"{best} beat the default at {self.epochs} epochs by more than {self.margin:g}: {scores}"
            elif tuned_acc > default_acc:
                verdict = f"a tie at {self.epochs} epochs, within the margin of {self.margin:g}: {scores}"
            else:
                verdict = f"the default won at {self.epochs} epochs: {scores}"
            confirmation = figures | {"runs": results, "adopted": adopted, "verdict": verdict}
            if adopted:  # the recipe train.py takes: the one that won at full length, at the trials' budget
                won = trials[best]
                tuned |= {"params": won.params, "value": won.value, "val_f1": won.user_attrs.get("val_f1"),
                          "train_config": asdict(config_from_params(won.params, budget, fp))}  # fmt: skip
        tuned["confirmation"] = confirmation
        write_json(tuned_path, tuned)
        return confirmation

    def _scores(self, run_dir: Path, configs: dict[str, TrainConfig], score, identity: str) -> dict[str, dict]:
        path = run_dir / CONFIRMED
        known = read_json(path, "confirmation results") if path.exists() else {}
        # changed settings, or another genome, seed or data: trained again
        keys = {n: f"{n}|{identity}|{json.dumps(asdict(c), sort_keys=True)}" for n, c in configs.items()}
        for name, cfg in configs.items():
            if keys[name] not in known:
                known[keys[name]] = score(name, cfg)
                write_json(path, known)
        return {n: known[keys[n]] for n in configs}


def _full_length_trainer(genome, dataset: dict, device: str, run_dir: Path, teacher: Teacher | None):
    """``score`` for the confirmation: the whole Training split, early stopping on PublicTest, this
    machine's faster numerics, a checkpoint per recipe (an interrupted run continues, and ``train.py``
    continues the run of the recipe it trains instead of training it again: so each recipe trains with its
    own seed, as ``train.py`` trains it, not the study's)."""

    def score(name: str, cfg: TrainConfig) -> dict:
        torch.manual_seed(cfg.seed)
        model = build(genome)
        cfg = fastest(cfg, model, device)
        checkpoint = make_dir(run_dir / "confirm") / f"{genome.key}-{cfg.seed}-{name.replace(' ', '-')}.pt"
        log.info(f"confirming {name} at full length: up to {cfg.epochs} epochs on {len(dataset['train'])} images")
        keep = run_dir / rundir.DISTILLED  # offline targets, shared with train.py's distilled trainings
        targets = teacher.targets(cfg, dataset["train"].x, device, keep) if cfg.distill_weight else None
        result = train(model, dataset["train"], dataset["val"], cfg, device, checkpoint=checkpoint, targets=targets)
        return {"val_acc": result.best_acc, "val_f1": result.best_f1, "epochs_run": result.epochs_run,
                "core_hours": round(result.seconds * torch.get_num_threads() / 3600, 3),
                # so that train.py continues this training instead of repeating it (nas.training.final)
                "checkpoint": checkpoint.relative_to(run_dir).as_posix(), "genome": str(genome),
                "data": dataset.fingerprint}  # fmt: skip

    return score
