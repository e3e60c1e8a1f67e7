"""The champion's full training and its test report: the one step that touches ``PrivateTest``.

Trains with the tuned recipe where tuning confirmed it at full length (``tuned.json``), else the default
(or a recipe named by the caller), for up to ``epochs`` with early stopping on ``PublicTest``; checkpoints
every epoch (an interrupted training resumes) and draws its curve, saves ``model.pt`` and reports
single-crop and ten-crop accuracy, macro-F1 and per-class figures on the test split, beside any baselines
and other recipes trained in the same run directory.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch

from nas import data as fer
from nas import rundir
from nas.deploy.artifact import load_checkpoint, save_checkpoint
from nas.deploy.latency import measure
from nas.errors import NasError, RunDirError, SettingError, first_line
from nas.genome.build import build, count_flops, count_params
from nas.genome.grammar import parse_genome
from nas.settings import typed
from nas.training import loop as training
from nas.training.distill import teacher_for
from nas.training.loop import RECIPES, TrainConfig, resolve_device
from nas.training.numerics import fastest
from nas.training.options import FinalOptions
from nas.training.report import read_report, test_report, write_history

log = logging.getLogger(__name__)


def target(run_dir: Path, genome: str | None = None, baseline: str | None = None,
           data: str | None = None) -> tuple[Path, str, str]:  # fmt: skip
    """The run directory, the genome to work on (champion unless given) and the data path."""
    from nas.genome.space import checked_genome, load_baselines

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: run directory not found")
    if baseline:
        baselines = load_baselines()
        if baseline not in baselines:
            raise RunDirError(f"unknown baseline {baseline!r}; choose from {', '.join(baselines)}")
        genome = str(baselines[baseline].genome)
    elif genome is not None:
        genome = str(checked_genome(genome, "--genome"))
    else:
        genome = str(checked_genome(rundir.champion_genome(run_dir), f"{run_dir / rundir.CHAMPION}: genome"))
    return run_dir, genome, fer.resolve_data_path(data or rundir.run_data(run_dir))


def choose_recipe(run_dir: Path, recipe: str, epochs: int, genome: str | None = None) -> tuple[TrainConfig, str]:
    """The recipe's config and the name the report gives it.

    ``auto`` takes the tuned recipe only where tuning confirmed it at full length (``tuned.json``'s
    confirmation), else the default, and says why; in a run without tuning whose search trained ``genome``
    (the champion unless given) fully, the search's own settings (``searched``)."""
    tuned_path = run_dir / rundir.TUNED
    if recipe in RECIPES:
        return RECIPES[recipe], recipe
    if recipe not in ("auto", "tuned", "searched"):
        raise SettingError(f"--recipe: unknown recipe {recipe!r}; choose auto, tuned, searched or {', '.join(RECIPES)}")
    searched_state = searched_checkpoint(run_dir, genome)
    if recipe == "searched" or (recipe == "auto" and searched_state and not tuned_path.exists()):
        if searched_state is None:
            network = "its champion" if genome is None else "this network"
            raise RunDirError(f"{run_dir / rundir.CHAMPION}: the search did not train {network} fully")
        saved = _saved_config(searched_state)
        if saved is None:
            raise RunDirError(f"{searched_state}: the search's training of the champion is unreadable")
        return TrainConfig.from_dict(saved, str(searched_state)), "searched"
    if not tuned_path.exists():
        if recipe == "tuned":
            raise RunDirError(f"{tuned_path}: no tuned recipe; run scripts/tune.py --run {run_dir} first")
        return RECIPES["default"], "default"
    from nas.training.tuning import tuned_config

    tuned = training.read_tuned(tuned_path)
    verdict = (tuned.get("confirmation") or {}).get("verdict", "never confirmed at full length")
    if recipe == "auto" and not (tuned.get("confirmation") or {}).get("adopted"):
        log.info(f"{tuned_path}: not adopted ({verdict}); training with the default recipe")
        return RECIPES["default"], "default"
    return tuned_config(tuned, epochs), "tuned"


def confirmed_checkpoint(run_dir: Path, genome: str, cfg: TrainConfig, data: str) -> Path | None:
    """The tuning confirmation's training of this genome with these settings (seed included) on this data
    (``tuned.json``), which the final training continues instead of training the same thing again (about
    an hour here)."""
    path = run_dir / rundir.TUNED
    runs = ((training.read_tuned(path) if path.exists() else {}).get("confirmation") or {}).get("runs")
    for run in (runs or {}).values():
        if run.get("genome") != genome or run.get("data") != data:
            continue
        checkpoint = run_dir / str(run.get("checkpoint"))
        if _continues(checkpoint, cfg):
            return checkpoint
    return None


def _saved_config(checkpoint: Path) -> dict | None:
    """The training settings a checkpoint was written under (read by the loop's own reader of training
    states); None, and a warning, where it is unreadable."""
    try:
        return dict(training.read_state(checkpoint)["config"])
    except NasError as exc:
        log.warning(f"{checkpoint}: not continued, unreadable ({first_line(exc)})")
        return None


def _continues(checkpoint: Path, cfg: TrainConfig) -> bool:
    """Whether a training of ``cfg`` may continue ``checkpoint``: it was written under the same settings."""
    saved = _saved_config(checkpoint)
    return saved is not None and not training.changed_settings(saved, cfg)


def searched_checkpoint(run_dir: Path, genome: str | None = None, data: str | None = None) -> Path | None:
    """The champion's full training as the search finished it (the top rung of a continuable schedule,
    ``champion.json``'s finalist checkpoint), if ``genome`` is the champion and ``data`` (a fingerprint) its
    data (either unless not given), and it is kept."""
    path = run_dir / rundir.CHAMPION
    champion = rundir.read_json(path, "champion") if path.exists() else {}
    kept = (champion.get("finalist") or {}).get("checkpoint")
    mismatch = genome not in (None, champion.get("genome")) or data not in (None, champion.get("data"))
    if not isinstance(kept, str) or mismatch:
        return None
    return run_dir / kept if (run_dir / kept).is_file() else None


def _is_champion(run_dir: Path, genome: str) -> bool:
    return (run_dir / rundir.CHAMPION).exists() and rundir.champion_genome(run_dir) == genome


def searched(run_dir: Path, genome: str) -> bool:
    """Whether the run's search found ``genome`` (its champion or a member of its front): only then does the
    report name the search's cost."""
    front = run_dir / rundir.PARETO
    if _is_champion(run_dir, genome):
        return True
    if not front.exists():
        return False
    try:
        with front.open(newline="") as f:
            return any(row.get("genome") == genome for row in csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise RunDirError(f"{front}: not a front table ({first_line(exc)})") from None


def train_final(
    run_dir: str | Path,
    genome: str | None = None,
    baseline: str | None = None,
    data: str | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    **settings,
) -> dict:
    """Train the champion (or ``genome``, or a ``baseline``) fully; returns the test report.

    ``settings``: the fields of ``FinalOptions`` (recipe, epochs, patience, seed, device, out, the
    class_balance, ema, label_smoothing set on top of the recipe, and a teacher to distil from), and any
    other ``TrainConfig`` field to set on top of it. ``on_epoch(epoch, row)`` sees every epoch.
    """
    own = {f.name for f in fields(FinalOptions)}
    if settings.get("out") is not None:  # a Path as well as its text
        settings["out"] = str(settings["out"])
    o = typed(FinalOptions, {k: v for k, v in settings.items() if k in own}, "train")
    changes = o.changes() | {k: v for k, v in settings.items() if k not in own}
    device = o.device
    resolve_device(device)
    run_dir, genome, data = target(run_dir, genome, baseline, data)
    teacher = teacher_for(run_dir, o.teacher, parse_genome(genome))
    changes |= {"teacher": teacher.fingerprint} if teacher is not None else {}
    cfg, recipe_name = _recipe(run_dir, genome, o.recipe, changes, o.epochs, o.patience, o.seed, device)
    teacher = teacher or _tuned_teacher(run_dir, cfg, genome)
    name, out = _destination(run_dir, o.recipe, baseline, o.out, genome, distilled=o.taught)
    if out == run_dir:
        _beside(run_dir)  # a damaged report beside it: said now, not after the training
    dataset = fer.load(data, ("train", "val"))
    test = fer.load(data, ("test",))["test"]  # PrivateTest: touched for the final report only
    search = rundir.search_cost(run_dir) if not baseline and searched(run_dir, genome) else None
    out = rundir.make_dir(out)  # after every input was checked
    torch.manual_seed(cfg.seed)
    model = build(parse_genome(genome))
    mode = "bf16" if cfg.cpu_bf16 else "fp32"
    log.info(
        f"training {name} ({recipe_name} recipe, {mode}, up to {cfg.epochs} epochs) on {len(dataset['train'])} images"
    )
    state_file = out / rundir.TRAIN_STATE
    history = _started(run_dir, genome, cfg, dataset.fingerprint, state_file)

    def show(epoch: int, row: dict) -> None:
        log.debug(
            f"epoch {epoch + 1}: loss {row['train_loss']:.4f}, val acc {row['val_acc']:.4f}, "
            f"val F1 {row['val_f1']:.4f}, {row['seconds']:.0f} s"
        )
        history.append(row)
        write_history(history, out, f"{name} ({recipe_name} recipe)")
        if on_epoch is not None:
            on_epoch(epoch, row)

    targets, made = _targets(teacher, cfg, dataset["train"].x, device, run_dir / rundir.DISTILLED)
    result = training.train(model, dataset["train"], dataset["val"], cfg, device, on_epoch=show,
                            checkpoint=state_file, targets=targets)  # fmt: skip
    metrics = _metrics(result, recipe_name, mode, cfg, teacher, made)
    save_checkpoint(out / rundir.MODEL, model.cpu(), metrics, json.loads(json.dumps(cfg.__dict__)))
    return _report(run_dir, out, name, genome, device, metrics, search, test)


def _targets(teacher, cfg: TrainConfig, x_train: torch.Tensor, device: str, keep: Path) -> tuple:
    """The teachers' targets (None without teachers), offline ones kept in ``keep`` for every student and seed
    of the same teachers, and the seconds they cost before the first epoch (about 0 where kept ones are read)."""
    if teacher is None:
        return None, 0.0
    started = time.perf_counter()
    targets = teacher.targets(cfg, x_train, device, keep)
    return targets, round(time.perf_counter() - started, 3)


def _metrics(result: training.TrainResult, recipe_name: str, mode: str, cfg: TrainConfig, teacher,
             targets_seconds: float) -> dict:  # fmt: skip
    """What ``model.pt`` keeps of its training, for the report and the model card."""
    taught = {"teacher": teacher.summary(cfg) | {"targets_seconds": targets_seconds}} if teacher is not None else {}
    return {
        "val_acc": result.best_acc, "val_f1": result.best_f1, "best_epoch": result.best_epoch + 1,
        "epochs_run": result.epochs_run, "train_seconds": round(result.seconds, 1), "recipe": recipe_name,
        "numerics": mode, "seed": cfg.seed, **taught,
    }  # fmt: skip


def _recipe(run_dir: Path, genome: str, recipe: str, changes: dict, epochs: int, patience: int, seed: int | None,
            device: str) -> tuple[TrainConfig, str]:  # fmt: skip
    """The training settings (the recipe, the changes on top of it, this machine's faster numerics for the
    network) and the name the report gives them."""
    cfg, recipe_name = choose_recipe(run_dir, recipe, epochs, genome)
    unknown = set(changes) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise SettingError(f"unknown training settings: {', '.join(sorted(unknown))}")
    changed = {k: v for k, v in changes.items() if v is not None and v != getattr(cfg, k)}
    cfg = cfg.replace(**changed)
    if changed:
        recipe_name += " + " + ", ".join(f"{k}={v}" for k, v in changed.items())
    cfg = cfg.replace(epochs=epochs, early_stop=patience, seed=cfg.seed if seed is None else seed,
                      validate_every_epoch=True)  # a search's recipe validates at its rungs only  # fmt: skip
    if not recipe_name.startswith("searched"):  # the search's own training keeps its numerics
        cfg = fastest(cfg, build(parse_genome(genome)), device)
    # measured: patience 10 cost one-cycle 1.8 points; wsd's accuracy comes in its decay, at the end
    if patience and cfg.scheduler in ("onecycle", "cosine", "wsd"):
        log.warning(
            f"--patience {patience} with a {cfg.scheduler} schedule planned over {epochs} epochs: early stopping "
            "cuts it while the learning rate is still high; --patience 0 trains the whole schedule (best epoch kept)"
        )
    return cfg, recipe_name


def _destination(run_dir: Path, recipe: str, baseline: str | None, out: str | Path | None, genome: str,
                 distilled: bool = False) -> tuple[str, Path]:  # fmt: skip
    """The trained network's name and folder: the champion's recipe writes into the run directory, any other
    recipe beside it, a baseline under ``baselines/``, another genome under ``networks/<its key>/``, a
    distilled network under ``distilled/``, unless ``out`` says where (a network other than the champion is
    named by its folder)."""
    mine = ("auto", "tuned", "searched")  # the champion's own recipes
    name = baseline or ("champion" if recipe in mine else {"default": "untuned"}.get(recipe, f"recipe-{recipe}"))
    other = not baseline and not _is_champion(run_dir, genome)  # never written over the champion's files
    if other:
        name = Path(out).name if out else parse_genome(genome).key
    if distilled:
        return f"{name}-distilled", Path(out) if out else run_dir / rundir.DISTILLED / name
    if out:
        return name, Path(out)
    if baseline:
        return name, run_dir / "baselines" / baseline
    if other:
        return name, run_dir / rundir.NETWORKS / name
    return name, run_dir if recipe in mine else run_dir / name


def _tuned_teacher(run_dir: Path, cfg: TrainConfig, genome: str):
    """The teachers of a tuned recipe that distils: those its study tuned with (``tuned.json``), unchanged."""
    if not cfg.distill_weight:
        return None
    path = run_dir / rundir.TUNED
    paths = (training.read_tuned(path).get("teacher") or {}).get("paths") if path.exists() else None
    if not paths:
        raise RunDirError(f"{path}: the recipe distils, but names no teachers; tune again or name --teacher")
    teacher = teacher_for(run_dir, tuple(paths), parse_genome(genome))
    if teacher.fingerprint != cfg.teacher:
        raise RunDirError(f"{path}: its teachers changed since the study ({', '.join(paths)}); tune again or name "
                          "--teacher")  # fmt: skip
    return teacher


def _started(run_dir: Path, genome: str, cfg: TrainConfig, data: str, state_file: Path) -> list[dict]:
    """The curve of a training already under way at ``state_file`` (or of tuning's confirmation of this very
    training, copied there to be continued, not repeated); empty for a new one."""
    if not state_file.exists():
        confirmed = confirmed_checkpoint(run_dir, genome, cfg, data)
        searched_state = searched_checkpoint(run_dir, genome, data)
        if confirmed is not None:
            rundir.atomic_write(state_file, confirmed.read_bytes())
            log.info(f"{confirmed}: tuning's confirmation trained this recipe at full length; continued, not repeated")
        elif searched_state is not None and _continues(searched_state, cfg):
            rundir.atomic_write(state_file, searched_state.read_bytes())
            log.info(f"{searched_state}: the search trained this network with this recipe; continued, not repeated")
        else:
            return []
    return list(training.read_state(state_file)["result"].history)


def _report(run_dir: Path, out: Path, name: str, genome: str, device: str, metrics: dict, search: dict | None,
            test) -> dict:  # fmt: skip
    """The test report of exactly what was saved, beside the baselines and other recipes of the run."""
    model, state = load_checkpoint(out / rundir.MODEL)
    extra = {
        "name": name,
        "genome": genome,
        "params": count_params(model),
        "flops": count_flops(model),
        "latency_ms": measure({"m": model})["m"],
        "device": device,
        **metrics,
        "train_config": state.get("train_config", {}),  # every setting it trained with, not only the recipe's name
        **({"search": search} if search else {}),
    }
    baselines = _beside(run_dir) if out == run_dir else {}
    if "teacher" in metrics:
        baselines = _teachers_and_undistilled(run_dir, genome, metrics["teacher"])
    return test_report(model, test, out, extra, baselines) | {"out": str(out)}


def _teachers_and_undistilled(run_dir: Path, genome: str, teacher: dict) -> dict[str, dict]:
    """What a distilled network's report shows beside it: each teacher's test report, and the same network
    trained in this run without a teacher, where there are such reports."""
    shown = {}
    for i, member in enumerate(teacher["members"]):
        report = Path(member["path"]).parent / rundir.REPORT
        if report.exists():
            shown[f"teacher {i + 1}: {report.parent.name}"] = read_report(report)
    for report in sorted(run_dir.rglob(rundir.REPORT)):
        if rundir.DISTILLED not in report.relative_to(run_dir).parts:
            r = read_report(report)
            if r.get("genome") == genome and "teacher" not in r:  # e.g. a tuned recipe that distils
                shown[f"without teacher: {report.parent.relative_to(run_dir.parent)}"] = r
    return shown


def _beside(run_dir: Path) -> dict[str, dict]:
    """The reports the champion's report shows beside it: the baselines and its genome's other recipes, each
    checked (``read_report``); read before the training too, so a damaged one stops it before the hour."""
    baselines = {p.parent.name: read_report(p) for p in sorted(run_dir.glob("baselines/*/report.json"))}
    return baselines | {f"same genome, {p.parent.name}": read_report(p) for p in sorted(run_dir.glob("*/report.json"))}
