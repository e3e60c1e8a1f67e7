"""NSGA-II (Deb et al. 2002) with DEAP: tournaments on rank and crowding, breeding under the caps,
elitist survival of the non-dominated sorting.

One of the two modules that import deap (the penalised GA builds on this one). Individuals are lists of
genes with a DEAP fitness; they never leave this process (workers see genome strings), so the
``creator`` classes never need unpickling elsewhere. DEAP's selection draws from the global ``random``,
which the runner seeds and checkpoints; breeding draws from the algorithm's own generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from deap import base, creator, tools

from nas.errors import SettingError
from nas.evolve import objectives as objs
from nas.evolve.algorithms import Algorithm, Lookup, Proposal, restored, saved
from nas.evolve.algorithms.variation import Variation, breed, initial
from nas.evolve.problem import Evaluation
from nas.genome.grammar import Genome


@dataclass(frozen=True)
class Options(Variation):
    """NSGA-II's settings: how it breeds."""


def creator_classes(objectives: tuple[objs.Objective, ...]) -> type:
    """DEAP classes for these objectives, created once per weight tuple (module-level, picklable)."""
    weights = tuple(o.weight for o in objectives)
    name = "Fitness_" + "_".join("max" if w > 0 else "min" for w in weights)
    if not hasattr(creator, name):
        creator.create(name, base.Fitness, weights=weights)
    if not hasattr(creator, "Penalized"):
        creator.create("Penalized", base.Fitness, weights=(1.0,))
    ind_name = "Individual_" + name
    if not hasattr(creator, ind_name):
        creator.create(ind_name, list, fitness=getattr(creator, name), penalized=creator.Penalized)
    return getattr(creator, ind_name)


class NSGA2(Algorithm):
    """DEAP's NSGA-II over genomes: ``selTournamentDCD`` for parents, ``selNSGA2`` for survivors."""

    name = "nsga2"
    Options = Options

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.check_population(self.population_size)
        self.Individual = creator_classes(self.problem.objectives)
        self.pop: list = []

    @classmethod
    def check_population(cls, population: int) -> None:
        if population % 4:
            raise SettingError(f"--population must be a multiple of 4 for NSGA-II (got {population})")

    def ask(self, n: int) -> list[Proposal | Genome]:
        if not self.pop:
            return initial(self.problem, self.rng, n, self.seeds)
        parents = [Genome(tuple(ind)) for ind in self._parents()]
        return breed(parents, self.problem, self.rng, self.options)

    def tell(self, evaluations: list[Evaluation]) -> None:
        offspring = [self._individual(ev) for ev in evaluations]
        self.pop = self._survivors(offspring) if self.pop else offspring
        self._rank()

    @property
    def population(self) -> list[Evaluation]:
        return [ind.evaluation for ind in self.pop]

    def state_dict(self) -> dict:
        return {"population": saved(self.population)}

    def load_state_dict(self, state: dict, lookup: Lookup) -> None:
        self.pop = [self._individual(ev) for ev in restored(state["population"], lookup)]
        self._rank()

    # ----------------------------------------------------------- what the penalised GA replaces

    def _parents(self) -> list:
        return tools.selTournamentDCD(self.pop, len(self.pop))

    def _survivors(self, offspring: list) -> list:
        return tools.selNSGA2(self.pop + offspring, self.population_size)

    def _rank(self) -> None:
        """Rank and crowding distance of the population itself, in place and without reordering.

        Tournament selection (DCD) reads them; computing them from the population alone, not from the
        larger set it survived from, is what lets a resumed run decide exactly like an uninterrupted one.
        """
        for front in tools.sortNondominated(self.pop, len(self.pop)):
            tools.emo.assignCrowdingDist(front)

    def _individual(self, ev: Evaluation):
        ind = self.Individual(ev.genome.genes)
        ind.fitness.values = ev.values(self.problem.objectives)
        ind.evaluation = ev
        return ind
