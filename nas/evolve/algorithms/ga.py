"""A genetic algorithm on one penalised fitness (MnasNet's soft constraint), with DEAP.

The same breeding as NSGA-II (this module builds on ``nas.evolve.algorithms.nsga2``); parents by tournament on
the penalised fitness, survivors are the elites plus the children.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deap import tools

from nas.errors import check_positive
from nas.evolve.algorithms import nsga2
from nas.evolve.problem import Evaluation
from nas.settings import check_choices, setting


@dataclass(frozen=True)
class Options(nsga2.Options):
    # "mnas": MnasNet's soft constraint acc * (params/P)^w * (latency/T)^w;
    # "linear": acc - c * log2(params/P) - c * log2(latency/T), i.e. c of accuracy per doubling
    penalty: str = setting("mnas", "the form of the one fitness", choices=("mnas", "linear"))
    target_params: float = setting(100_000, "size target")
    target_latency_ms: float = setting(1.0, "latency target")
    penalty_exponent: float = setting(-0.07, "mnas's exponent w")
    penalty_per_doubling: float = setting(0.02, "linear's accuracy per doubling c")
    tournament_size: int = setting(3, "parents' tournament size")
    elites: int = setting(2, "best networks kept unchanged each generation")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(self)
        check_positive(target_params=self.target_params, target_latency_ms=self.target_latency_ms)


def penalized_fitness(record: dict, options: Options, latency: bool) -> float:
    """One number: accuracy traded against size (and latency, when ``latency``) around the targets.

    Both forms reward networks below the targets a little and punish those above smoothly (a soft
    constraint); failed candidates get the worst value.
    """
    if record.get("status") != "ok":
        return -math.inf
    ratios = [record["params"] / options.target_params]
    if latency:
        ratios.append(record["latency_ms"] / options.target_latency_ms)
    if options.penalty == "linear":
        return float(record["val_acc"] - sum(options.penalty_per_doubling * math.log2(r) for r in ratios))
    return float(record["val_acc"] * math.prod(r**options.penalty_exponent for r in ratios))


class PenalizedGA(nsga2.NSGA2):
    name = "ga"
    Options = Options

    @classmethod
    def check_population(cls, population: int) -> None:
        pass  # no tournament on crowding distance, so any population size

    def _parents(self) -> list:
        k = len(self.pop) - self.options.elites
        return tools.selTournament(self.pop, k, self.options.tournament_size, fit_attr="penalized")

    def _survivors(self, offspring: list) -> list:
        elites = tools.selBest(self.pop, self.options.elites, fit_attr="penalized")
        return elites + offspring[: self.population_size - len(elites)]

    def _rank(self) -> None:
        pass

    def _individual(self, ev: Evaluation):
        ind = super()._individual(ev)
        latency = any(o.name == "latency" for o in self.problem.objectives)
        ind.penalized.values = (penalized_fitness(ev.record, self.options, latency),)
        return ind
