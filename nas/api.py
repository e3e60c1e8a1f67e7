"""The Python API: every step of the pipeline as a function. The CLI and the benchmarks only call these.

    import nas
    result = nas.search(data="fer2013.csv.gz", space="default", generations=30)
    print(result.champion["genome"], result.hypervolume)
    nas.train(result.run_dir)                  # full training of the champion, test report
    nas.export(result.run_dir)                 # model.onnx, model.ts, model.json

Progress goes to the ``nas`` logger (the CLI shows it on stderr); a search writes everything it finds
into its run directory as it goes, and ``resume`` continues one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nas import config as runconfig
from nas import rundir
from nas.config import ProblemConfig, RunConfig
from nas.errors import DataError, NasError, RunDirError, SettingError, first_line
from nas.evolve.runner import Callback
from nas.settings import typed

if TYPE_CHECKING:
    import numpy as np

    from nas.deploy.demo import Demo

log = logging.getLogger("nas")
RUNS = Path("runs")


@dataclass
class Result:
    """What a search found: its run directory, the front (records, best accuracy first), the champion."""

    run_dir: Path
    generation: int
    front: list[dict]
    champion: dict | None
    progress: list[dict]
    seconds: float

    @property
    def hypervolume(self) -> float:
        return self.progress[-1]["hypervolume"] if self.progress else 0.0


def search(data: str | None = None, space: str | Path = "default", *, run_dir: str | Path | None = None,
           callbacks: Sequence[Callback] = (), plots: bool = True, **settings) -> Result:  # fmt: skip
    """Search ``space`` on ``data`` (a FER2013 CSV, image folder, .npz or ``synthetic:N``; default $FER2013).

    ``settings`` are fields of ``nas.config``'s sections, each with its declared default: e.g.
    ``generations=30``, ``population=8``, ``algorithm="surrogate"`` (NSGA-II ranking 10x the children by a
    predictor; or nsga2, ga, aging, random, optuna) with ``options`` of its own (``{"cx_prob": 0.7}``),
    ``strategy="halving"`` (how candidates are evaluated, ``nas.evolve.strategies``) with ``strategy_options``,
    ``fidelity``, the caps ``max_mflops`` / ``max_params`` / ``max_latency_ms`` (the space's FLOPs cap unless
    given), ``champion_rule`` within the ``champion_*`` budgets, ``jobs`` parallel workers (default: one per
    core). The run directory defaults to ``runs/<time>-<space>-s<seed>``.
    """
    return _start(run_dir, runconfig.create(data, space, **settings), callbacks, plots)


def _start(run_dir: str | Path | None, config: RunConfig, callbacks: Sequence[Callback], plots: bool) -> Result:
    """A new run (in ``runs/<time>-<space>-s<seed>`` unless ``run_dir``): refused where one exists; the data
    is checked before the directory is made."""
    space = rundir.safe_name(str(config.space.get("name", "space")))  # a path component, whatever the file says
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{space}-s{config.search.seed}"
    run_dir = Path(run_dir) if run_dir else RUNS / name
    _refuse_a_used(run_dir)
    _load_data(config.data)  # bad data fails here, before anything is written (memoised: loaded once)
    rundir.make_dir(run_dir)
    return _run(run_dir, config, callbacks, plots, save_config=True, new=True)


def _refuse_a_used(run_dir: Path) -> None:
    if any((run_dir / f).exists() for f in (rundir.CHECKPOINT, rundir.OLD_CHECKPOINT, rundir.CACHE)):
        raise RunDirError(f"{run_dir}: already holds a run; continue it with --resume {run_dir}")


def _load_data(path: str) -> None:
    from nas import data as fer

    log.info(f"loading data from {path} ...")
    fer.load(path, ("train", "val"))


def resume(
    run_dir: str | Path,
    generations: int | None = None,
    *,
    jobs: int | None = None,
    data: str | None = None,
    callbacks: Sequence[Callback] = (),
    plots: bool = True,
) -> Result:
    """Continue a search from its run directory (to ``generations``, if given, else its own number; with
    ``jobs`` workers, if given, else its own number; on the same data found at ``data``, if it moved)."""
    run_dir = Path(run_dir)
    config = _with_run_changes(runconfig.read(run_dir), generations, jobs, data)
    _check_space(config, run_dir / rundir.CONFIG)
    try:
        _load_data(config.data)  # before config.json is rewritten
    except DataError as exc:  # say where the path came from: the flag, or the run's own configuration
        where = "--data" if data is not None else f"{run_dir / rundir.CONFIG}: the run's data"
        raise DataError(f"{where}: {first_line(exc)}") from None
    if (run_dir / rundir.OLD_CHECKPOINT).exists() and not (run_dir / rundir.CHECKPOINT).exists():
        log.warning(
            f"{run_dir / rundir.OLD_CHECKPOINT}: an older checkpoint format, not loaded (unpickling can run code); "
            f"the search restarts at generation 0 and takes every evaluation it repeats from {rundir.CACHE}"
        )
    return _run(run_dir, config, callbacks, plots, save_config=True)


def replay(
    config_file: str | Path,
    run_dir: str | Path | None = None,
    *,
    generations: int | None = None,
    jobs: int | None = None,
    data: str | None = None,
    callbacks: Sequence[Callback] = (),
    plots: bool = True,
) -> Result:
    """Run again, in a new run directory, the search that ``config_file`` describes: a run's ``config.json``,
    or a TOML file with the same sections (search, problem, space, data, evaluation); with ``jobs``
    workers on this machine, if given (the search is the same: each network's training is seeded), and the
    data at ``data``, if given."""
    from nas.genome.space import tomllib

    path = Path(config_file)
    if path.suffix == ".toml":
        try:
            stored = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{path}: configuration not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RunDirError(f"{path}: unreadable configuration ({exc})") from None
    else:
        stored = rundir.read_json(path, "configuration")
    config = _with_run_changes(RunConfig.from_dict(stored, path), generations, jobs, data)
    _check_space(config, path)
    config = replace(config, versions=rundir.versions(), cpu=rundir.cpu_model(), command=" ".join(sys.argv),
                     created=time.strftime("%F %T"))  # fmt: skip
    return _start(run_dir, config, callbacks, plots)


def _with_run_changes(config: RunConfig, generations: int | None, jobs: int | None, data: str | None) -> RunConfig:
    """What a resume or a replay may change (``config.RESUME_SETTINGS``): where the data is (a resume checks
    that its content is the run's), the generations, and the workers on this machine (each its share of its
    cores)."""
    from nas.data import stored_path

    if data is not None:
        config = replace(config, data=stored_path(data))
    if generations is not None:
        config = config.with_changes("search", generations=generations)
    if jobs is not None:  # checked by the evaluation section itself
        config = config.with_changes("evaluation", jobs=jobs, threads_per_job=runconfig.threads_for(max(jobs, 1)))
    return config


def _check_space(config: RunConfig, path: Path) -> None:
    """A stored configuration's space, checked before anything is written."""
    from nas.genome.space import space_from_dict

    space_from_dict(dict(config.space), source=str(path))


def _run(run_dir: Path, config: RunConfig, callbacks: Sequence[Callback], plots: bool, save_config: bool = False,
         new: bool = False) -> Result:  # fmt: skip
    """Run the search while this process holds the run directory (``rundir.locked``), logging into its
    ``run.log`` too (appended to by every resume: the whole story of a long run, with times). A ``new`` run
    checks again, under the lock, that no search has begun there since, before its ``config.json`` is written."""
    with rundir.locked(run_dir):
        if new:
            _refuse_a_used(run_dir)
        handler = logging.StreamHandler(rundir.open_append(run_dir / rundir.RUN_LOG))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        level = log.level
        log.addHandler(handler)
        log.setLevel(min(log.getEffectiveLevel(), logging.INFO))  # the file gets INFO whatever the console shows
        try:
            log.info(f"{'resumed' if rundir.read_checkpoint(run_dir) else 'started'}: {' '.join(sys.argv)}")
            return _assemble_and_run(run_dir, config, callbacks, plots, save_config)
        except BaseException as exc:  # into the file only: the caller reports it
            handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, f"stopped: {exc!r}", None, None))
            raise
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
            handler.stream.close()


def _assemble_and_run(run_dir: Path, config: RunConfig, callbacks: Sequence[Callback], plots: bool,
                      save_config: bool) -> Result:  # fmt: skip
    """Assemble problem, evaluator, strategy and runner from a run's configuration, and run it. With
    ``save_config`` (a resume's changed generations or jobs), ``config.json`` is rewritten once the run's
    saved files (latency tables, cache, checkpoint, the search state it holds) have been read through their
    checks under the lock: a resume that stops on one of them, or on a directory in use, leaves every file
    as it was."""
    from nas.deploy.latency import LatencyTable, machine_table_path
    from nas.evolve.evaluate import Evaluator, LatencyConfig, estimate
    from nas.evolve.plots import Plots
    from nas.evolve.problem import Problem
    from nas.evolve.runner import Runner
    from nas.evolve.strategies import make_strategy
    from nas.genome.space import space_from_dict

    space = space_from_dict(dict(config.space), source=config.space_file)
    p, search_cfg, ev = config.problem, config.search, config.evaluation
    table = None  # the latency table predicts the latency objective, or the latency cap (even if measured)
    if ev.latency_model == "table" or p.max_latency_ms is not None:
        table = LatencyTable(machine_table_path(), run_dir / rundir.LATENCY_TABLE)
    shape, classes = tuple(space.input_shape), space.num_classes
    task = _eval_task(config, shape, classes)
    cache = rundir.Cache(run_dir / rundir.CACHE)
    evaluator = Evaluator(
        task,
        cache,
        ev.jobs,
        ev.backend,
        ev.scheduler,
        LatencyConfig(backend=ev.latency_backend),
        state_dir=run_dir / rundir.STATES,
        latency_table=table if ev.latency_model == "table" else None,
    )
    problem = Problem.create(
        space, p.objectives, p.max_mflops, p.max_params, None, p.max_latency_ms,
        (lambda g: table.predict(g, shape, classes)) if table else None, _floor(p, evaluator), p.min_params,
    )  # fmt: skip
    strategy = make_strategy(ev.strategy, evaluator, problem, **ev.strategy_options)
    checkpoint = rundir.read_checkpoint(run_dir)
    _check_same_data(run_dir, checkpoint, cache, evaluator.fingerprint, config.data)
    if checkpoint and search_cfg.generations < checkpoint["generation"]:
        raise SettingError(f"--generations {search_cfg.generations}: {run_dir} has searched "
                           f"{checkpoint['generation']} already; ask for at least that many")  # fmt: skip
    done = checkpoint["generation"] + 1 if checkpoint else 0
    todo = search_cfg.population * (search_cfg.generations + 1 - done)
    runner = Runner(problem, strategy, cache, search_cfg, run_dir, [*callbacks, *([Plots(run_dir)] if plots else [])])
    epochs, final_epochs = strategy.epochs_per_network(), strategy.final_epochs()
    log.info(estimate(task, todo, ev.jobs, epochs, runner.finalists, final_epochs, problem))
    save = (lambda: rundir.write_json(run_dir / rundir.CONFIG, config.to_dict())) if save_config else None
    try:
        state = runner.run(restored=save)
    finally:
        strategy.close()
    _report_champion(run_dir, task)
    return Result(run_dir, state.generation, state.front, state.champion, state.progress, state.seconds)


def _eval_task(config: RunConfig, shape: tuple, classes: int):
    """What every candidate's training shares: data, fidelity, seed, device, threads and numerics."""
    from nas.evolve.fidelity import Fidelity
    from nas.evolve.worker import EvalTask

    ev = config.evaluation
    return EvalTask(
        data=config.data,
        fidelity=Fidelity(**ev.fidelity),
        seed=config.search.seed,
        device=ev.device,
        threads=ev.threads_per_job,
        time_limit=ev.time_limit,
        input_shape=shape,
        num_classes=classes,
        bf16_above_flops=None if ev.bf16_above_mflops is None else ev.bf16_above_mflops * 1e6,
    )


def _check_same_data(run_dir: Path, checkpoint: dict | None, cache, fingerprint: str, data: str) -> None:
    """A resumed run must train on the data it started with: its front would otherwise mix two data sets."""
    if not checkpoint:
        return
    keys = [row["cache_key"] for row in checkpoint["rows"]]  # rows checked by rundir.read_checkpoint
    started = {cache.get(k).get("data") for k in keys if k in cache} - {None, fingerprint}
    if started:
        raise RunDirError(f"{run_dir / rundir.CONFIG}: {data} is not the data this run started with (content "
                          f"{fingerprint}, not {sorted(started)[0]}); resume with the original data")  # fmt: skip


def _floor(problem: ProblemConfig, evaluator):
    """The run's accuracy floor, from the data its candidates train and are validated on; logged."""
    from nas.evolve.problem import accuracy_floor

    fidelity, data = evaluator.task.fidelity, evaluator.data
    val = data["val"].subset(fidelity.val_images, evaluator.task.seed)  # the images candidates are validated on
    all_train = len(data["train"])
    train_images = min(fidelity.train_images or all_train, all_train)  # as many as Split.subset takes
    floor = accuracy_floor(problem.accuracy_margin, problem.floor_after, val.class_counts().tolist(), train_images,
                           all_train, fidelity.epochs)  # fmt: skip
    margin = problem.accuracy_margin
    if floor is not None:
        log.info(f"accuracy floor: a network not above {floor.accuracy:.3f} validation accuracy from epoch "
                 f"{floor.from_epoch} on is infeasible (the majority-class rate + {margin:g})")  # fmt: skip
    elif margin is not None and margin > -1:
        log.info(f"no accuracy floor: fidelity {fidelity.name} trains less than {problem.floor_after:g} epochs "
                 "of Training: accuracy cannot yet tell slow learners from networks that learn nothing")  # fmt: skip
    return floor


def _report_champion(run_dir: Path, task) -> None:
    """Where the champion left the search fully trained (the top rung): save it and write its test report,
    as ``train.py`` would, continuing the search's training instead of repeating it."""
    from nas.training.final import searched_checkpoint, train_final

    if searched_checkpoint(run_dir) is None:
        return
    report = train_final(run_dir, recipe="searched", epochs=task.fidelity.epochs, seed=task.seed, device=task.device)
    log.info(f"champion fully trained by the search: test accuracy {report['ten_crop']['acc']:.4f} ten-crop")


# ---------------------------------------------------------------- after the search


def tune(
    run_dir: str | Path, genome: str | None = None, data: str | None = None, confirmation: dict | None = None, **study
) -> dict:
    """Tune the champion's (or ``genome``'s) training recipe with Optuna; returns ``tuned.json``'s contents.

    ``study``: the fields of ``nas.training.options.StudyOptions``; ``confirmation``: those of
    ``ConfirmOptions`` (best, epochs, patience, core_hours, margin).
    """
    from nas.training import tuning
    from nas.training.final import target

    confirm = typed(tuning.Confirmation, confirmation or {}, "tune")  # checked before anything is read
    options = typed(tuning.StudyOptions, study, "tune")
    run_dir, genome, data = target(run_dir, genome, None, data)
    study = tuning.tune(genome, data, run_dir, options, confirm)
    return tuning.read_tuned(run_dir / rundir.TUNED) | {"n_trials": len(study.trials)}


def train(run_dir: str | Path, **kwargs) -> dict:
    """Train the champion (or ``genome=``, or ``baseline=``) fully and report on the test split
    (see ``nas.training.final.train_final``); returns the report."""
    from nas.training.final import train_final

    return train_final(run_dir, **kwargs)


def distill(run_dir: str | Path, teacher: tuple[str, ...] = ("best",), **kwargs) -> dict:
    """Teach the search's small networks from its best fully trained ones, each beside itself trained without
    a teacher (see ``nas.training.students.distill_run``); returns the summary."""
    from nas.training.students import distill_run

    return distill_run(run_dir, tuple(teacher), **kwargs)


def export(run_dir: str | Path | None = None, checkpoint: str | Path | None = None,
           out: str | Path | None = None) -> dict:  # fmt: skip
    """Export a trained model (``<run_dir>/model.pt`` or ``checkpoint``) to ONNX + TorchScript + model.json."""
    from nas.deploy.artifact import export as export_model
    from nas.deploy.artifact import load_checkpoint

    if (run_dir is None) == (checkpoint is None):
        raise SettingError("export needs a run directory or a checkpoint, not both")
    if run_dir is not None:
        checkpoint = Path(run_dir) / rundir.MODEL
        if not checkpoint.exists():
            raise RunDirError(f"{checkpoint}: no trained champion; run scripts/train.py --run {run_dir} first")
    checkpoint = Path(checkpoint)
    model, state = load_checkpoint(checkpoint)
    out = Path(out) if out else checkpoint.parent / "export"
    report = checkpoint.parent / rundir.REPORT  # written beside model.pt by the final training
    from nas.training.report import read_report

    test = read_report(report) if report.exists() else None
    if test is not None and test.get("genome") not in (None, state.get("genome")):
        raise RunDirError(f"{report}: its genome is not {checkpoint.name}'s (the test report of another network: "
                          "its card would carry that one's figures); move the report away, or export that "
                          "network")  # fmt: skip
    return export_model(model, out, state.get("metrics"), test_report=test) | {"out": str(out)}


def demo(source: str, model: str | Path | None = None, output: str | Path | None = None, headless: bool = False,
         backend: str = "onnx", max_frames: int | None = None, **config) -> Demo:  # fmt: skip
    """Run the Haar-cascade demo on a webcam index, video, image or folder (``config``: ``DemoConfig`` fields
    set on top of the demo's settings for the source, None for its own); ``model`` by default the one that
    ships with the package."""
    from nas.deploy.demo import run

    if headless and not output:
        raise NasError("--headless needs --output (out.mp4, out.png or a folder)")
    return run(str(source), None if model is None else str(model), str(output) if output else None, headless,
               None, backend, max_frames, **{k: v for k, v in config.items() if v is not None})  # fmt: skip


def analyze(image: str | Path | np.ndarray, model: str | Path | None = None, backend: str = "onnx") -> list[dict]:
    """The faces in one picture (a path or an array) with their expressions, as ``nas.deploy.demo.analyze``
    gives them; ``model`` by default the one that ships with the package."""
    from nas.deploy.demo import analyze as analyze_image

    return analyze_image(image, model, backend=backend)


def report(run_dir: str | Path) -> list[Path]:
    """Redraw a run's plots from its tables (also while its search runs); returns the files written."""
    from nas.evolve.plots import redraw

    return redraw(run_dir)


def baselines() -> list[dict]:
    """The hand-made networks with their parameters and FLOPs."""
    from nas.genome.space import describe_baselines

    return describe_baselines()
