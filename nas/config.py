"""The run configuration: every setting of a search, typed, with its default, help and check, in one place.

A search is one frozen ``RunConfig`` of sections per concern: the problem (objectives and caps), the
search (algorithm, population, generations, champion), the evaluation (strategy, fidelity, workers,
numerics), the data and the space. Each field is declared once with ``nas.settings.setting``; the
``evolve`` flags and their help (``nas.cli``), the Python API's keywords (``nas.api.search``) and a TOML
file only override fields (``create``). A run's ``config.json`` is the resolved whole (``to_dict``), read
back by ``from_dict`` through ``migrate``, the one place that knows older runs' layouts.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nas import rundir
from nas.errors import RunDirError, SettingError, SpaceError, check_positive, first_line
from nas.evolve.algorithms import ALGORITHMS, DEFAULT_ALGORITHM, algorithm_class, resolve_options
from nas.evolve.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, parse_objectives
from nas.evolve.strategies import DEFAULT_STRATEGY, STRATEGIES, strategy_class
from nas.settings import check_choices, merged, setting, typed
from nas.training.options import CLASS_BALANCE

CHAMPION_RULES = ("max-acc", "max-f1", "knee")  # nas.evolve.runner's champion rules
BACKENDS, LATENCY_BACKENDS, LATENCY_MODELS = ("loky", "dask"), ("onnx", "torch"), ("table", "measured")
NUMERICS = ("auto", "fp32", "bf16")
FIDELITY_HELP = (
    "training budget: a preset (cheap, default, long, rich, full) or IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR][wsd[cBRANCH]]"
)


@dataclass(frozen=True)
class ProblemConfig:
    """What is searched for: the objectives and the caps on what may be trained."""

    objectives: tuple[str, ...] = setting(DEFAULT_OBJECTIVES, f"from {', '.join(OBJECTIVES)}")
    max_mflops: float | None = setting(None, "FLOPs cap per image, in place of the space's")
    max_params: float | None = setting(None, "parameter cap: larger networks are never trained")
    max_latency_ms: float | None = setting(
        None,
        "latency cap in ms, predicted by the machine's latency table, in place of the space's (the default space's: 1)",
    )
    min_params: float | None = setting(None, "parameter floor: smaller networks are never trained (none by default)")
    # the useful-accuracy floor (nas.evolve.problem.Floor); None in runs made before it existed
    accuracy_margin: float | None = setting(
        0.02, "a network not above the validation split's majority-class rate by this much is infeasible "
        "(-1: no floor)",
    )  # fmt: skip
    floor_after: float = setting(2.0, "the floor judges a network once it has seen this many epochs of Training")

    def __post_init__(self) -> None:
        check_positive(max_mflops=self.max_mflops, max_params=self.max_params, max_latency_ms=self.max_latency_ms,
                       min_params=self.min_params, floor_after=self.floor_after)  # fmt: skip
        if self.accuracy_margin is not None and not -1 <= self.accuracy_margin < 1:
            raise SettingError(f"--accuracy-margin must be in [-1, 1), got {self.accuracy_margin:g}")
        parse_objectives(self.objectives)


@dataclass(frozen=True)
class SearchConfig:
    """How to search; the problem, the data and the evaluation live in their own sections."""

    generations: int = setting(30, "generations after the first; on --resume, the run's own unless given")
    # 8: a 30-generation search on the full fidelity (248 first rungs of 2.25 epochs of all of Training) and
    # its two finalists' full trainings fit 5 h on 2 cores (docs/measurements.md)
    population: int = setting(8, "networks a generation; a multiple of 4 for nsga2")
    algorithm: str = setting(DEFAULT_ALGORITHM, "the search algorithm (nas.evolve.algorithms)", choices=ALGORITHMS)
    seed: int = setting(0, "the same seed gives the same search")
    options: dict = setting(help="the algorithm's own settings (its Options)", flag=False, factory=dict)
    seed_networks: str = setting(
        "baselines", "networks generation 0 starts from where the caps admit them: baselines "
        "(search_spaces/baselines.toml), none, or a file of genomes, one a line",
    )  # fmt: skip
    seeds: dict = setting(help="the seed networks by name, read when the run is created", flag=False, factory=dict)
    champion_rule: str = setting(
        "max-acc", "the champion: the best validation accuracy or macro-F1 on the front, or the knee",
        choices=CHAMPION_RULES,
    )  # fmt: skip
    champion_max_params: float | None = setting(None, "champion budget")
    champion_max_latency_ms: float | None = setting(None, "champion budget")
    # the most accurate front members within the budgets train again at a richer fidelity after the last
    # generation, and the champion is the most accurate of them there (0: the brief training decides)
    finalists: int = setting(2, "front members trained again to choose the champion (one each per core)")
    finalist_fidelity: str = setting("rich", "their fidelity (as --fidelity)")

    def __post_init__(self) -> None:
        if self.population < 4:
            raise SettingError(f"--population must be >= 4, got {self.population}")
        if self.generations < 0:
            raise SettingError(f"--generations must be >= 0, got {self.generations}")
        if self.finalists < 0:
            raise SettingError(f"--finalists must be >= 0, got {self.finalists}")
        check_positive(
            champion_max_params=self.champion_max_params, champion_max_latency_ms=self.champion_max_latency_ms
        )
        check_choices(self)
        resolve_options(self.algorithm, self.options)
        algorithm_class(self.algorithm).check_population(self.population)


@dataclass(frozen=True)
class EvaluationConfig:
    """How each candidate is trained and timed; ``fidelity`` is a preset's name or spelled-out budget until
    the run is created, then the resolved budget (``nas.evolve.fidelity.Fidelity``'s fields)."""

    strategy: str = setting(DEFAULT_STRATEGY, "evaluation strategy (nas.evolve.strategies)", choices=STRATEGIES)
    strategy_options: dict = setting(help="the strategy's own settings (its Options)", flag=False, factory=dict)
    fidelity: str | dict = setting("full", FIDELITY_HELP)
    class_balance: str = setting(
        "none", "the brief training's loss for the class imbalance: inverse-frequency weights or balanced softmax",
        choices=CLASS_BALANCE,
    )  # fmt: skip
    jobs: int | None = setting(None, "parallel training workers (default: one per core)")
    threads_per_job: int | None = setting(None, flag=False)  # the cores over the workers, fixed at creation
    backend: str = setting("loky", "parallel training workers", choices=BACKENDS)
    scheduler: str | None = setting(None, "Dask scheduler address (with --backend dask)")
    device: str = setting("auto", "auto, cpu or cuda")
    time_limit: float | None = setting(
        900, "seconds of training per candidate and rung (not the finalists' full training; 0: no limit)"
    )
    latency_backend: str = setting(
        "onnx", "runtime the latency is of (torch: with --latency-model measured; a latency cap is ONNX's)",
        choices=LATENCY_BACKENDS,
    )  # fmt: skip
    latency_model: str = setting(
        "table", "table: the objective is predicted from per-block latencies measured once per machine "
        "(reproducible); measured: timed end to end every generation (noisy)", choices=LATENCY_MODELS,
    )  # fmt: skip
    numerics: str = setting(
        "auto", "auto: bf16 autocast for the networks this machine trains faster in it (calibrated once)",
        choices=NUMERICS,
    )  # fmt: skip
    # training in bf16 on the CPU above this many MFLOPs (None: never), fixed when the run is created
    bf16_above_mflops: float | None = setting(None, flag=False)

    def __post_init__(self) -> None:
        check_choices(self)
        if self.jobs is not None and self.jobs < 1:
            raise SettingError(f"--jobs must be >= 1, got {self.jobs}")
        if self.time_limit == 0:
            object.__setattr__(self, "time_limit", None)  # no limit, as a config file's null says
        if self.time_limit is not None and not self.time_limit > 0:
            raise SettingError(f"--time-limit must be positive, or 0 for none, got {self.time_limit:g}")
        if self.scheduler and self.backend != "dask":
            raise SettingError("--scheduler needs --backend dask")
        if self.latency_backend == "torch" and self.latency_model == "table":  # the table times ONNX Runtime
            raise SettingError("--latency-backend torch needs --latency-model measured (the latency table is ONNX's)")


SECTIONS = {"problem": ProblemConfig, "search": SearchConfig, "evaluation": EvaluationConfig}


def algorithm_options() -> type:
    """Every registered algorithm's options in one dataclass (the ``evolve`` flags)."""
    return merged({name: algorithm_class(name).Options for name in ALGORITHMS})


def strategy_options() -> type:
    """Every registered evaluation strategy's options in one dataclass (the ``evolve`` flags)."""
    return merged({name: strategy_class(name).Options for name in STRATEGIES})


# what a resume (or a replay) may change: the data's place (a resume checks it is the same data), the
# generations and the workers; everything else is the run's own
RESUME_SETTINGS = ("data", "generations", "jobs")


@dataclass(frozen=True)
class RunConfig:
    """A whole search: its sections, the data, the space (its file and its contents) and where it ran."""

    search: SearchConfig
    problem: ProblemConfig
    evaluation: EvaluationConfig
    data: str
    space: dict
    space_file: str
    versions: dict = field(default_factory=dict)
    cpu: str = ""
    command: str = ""
    created: str = ""

    def to_dict(self) -> dict:
        """What ``config.json`` holds."""
        out = asdict(self)
        out["problem"]["objectives"] = list(self.problem.objectives)
        return out

    @classmethod
    def from_dict(cls, stored: dict, path: Path | str) -> RunConfig:
        """A stored configuration (``config.json``, or a TOML file with its sections), older layouts
        migrated; a missing section or a value of the wrong type is one line naming the file and field."""
        stored = migrate(stored, Path(path))
        try:
            sections = {name: typed(kind, stored[name], f"{path}: [{name}]") for name, kind in SECTIONS.items()}
        except SettingError as exc:
            message = str(exc)
            raise RunDirError(message if message.startswith(str(path)) else f"{path}: {message}") from None
        ev = sections["evaluation"]
        if not isinstance(ev.fidelity, dict) or ev.jobs is None or ev.threads_per_job is None:
            raise RunDirError(f"{path}: [evaluation] needs fidelity as a table, jobs and threads_per_job, as a run's "
                              "config.json has them")  # fmt: skip
        _check_fidelity(ev.fidelity, path)
        if ev.fidelity.get("class_balance", "none") != ev.class_balance:  # the fidelity's is the one trained with
            raise RunDirError(f"{path}: [evaluation] class_balance {ev.class_balance!r} is not its fidelity's "
                              f"{ev.fidelity.get('class_balance', 'none')!r}; give the same in both")  # fmt: skip
        return cls(**sections, data=stored["data"], space=stored["space"], space_file=str(stored.get("space_file", "")),
                   **{k: stored[k] for k in ("versions", "cpu", "command", "created") if k in stored})  # fmt: skip

    def with_changes(self, section: str, **changes: Any) -> RunConfig:
        return replace(self, **{section: replace(getattr(self, section), **changes)})


def _check_fidelity(fidelity: dict, path: Path | str) -> None:
    """A stored fidelity's fields, each of its type and none missing, or one line naming the file."""
    from nas.evolve.fidelity import Fidelity  # torch: only once a run's stored settings are read

    where = f"{path}: [evaluation] fidelity"
    try:
        typed(Fidelity, fidelity, where)
    except SettingError as exc:
        raise RunDirError(str(exc)) from None
    except TypeError as exc:  # a field without a default is missing
        raise RunDirError(f"{where}: {first_line(exc).split('__init__() ')[-1]}") from None


def read(run_dir: Path | str) -> RunConfig:
    """A run's ``config.json``, typed (older runs' layouts migrated)."""
    path = Path(run_dir) / rundir.CONFIG
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no {rundir.CONFIG})")
    return RunConfig.from_dict(rundir.read_json(path, "run configuration"), path)


def section_of(name: str) -> str:
    """The section that declares setting ``name``."""
    for section, kind in SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(kind)}:
            return section
    raise SettingError(f"unknown search setting {name!r}")


def create(data: str | None = None, space: str | Path = "default", **settings: Any) -> RunConfig:
    """The resolved configuration of a new run from ``settings`` (field names of any section; the rest
    keep their declared defaults), checked before anything is written."""
    from nas.data import resolve_data_path, stored_path
    from nas.evolve.problem import Problem, resolve_caps
    from nas.genome.space import load_space, resolve_space_path, seed_networks

    loaded = load_space(space)  # the space first: its errors before the settings', as always
    _check_shape(loaded)
    by_section: dict[str, dict] = {name: {} for name in SECTIONS}
    for name, value in settings.items():
        if value is not None or name not in ("options", "strategy_options"):  # None: the algorithm's own
            by_section[section_of(name)][name] = value
    if isinstance(by_section["problem"].get("objectives"), str):
        by_section["problem"]["objectives"] = tuple(by_section["problem"]["objectives"].split(","))
    sections = {name: SECTIONS[name](**values) for name, values in by_section.items()}
    p = sections["problem"]
    caps = resolve_caps(loaded, p.max_mflops, p.max_params, p.max_latency_ms, p.min_params)
    # what the strategy's options are checked against (no latency is predicted yet: the table is the run's)
    built = Problem(loaded, parse_objectives(p.objectives), {k: v for k, v in caps.items() if k != "latency_ms"})
    _check_feasible(built)
    search = sections["search"]
    return RunConfig(
        search=replace(search, options=asdict(resolve_options(search.algorithm, search.options)),
                       seeds=seed_networks(search.seed_networks)),
        problem=_resolve_problem(p, caps),
        evaluation=_resolve_evaluation(sections["evaluation"], search, built),
        data=stored_path(resolve_data_path(data)),
        space=loaded.to_dict(),
        space_file=str(resolve_space_path(space)),
        versions=rundir.versions(),
        cpu=rundir.cpu_model(),
        command=" ".join(sys.argv),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )  # fmt: skip


FEASIBILITY_DRAWS = 200  # uniform samples that must hold one network within the caps (each ~10-60 ms to count)


def _check_feasible(problem) -> None:
    """Caps that no network of the space meets are an error now, not a search of rejected networks: some of
    ``FEASIBILITY_DRAWS`` uniform samples must be within them (the first usually is); without caps, one
    network must be drawn."""
    import random

    from nas.genome.space import sample

    rng, drawn = random.Random(0), []
    for _ in range(FEASIBILITY_DRAWS):
        genome = sample(problem.space, rng)  # a space no network can be drawn from stops here, naming its file
        if not problem.caps or problem.admits(genome):
            return
        drawn.append(problem.costs(genome))
    nearest = min((c for c in drawn if c), key=problem.violation, default=None)
    reason = problem.rejection(genome, nearest) if nearest else "none could be built"
    raise SettingError(f"no network of space {problem.space.name!r} is within the caps: none of {FEASIBILITY_DRAWS} "
                       f"uniform samples is (the nearest: {reason.removeprefix('over budget: ')})")  # fmt: skip


def _check_shape(space) -> None:
    from nas import data as fer

    data_shape = (1, fer.SIZE, fer.SIZE)
    if tuple(space.input_shape) != data_shape or space.num_classes != len(fer.CLASS_NAMES):
        raise SpaceError(
            f"{space.source}: input_shape {list(space.input_shape)} and num_classes {space.num_classes} do not "
            f"match the data (FER2013: {list(data_shape)}, {len(fer.CLASS_NAMES)} classes)"
        )


def _resolve_problem(problem: ProblemConfig, caps: dict[str, float]) -> ProblemConfig:
    """The caps as the problem applies them: the space's budgets unless the run gave its own."""
    return replace(
        problem,
        objectives=tuple(o.name for o in parse_objectives(problem.objectives)),
        max_mflops=caps["flops"] / 1e6 if "flops" in caps else None,
        max_params=caps.get("params"),
        max_latency_ms=caps.get("latency_ms"),
    )


def _resolve_evaluation(ev: EvaluationConfig, search: SearchConfig, built) -> EvaluationConfig:
    """The fidelity spelled out, the strategy's options with their defaults, the workers and the numerics."""
    from types import SimpleNamespace

    from nas.evolve.fidelity import get_fidelity
    from nas.evolve.strategies import make_strategy
    from nas.training.loop import resolve_device

    try:
        get_fidelity(search.finalist_fidelity)
    except SettingError as exc:
        raise SettingError(f"--finalist-fidelity: {str(exc).removeprefix('--fidelity: ')}") from None
    if not isinstance(ev.fidelity, str):
        raise SettingError("--fidelity must name a preset or spell out a budget")
    fidelity = get_fidelity(ev.fidelity)
    # the strategy checks its options against the fidelity now, before anything is written (no evaluator yet)
    evaluator = SimpleNamespace(task=SimpleNamespace(fidelity=fidelity))
    options = make_strategy(ev.strategy, evaluator, built, **ev.strategy_options).options()
    resolve_device(ev.device)
    jobs = max(1, ev.jobs or os.cpu_count() or 1)
    threads = threads_for(jobs)
    bf16_above = _bf16_threshold(ev.numerics, threads, ev.device)
    return replace(
        ev,
        strategy_options=options,
        fidelity=asdict(replace(fidelity, class_balance=ev.class_balance)),
        jobs=jobs,
        threads_per_job=threads,
        bf16_above_mflops=None if bf16_above is None else bf16_above / 1e6,
    )


def threads_for(jobs: int) -> int:
    """Torch threads a training worker gets: the machine's cores shared out over the workers."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _bf16_threshold(numerics: str, threads: int, device: str) -> float | None:
    """Which networks train in bf16 on the CPU: above a FLOPs threshold (this machine's, calibrated once:
    ``auto``), all (``bf16``) or none (``fp32``)."""
    if numerics == "fp32":
        return None
    if numerics == "bf16":
        return 0.0
    from nas.training.numerics import machine_rule

    return machine_rule(threads, device)


# ---------------------------------------------------------------- older runs


_VARIATION = ("cx_prob", "mut_prob", "cx_points", "mutation_weights")
_PENALTY = ("penalty", "target_params", "target_latency_ms", "penalty_exponent", "penalty_per_doubling")
REQUIRED = ("search", "problem", "space", "evaluation")  # with "data": what a run cannot do without


def migrate(stored: dict, path: Path) -> dict:
    """A stored configuration in today's layout: the one place that knows how older runs were written.

    Settings a run was created without keep what runs did before each existed, so its cache keys and
    results stay what they were: the latency measured end to end (before the table), training in fp32
    (before the numeric modes), validation after every epoch in fp32 (before those choices)."""
    if not isinstance(stored, dict):
        raise RunDirError(f"{path}: unreadable run configuration (not a table of sections)")
    stored = _upgrade_engine(dict(stored), path)
    missing = [k for k in REQUIRED if not isinstance(stored.get(k), dict)]
    if missing or not isinstance(stored.get("data"), str):
        raise RunDirError(f"{path}: unreadable run configuration (no {', '.join(missing) or 'data'} section)")
    stored["search"] = _upgrade_seeds(dict(stored["search"]))
    stored["problem"] = {"accuracy_margin": None, **stored["problem"]}  # no floor before it existed
    ev = dict(stored["evaluation"])
    ev.setdefault("latency_model", "measured")
    ev.setdefault("numerics", "auto" if ev.get("bf16_above_mflops") is not None else "fp32")
    fidelity = ev.get("fidelity")
    if isinstance(fidelity, dict):
        ev["fidelity"] = {"validate_every_epoch": True, "validate_bf16": False, **fidelity}
        ev.setdefault("class_balance", fidelity.get("class_balance", "none"))
    stored["evaluation"] = ev
    return stored


def _upgrade_seeds(search: dict) -> dict:
    """Runs before seeded first generations were a search setting (2026-12-05): NSGA-II's and aging's option
    ``seed_baselines`` (default off) said whether the hand-made baselines joined generation 0."""
    if "seed_networks" in search:
        return search
    from nas.genome.space import seed_networks

    options = dict(search.get("options") or {})
    spec = "baselines" if options.pop("seed_baselines", False) else "none"
    return search | {"options": options, "seed_networks": spec, "seeds": seed_networks(spec)}


def _upgrade_engine(config: dict, path: Path) -> dict:
    """Configs written before the search engine had algorithms, a problem and strategies (2026-11-24)."""
    if "problem" in config:
        return config
    try:
        old, space = dict(config["search"]), config["space"]
        penalty = old.get("mode") == "penalty"
        keys = _VARIATION + (_PENALTY + ("tournament_size", "elites") if penalty else ())
        options = {k: old[k] for k in keys if k in old}
        if old.get("algorithm", "nsga2") == "nsga2":
            options["seed_baselines"] = old.get("seed_baselines", False)
        elif old.get("algorithm") == "optuna":
            options = {"cx_prob": old.get("cx_prob", 0.5)}
        else:
            options = {}
        config["search"] = {
            "generations": old["generations"],
            "population": old["population"],
            "algorithm": "ga" if penalty else old.get("algorithm", "nsga2"),
            "seed": old["seed"],
            "options": options,
            "champion_rule": old.get("champion_rule", "max-acc"),
            "champion_max_params": old.get("max_params"),
            "champion_max_latency_ms": old.get("max_latency_ms"),
        }
        config["problem"] = {"objectives": list(old["objectives"]), "max_mflops": space.get("max_mflops")}
        config["evaluation"] = {"strategy": "scratch", "strategy_options": {}, "fidelity": config.pop("fidelity"),
                                **config["evaluation"]}  # fmt: skip
    except (KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{path}: unreadable run configuration (no problem section, and no older run's layout: "
                          f"missing {exc})") from None  # fmt: skip
    return config
