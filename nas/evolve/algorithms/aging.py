"""Regularized (aging) evolution (Real et al. 2019), made multi-objective.

A population of the last ``population`` evaluations, oldest first. Each child comes from a tournament:
``sample_size`` members drawn at random, the best of them (as NSGA-II's survival ranks the sample:
Pareto rank, then crowding) is mutated. Children join the population and the oldest leave it, whatever
their fitness: no network survives on one lucky evaluation, which is what regularises the search.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.errors import SettingError
from nas.evolve.algorithms import Algorithm, Lookup, Proposal, restored, saved
from nas.evolve.algorithms.variation import Variation, breed, initial
from nas.evolve.objectives import preference
from nas.evolve.problem import Evaluation
from nas.genome.grammar import Genome
from nas.settings import setting


@dataclass(frozen=True)
class Options(Variation):
    cx_prob: float = setting(0.0, "probability of crossover (aging: none, mutation only, as in the paper)")
    mut_prob: float = setting(1.0, "probability that a child is mutated")
    sample_size: int = setting(4, "networks sampled for each tournament")


class RegularizedEvolution(Algorithm):
    name = "aging"
    Options = Options

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.options.sample_size < 2:
            raise SettingError(f"aging evolution needs sample_size >= 2, got {self.options.sample_size}")

    def ask(self, n: int) -> list[Proposal | Genome]:
        if not self._last:
            return initial(self.problem, self.rng, n, self.seeds)
        objectives = self.problem.objectives
        parents = []
        for _ in range(n):
            sample = self.rng.sample(self._last, min(self.options.sample_size, len(self._last)))
            best = preference([ev.values(objectives) for ev in sample], objectives)[0]
            parents.append(sample[best].genome)
        return breed(parents, self.problem, self.rng, self.options)

    def tell(self, evaluations: list[Evaluation]) -> None:
        self._last = (self._last + evaluations)[-self.population_size :]  # the oldest leave

    def state_dict(self) -> dict:
        return {"population": saved(self._last)}

    def load_state_dict(self, state: dict, lookup: Lookup) -> None:
        self._last = restored(state["population"], lookup)
