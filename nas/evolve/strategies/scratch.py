"""Train every new network from scratch for the fidelity's whole schedule: one job per request."""

from __future__ import annotations

from nas.evolve.strategies import OnRecord, Request, Strategy


class Scratch(Strategy):
    name = "scratch"

    def evaluate(self, requests: list[Request], on_record: OnRecord | None = None) -> list[dict]:
        return self.evaluator.evaluate([str(r.genome) for r in requests], on_record)
