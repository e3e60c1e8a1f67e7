"""Search algorithms behind one small ask/tell protocol (pymoo's ask/tell, Optuna's samplers).

An algorithm proposes genomes (``ask``), learns from their evaluations (``tell``), and can say what it
must remember across a restart (``state_dict``, plain data). It never trains, times or saves anything:
the runner (``nas.evolve.runner``) owns the loop, the random generators, the archive, the checkpoints and the
evaluations. Adding an algorithm is one module in this package plus a line in ``ALGORITHMS``.
"""

from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.errors import SettingError
from nas.evolve.problem import Evaluation, Problem
from nas.genome.grammar import Genome, parse_genome
from nas.settings import flag_name, registered, typed

# the run's evaluation of a genome (for resuming): the record of the cache key given, else its latest
Lookup = Callable[[Genome, "str | None"], Evaluation]


def saved(evaluations: list[Evaluation]) -> list[list[str]]:
    """Evaluations as a checkpoint keeps them: each genome with its record's cache key, for a network may
    have several records (successive halving: an early rung's, then its full training's), and a resumed run
    must hold the one it was told."""
    return [[str(ev.genome), str(ev.record.get("cache_key") or "")] for ev in evaluations]


def restored(items: list, lookup: Lookup) -> list[Evaluation]:
    """``saved``'s evaluations again (a checkpoint of before 2026-12-07 kept the genomes alone)."""
    pairs = ((item, None) if isinstance(item, str) else (item[0], item[1] or None) for item in items)
    return [lookup(parse_genome(genome), key) for genome, key in pairs]


@dataclass(frozen=True)
class Proposal:
    """A genome to evaluate and the genomes it was bred from (none for samples)."""

    genome: Genome
    parents: tuple[Genome, ...] = ()
    origin: str = ""  # the seed network's name, for a seed of the first generation


@dataclass(frozen=True)
class NoOptions:
    """An algorithm without settings of its own."""


class Algorithm(ABC):
    """Proposes genomes of ``problem.space`` and learns from their evaluations.

    ``rng`` is the algorithm's own generator (the runner checkpoints its state); DEAP's operators use
    the global ``random``, which the runner seeds and checkpoints too. ``workdir`` is the run directory,
    for algorithms that keep state in files of their own (Optuna's study), or None. ``seeds``: networks by
    name that the first generation starts from (``nas.evolve.algorithms.variation.seeded`` keeps those the
    problem admits); an algorithm without a population says that it ignores them.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    @classmethod
    def check_population(cls, population: int) -> None:
        """Refuse a population size the algorithm cannot work with (checked before a run starts); by default
        any size is fine."""
        return None

    def __init__(
        self,
        problem: Problem,
        population: int,
        rng: random.Random,
        options: Any = None,
        seed: int = 0,
        workdir: Path | None = None,
        seeds: Mapping[str, Genome] | None = None,
    ) -> None:
        self.problem, self.population_size, self.rng, self.seed = problem, population, rng, seed
        self.options = options if options is not None else self.Options()
        self.workdir, self.seeds = workdir, dict(seeds or {})
        self._last: list[Evaluation] = []

    @abstractmethod
    def ask(self, n: int) -> list[Proposal | Genome]:
        """The next genomes to evaluate (``n`` is the population size; an algorithm may propose fewer)."""

    @abstractmethod
    def tell(self, evaluations: list[Evaluation]) -> None:
        """The evaluations of the last ``ask``, in the same order."""

    @property
    def population(self) -> list[Evaluation]:
        """The evaluations the algorithm currently keeps (its parents' pool), for progress statistics."""
        return self._last

    def progress(self) -> dict:
        """Figures of the last generation for progress.csv (e.g. a predictor's accuracy)."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs besides the RNG states and the evaluations: plain data."""
        return {}

    def load_state_dict(self, state: dict, lookup: Lookup) -> None:  # noqa: B027 - optional, like state_dict
        """Restore from ``state_dict()``; ``lookup`` gives the run's evaluation of any genome it evaluated."""


# name -> "module:class", imported only when chosen (Optuna is not imported by a DEAP search)
ALGORITHMS = {
    "nsga2": "nas.evolve.algorithms.nsga2:NSGA2",
    "ga": "nas.evolve.algorithms.ga:PenalizedGA",
    "surrogate": "nas.evolve.algorithms.surrogate:SurrogateNSGA2",
    "aging": "nas.evolve.algorithms.aging:RegularizedEvolution",
    "random": "nas.evolve.algorithms.random_search:RandomSearch",
    "optuna": "nas.evolve.algorithms.optuna_sampler:OptunaSampler",
}
# beat random search's hypervolume on each of 3 seeds on real FER2013 at equal training time (1.27x-1.93x)
# and equal networks (1.06x-1.13x); plain NSGA-II 0.99x-1.40x (README, benchmarks/results/search_real.md)
DEFAULT_ALGORITHM = "surrogate"


def algorithm_class(name: str) -> type[Algorithm]:
    return registered(ALGORITHMS, name, "--algorithm", "algorithm")


def resolve_options(name: str, given: dict | None) -> Any:
    """The algorithm's options with defaults filled in; an option it does not have is an error."""
    cls = algorithm_class(name).Options
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given or {}) - set(known))
    if unknown:
        flags = ", ".join(flag_name(u) for u in unknown)
        raise SettingError(f"{flags}: algorithm {name!r} has no option(s) {unknown}; its options: {known or 'none'}")
    return typed(cls, given or {}, f"algorithm {name!r}")
