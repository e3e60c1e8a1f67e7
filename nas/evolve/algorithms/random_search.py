"""The standard NAS baseline: every generation is a fresh uniform sample of admitted genomes not tried yet."""

from __future__ import annotations

import logging

from nas.evolve.algorithms import Algorithm, Lookup, Proposal, restored, saved
from nas.evolve.algorithms.variation import fresh
from nas.evolve.problem import Evaluation
from nas.genome.grammar import Genome

log = logging.getLogger(__name__)


class RandomSearch(Algorithm):
    name = "random"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: set[str] = set()  # genome keys of every network evaluated so far
        if self.seeds:
            log.warning("random search ignores the seed networks (--seed-networks): every generation is uniform")

    def ask(self, n: int) -> list[Proposal | Genome]:
        return fresh(self.problem, self.rng, set(self.seen), n)

    def tell(self, evaluations: list[Evaluation]) -> None:
        self.seen |= {ev.key for ev in evaluations}
        self._last = evaluations

    def state_dict(self) -> dict:
        return {"seen": sorted(self.seen), "population": saved(self._last)}

    def load_state_dict(self, state: dict, lookup: Lookup) -> None:
        self.seen = set(state["seen"])
        self._last = restored(state["population"], lookup)
