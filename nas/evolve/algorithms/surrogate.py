"""Surrogate-assisted NSGA-II (as NSGANetV2 does): breed many more children than a generation trains, rank
them by a predictor, train only the best.

Each generation breeds ``pool`` times as many new children as it trains (NSGA-II's tournaments and
variation, under the caps), predicts their accuracy with a random forest refitted on every evaluation so
far (``nas.evolve.predictor``), ranks them as NSGA-II's survival would on the predicted accuracy and the costs
known before training (latency stands in by FLOPs, which rank it with Spearman rho 0.996 here, so the pool
needs no latency measurements), and trains the best; ``explore`` of the slots go to children drawn at
random from the rest, so the predictor keeps seeing where it is wrong. Children predicted under the
problem's accuracy floor are not trained at all. Until ``warmup`` networks have
trained it is plain NSGA-II. Each generation it logs the predictor's Kendall tau on the networks it then
saw trained (``predictor_tau`` in progress.csv).
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.evolve import objectives as objs
from nas.evolve.algorithms import Lookup, Proposal, nsga2, restored, saved
from nas.evolve.algorithms.variation import breed
from nas.evolve.predictor import Predictor, features
from nas.evolve.problem import Evaluation
from nas.genome.grammar import Genome
from nas.settings import setting


@dataclass(frozen=True)
class Options(nsga2.Options):
    pool: int = setting(10, "children bred per child trained")
    explore: float = setting(0.25, "share of the trained children drawn at random from the rest of the pool")
    warmup: int = setting(16, "trained networks before the predictor chooses")


class SurrogateNSGA2(nsga2.NSGA2):
    name = "surrogate"
    Options = Options

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[Evaluation] = []
        self.predicted: dict[str, float] = {}
        self.tau: float | None = None

    def ask(self, n: int) -> list[Proposal | Genome]:
        trained = [ev for ev in self.history if ev.trained]  # under the floor too: the predictor learns from them
        if not self.pop or len(trained) < self.options.warmup:
            return super().ask(n)
        seen, pool = {ev.key for ev in self.history}, {}
        for _ in range(self.options.pool):
            for child in breed([Genome(tuple(ind)) for ind in self._parents()], self.problem, self.rng, self.options):
                if child.genome.key not in seen:
                    pool.setdefault(child.genome.key, child)
        candidates = list(pool.values())
        if len(candidates) <= n:
            return (candidates + super().ask(n - len(candidates)))[:n]  # NSGA-II breeds a whole population
        epochs = max(ev.record.get("epochs") or 0 for ev in trained)
        predictor = Predictor(self.seed).fit(
            [features(ev.genome, ev.record, ev.record.get("epochs") or epochs) for ev in trained],
            [ev.record["val_acc"] for ev in trained],
        )
        costs = [self.problem.costs(c.genome) for c in candidates]
        mean, _ = predictor.predict([features(c.genome, k, epochs) for c, k in zip(candidates, costs)])
        # the predictor never chooses a child it predicts under the accuracy floor: those come last, and only
        # the exploration share (drawn at random, to show the predictor where it is wrong) may reach them
        useful = [i for i, m in enumerate(mean) if not self.problem.below_floor(m, epochs)]
        points, objectives = self._ranking_points([mean[i] for i in useful], [costs[i] for i in useful])
        order = [useful[i] for i in objs.preference(points, objectives)]
        explore = round(self.options.explore * n)
        exploit = order[: n - explore]
        rest = order[len(exploit) :] + sorted(set(range(len(candidates))) - set(useful))
        chosen = exploit + self.rng.sample(rest, min(explore, len(rest)))
        self.predicted = {candidates[i].genome.key: float(mean[i]) for i in chosen}
        return [candidates[i] for i in chosen]

    def _ranking_points(self, accuracy, costs: list[dict]) -> tuple[list[tuple], tuple]:
        """The problem's objectives as the pool can know them: every trained one by the predicted accuracy,
        every cost by its value (or its stand-in's, where it costs a measurement), each column once."""
        ranked = {}
        for o in self.problem.objectives:
            stand_in = next((s for s in objs.OBJECTIVES.values() if s.column == o.stand_in), o)
            ranked.setdefault(None if o.trained else (o.stand_in or o.column), stand_in)
        points = [tuple(a if c is None else k[c] for c in ranked) for a, k in zip(accuracy, costs)]
        return points, tuple(ranked.values())

    def tell(self, evaluations: list[Evaluation]) -> None:
        from scipy.stats import kendalltau

        self.history += evaluations
        known = [ev for ev in evaluations if ev.trained and ev.key in self.predicted]
        pairs = [(self.predicted[ev.key], ev.record["val_acc"]) for ev in known]
        self.tau = float(kendalltau(*zip(*pairs)).statistic) if len(pairs) >= 3 else None
        self.predicted = {}
        super().tell(evaluations)

    def progress(self) -> dict:
        return {"predictor_tau": self.tau}

    def state_dict(self) -> dict:
        return super().state_dict() | {"history": saved(self.history)}

    def load_state_dict(self, state: dict, lookup: Lookup) -> None:
        super().load_state_dict(state, lookup)
        self.history = restored(state["history"], lookup)
