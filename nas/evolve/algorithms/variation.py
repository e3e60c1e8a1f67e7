"""Sampling and breeding under the problem's caps, shared by the genetic algorithms and random search.

Every proposal these helpers make is a network the problem admits, so no evaluation is spent on a
network rejected untrained: uniform samples over budget are drawn again (which keeps them uniform over
the affordable part of the space), and a child over budget is bred again.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from nas.errors import SettingError
from nas.evolve.algorithms import Proposal
from nas.evolve.problem import Problem
from nas.genome.grammar import Genome
from nas.genome.space import MUTATIONS, crossover, mutate, repair, sample
from nas.settings import setting

log = logging.getLogger(__name__)

VARY_TRIES = 20  # breedings per child slot before an over-budget child gives way to its parent


@dataclass(frozen=True)
class Variation:
    """How children are bred: crossover of neighbouring parents, then mutation."""

    cx_prob: float = setting(0.5, "probability that two neighbouring parents are crossed over")
    mut_prob: float = setting(0.9, "probability that a child is mutated")
    cx_points: int = setting(1, "crossover points")
    mutation_weights: dict[str, float] = setting(
        help="relative odds of adding, removing, changing and swapping a block", flag=False,
        factory=lambda: {"add": 1, "remove": 1, "change": 2, "swap": 1},
    )  # fmt: skip

    def __post_init__(self) -> None:
        """Settings DEAP would take silently (a probability of 5, a crossover of 7 points) or fail on mid-search."""
        if not (0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1):
            raise SettingError(f"--cx-prob and --mut-prob must lie in [0, 1], got {self.cx_prob:g}, {self.mut_prob:g}")
        if self.cx_points not in (1, 2):
            raise SettingError(f"--cx-points must be 1 or 2, got {self.cx_points}")
        odds = self.mutation_weights
        if set(odds) - set(MUTATIONS) or not all(0 <= w < math.inf for w in odds.values()) or not any(odds.values()):
            raise SettingError(f"mutation_weights: odds >= 0 of {', '.join(MUTATIONS)}, one > 0 at least; got {odds}")


def new_admitted(candidates: Iterable[Genome], problem: Problem, seen: set[str], n: int) -> list[Genome]:
    """Up to ``n`` of ``candidates``, in order, not in ``seen`` (genome keys, updated) and admitted.

    Stops as soon as it has ``n``, so a lazy ``candidates`` draws no more than it needs.
    """
    genomes: list[Genome] = []
    if n <= 0:
        return genomes
    for g in candidates:
        if g.key not in seen and problem.admits(g):
            genomes.append(g)
            seen.add(g.key)
            if len(genomes) == n:
                break
    return genomes


def fresh(problem: Problem, rng: random.Random, seen: set[str], n: int) -> list[Genome]:
    """``n`` uniform samples of the space, new and admitted.

    A tiny or over-constrained space that runs out gets repeats or over-budget networks (which are
    rejected untrained) rather than a search that never starts.
    """
    genomes = new_admitted((sample(problem.space, rng) for _ in range(100 * n)), problem, seen, n)
    while len(genomes) < n:
        genomes.append(sample(problem.space, rng))
    return genomes


def seeded(problem: Problem, seeds: dict[str, Genome]) -> list[Proposal]:
    """The seed networks that join a first generation: those in the space as they are (a network that repair
    would change is not the seed any more) and within the caps; the others are logged and left out."""
    joining = []
    for name, genome in seeds.items():
        if repair(genome, problem.space) != genome:
            log.info(f"seed network {name} is not in space {problem.space.name!r}: left out")
        elif not problem.admits(genome):
            log.info(f"seed network {name} is {problem.rejection(genome, problem.costs(genome))}: left out")
        else:
            joining.append(Proposal(genome, origin=name))
    return joining


def initial(problem: Problem, rng: random.Random, n: int, seeds: dict[str, Genome]) -> list[Proposal | Genome]:
    """A first population: the seed networks that fit (``seeded``), then uniform samples."""
    seen: set[str] = set()
    joining = []
    for proposal in seeded(problem, seeds):
        if proposal.genome.key not in seen and len(joining) < n:
            joining.append(proposal)
            seen.add(proposal.genome.key)
    if joining:
        log.info(f"generation 0 starts from {len(joining)} seed network(s): {', '.join(p.origin for p in joining)}")
    return joining + fresh(problem, rng, seen, n - len(joining))


def breed(parents: list[Genome], problem: Problem, rng: random.Random, how: Variation) -> list[Proposal]:
    """One child per parent, bred with its neighbour; a child the problem does not admit is bred again.

    Crossover and mutation repair a genome's grammar but know nothing of its cost; retrying keeps every
    evaluation for a network that gets trained. A slot with no admitted child after ``VARY_TRIES`` gets
    its parent back (a repeat, served by the cache).
    """
    mates = [parents[i ^ 1] if i ^ 1 < len(parents) else None for i in range(len(parents))]
    children = []
    for g, mate in zip(parents, mates):
        for _ in range(VARY_TRIES):
            child = _child(g, mate, problem, rng, how)
            if problem.admits(child.genome):
                break
        else:
            child = Proposal(g, (g,))
        children.append(child)
    return children


def _child(a: Genome, b: Genome | None, problem: Problem, rng: random.Random, how: Variation) -> Proposal:
    """Crossover with ``b`` (if any) and mutation, each with its probability."""
    child, parents = a, (a,)
    if b is not None and rng.random() < how.cx_prob:
        child, parents = crossover(a, b, problem.space, rng, how.cx_points)[0], (a, b)
    if rng.random() < how.mut_prob:
        child = mutate(child, problem.space, rng, how.mutation_weights)
    return Proposal(child, parents)
