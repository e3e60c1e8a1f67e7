"""The problem a search solves: the space, the objectives and the constraints, in one object and one unit.

As in pymoo's ``Problem``, what is searched is apart from how: every algorithm proposes genomes of
``space``, and every one of them is judged the same way here. Constraints are caps on costs known before
any training (parameters and FLOPs, counted by building the network once, about 60 ms a genome): a
network over a cap is never trained, and its evaluation is the worst possible on every objective, so it
never beats a network within the caps (algorithms that can, draw or breed again instead: ``admits``).

Units: FLOPs and parameters as counts, everywhere inside the package; the space file's ``max_mflops``
and the ``--max-mflops`` flag are converted once, here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nas.errors import SettingError
from nas.evolve import objectives as objs
from nas.genome.grammar import Genome
from nas.genome.space import SearchSpace

Costs = dict[str, float]  # what is known of a network before training: "params", "flops"
# how each cap is shown to users: scale, unit, format of the value and of the cap
CAP_UNITS = {
    "flops": (1e6, "MFLOPs", ".3g", "g"),
    "params": (1.0, "parameters", ",.0f", ",.0f"),
    "latency_ms": (1.0, "ms (predicted)", ".3g", "g"),
}


def network_costs(space: SearchSpace) -> Callable[[Genome], Costs | None]:
    """Parameters and FLOPs of the built network (torch's counter); None if it cannot be built."""

    def costs(genome: Genome) -> Costs | None:
        from nas.genome.build import build, count_flops, count_params

        try:
            model = build(genome, space.input_shape, space.num_classes)
            return {"params": count_params(model), "flops": count_flops(model, space.input_shape)}
        except Exception:  # noqa: BLE001 - a network that cannot be built is no proposal either
            return None

    return costs


@dataclass(frozen=True)
class Evaluation:
    """One evaluated genome as algorithms see it: objectives by name and how far it breaks the caps.

    ``record`` is the evaluator's plain record (status, error, metrics, seconds) as written to the
    tables; ``objectives`` holds each objective's worst value when the network failed or broke a cap.
    """

    genome: Genome
    record: dict
    objectives: dict[str, float]
    violation: float = 0.0

    @property
    def key(self) -> str:
        return self.genome.key

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0

    @property
    def ok(self) -> bool:
        return self.feasible and self.record.get("status") == "ok"

    def values(self, objectives: tuple[objs.Objective, ...]) -> tuple[float, ...]:
        return tuple(self.objectives[o.name] for o in objectives)


@dataclass
class Problem:
    """Space + objectives + caps (``{"flops": 60e6, "params": 2e5}``); ``costs`` may be replaced (tests).

    ``latency_fn`` predicts a network's latency (``nas.deploy.latency.LatencyTable``): with it, latency too is a
    cost known before training, and may be capped.
    """

    space: SearchSpace
    objectives: tuple[objs.Objective, ...]
    caps: dict[str, float] = field(default_factory=dict)
    costs_fn: Callable[[Genome], Costs | None] | None = None
    latency_fn: Callable[[Genome], float] | None = None
    _costs: dict[str, Costs | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.caps) - set(CAP_UNITS)
        if unknown:
            raise SettingError(f"unknown cap(s) {sorted(unknown)}; caps are known before training: {sorted(CAP_UNITS)}")
        bad = {k: v for k, v in self.caps.items() if not v > 0}
        if bad:
            raise SettingError(f"caps must be positive, got {bad}")
        if "latency_ms" in self.caps and self.latency_fn is None:
            raise SettingError("a latency cap needs the latency known before training (the latency table)")
        self.costs_fn = self.costs_fn or network_costs(self.space)

    @classmethod
    def create(
        cls,
        space: SearchSpace,
        objectives: str | tuple[str, ...],
        max_mflops: float | None = None,
        max_params: float | None = None,
        costs_fn: Callable[[Genome], Costs | None] | None = None,
        max_latency_ms: float | None = None,
        latency_fn: Callable[[Genome], float] | None = None,
    ) -> Problem:
        """The problem of a run: the space's own FLOPs budget unless ``max_mflops`` replaces it."""
        mflops = max_mflops if max_mflops is not None else space.max_mflops
        caps = {"flops": mflops * 1e6} if mflops else {}
        if max_params:
            caps["params"] = float(max_params)
        if max_latency_ms:
            caps["latency_ms"] = float(max_latency_ms)
        return cls(space, objs.parse_objectives(objectives), caps, costs_fn, latency_fn)

    def costs(self, genome: Genome, latency: bool = False) -> Costs | None:
        """Memoised per network: searches ask about the same genomes again and again. The predicted
        latency is added when asked for, or when it is capped (predicting may time blocks not met before)."""
        if genome.key not in self._costs:
            self._costs[genome.key] = self.costs_fn(genome)
        costs = self._costs[genome.key]
        wanted = latency or "latency_ms" in self.caps
        if costs is not None and wanted and self.latency_fn and "latency_ms" not in costs:
            costs["latency_ms"] = self.latency_fn(genome)
        return costs

    def excess(self, costs: Mapping[str, float]) -> dict[str, float]:
        """Per cap, how far ``costs`` exceed it as a share of the cap (negative: within it)."""
        return {name: costs[name] / cap - 1.0 for name, cap in self.caps.items() if costs.get(name) is not None}

    def violation(self, costs: Mapping[str, float] | None) -> float:
        """0 within every cap; otherwise the summed relative excess (pymoo's G > 0); inf if unbuildable."""
        if costs is None:
            return math.inf
        return sum(max(0.0, e) for e in self.excess(costs).values())

    def admits(self, genome: Genome) -> bool:
        """Whether ``genome`` would be trained: within every cap (without caps, nothing is built to know)."""
        return not self.caps or self.violation(self.costs(genome)) <= 0.0

    def rejection(self, genome: Genome, costs: Costs | None) -> str:
        """Why a genome is not trained, in the units users set the caps in."""
        if costs is None:
            return "cannot be built"
        over = []
        for name, cap in self.caps.items():
            if costs.get(name, 0) > cap:
                scale, unit, value_format, cap_format = CAP_UNITS[name]
                value, limit = format(costs[name] / scale, value_format), format(cap / scale, cap_format)
                over.append(f"{value} {unit}, over the run's budget of {limit} {unit}")
        return "over budget: " + "; ".join(over)

    def evaluation(self, genome: Genome, record: dict) -> Evaluation:
        """Wrap a record: objectives by name (each one's worst unless the network trained) and the violation."""
        values = objs.values(record, self.objectives)
        return Evaluation(genome, record, {o.name: v for o, v in zip(self.objectives, values)}, self.violation(record))
