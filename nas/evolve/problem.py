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
    "min_params": (1.0, "parameters", ",.0f", ",.0f"),
}
MINIMUMS = {"min_params": "params"}  # caps that are lower bounds: cap name -> the cost it bounds


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
    def trained(self) -> bool:
        """Trained to a measured accuracy, feasible or not (under the accuracy floor, say)."""
        return self.record.get("status") == "ok"

    @property
    def ok(self) -> bool:
        return self.feasible and self.trained

    def values(self, objectives: tuple[objs.Objective, ...]) -> tuple[float, ...]:
        return tuple(self.objectives[o.name] for o in objectives)


def resolve_caps(
    space: SearchSpace,
    max_mflops: float | None,
    max_params: float | None,
    max_latency_ms: float | None,
    min_params: float | None = None,
) -> dict[str, float]:
    """The caps a run applies, in the package's units: each of the space's budgets unless the run gives its own."""
    mflops = max_mflops if max_mflops is not None else space.max_mflops
    latency_ms = max_latency_ms if max_latency_ms is not None else space.max_latency_ms
    caps = {"flops": mflops * 1e6} if mflops else {}
    if max_params:
        caps["params"] = float(max_params)
    if latency_ms:
        caps["latency_ms"] = float(latency_ms)
    if min_params:
        caps["min_params"] = float(min_params)
    return caps


@dataclass(frozen=True)
class Floor:
    """The useful-accuracy floor: a network whose validation accuracy, measured after at least ``from_epoch``
    epochs of the run's schedule, is not above ``accuracy`` is infeasible (it has learnt next to nothing)."""

    accuracy: float  # the validation split's majority-class rate plus a margin
    from_epoch: int

    def applies(self, epochs: float | None) -> bool:
        return epochs is not None and epochs >= self.from_epoch


def accuracy_floor(margin: float | None, after: float, val_counts, train_images: int, all_train_images: int,
                   epochs: int) -> Floor | None:  # fmt: skip
    """The floor of a run: the validation split's majority-class rate (``val_counts``: images per class) plus
    ``margin``, judged from the epoch of the schedule (``epochs``, over ``train_images`` a epoch) at which a
    network has seen ``after`` epochs' worth of all of Training (``all_train_images``). None where there is
    no margin, or no rung of the schedule reaches that point: measured before it, accuracy does not tell a
    slow learner from a network that learns nothing (benchmarks/results/floor.md)."""
    if margin is None or margin <= -1:  # runs made before the floor; -1: none asked for
        return None
    from_epoch = max(1, math.ceil(after * all_train_images / max(1, train_images) - 1e-9))
    if from_epoch > epochs:
        return None
    return Floor(max(val_counts) / max(1, sum(val_counts)) + margin, from_epoch)


@dataclass
class Problem:
    """Space + objectives + caps (``{"flops": 60e6, "params": 2e5}``) + the accuracy floor; ``costs`` may be
    replaced (tests).

    ``latency_fn`` predicts a network's latency (``nas.deploy.latency.LatencyTable``): with it, latency too is a
    cost known before training, and may be capped. The caps are known before training, the floor only after:
    a network under it is infeasible as one over a cap is (constrained domination: the worst value on every
    objective, so it never beats a feasible network, is never promoted, never on the front).
    """

    space: SearchSpace
    objectives: tuple[objs.Objective, ...]
    caps: dict[str, float] = field(default_factory=dict)
    costs_fn: Callable[[Genome], Costs | None] | None = None
    latency_fn: Callable[[Genome], float] | None = None
    floor: Floor | None = None
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
        floor: Floor | None = None,
        min_params: float | None = None,
    ) -> Problem:
        """The problem of a run: the space's own budgets (FLOPs, latency), each unless the run gives its own."""
        caps = resolve_caps(space, max_mflops, max_params, max_latency_ms, min_params)
        return cls(space, objs.parse_objectives(objectives), caps, costs_fn, latency_fn, floor)

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
        """Per cap, how far ``costs`` break it as a share of the cap (negative: within it)."""
        out = {}
        for name, cap in self.caps.items():
            value = costs.get(MINIMUMS.get(name, name))
            if value is not None:
                out[name] = 1.0 - value / cap if name in MINIMUMS else value / cap - 1.0
        return out

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
        over, under = [], []
        for name, excess in self.excess(costs).items():
            if excess > 0:
                scale, unit, value_format, cap_format = CAP_UNITS[name]
                value = format(costs[MINIMUMS.get(name, name)] / scale, value_format)
                limit = format(self.caps[name] / scale, cap_format)
                if name in MINIMUMS:
                    under.append(f"{value} {unit}, under the run's minimum of {limit} {unit}")
                else:
                    over.append(f"{value} {unit}, over the run's budget of {limit} {unit}")
        return "; ".join([f"over budget: {'; '.join(over)}"] * bool(over) + under)

    def below_floor(self, accuracy: float, epochs: float | None) -> bool:
        """Whether a validation accuracy measured after ``epochs`` of the schedule is under the floor."""
        return self.floor is not None and self.floor.applies(epochs) and accuracy <= self.floor.accuracy

    def shortfall(self, record: dict) -> float:
        """How far a trained network is under the floor, as a share of it (0: not under it, or not yet judged)."""
        if record.get("status") != "ok" or not self.below_floor(record["val_acc"], record.get("epochs")):
            return 0.0
        return 1e-6 + (self.floor.accuracy - record["val_acc"]) / self.floor.accuracy

    def evaluation(self, genome: Genome, record: dict) -> Evaluation:
        """Wrap a record: objectives by name (each one's worst unless the network trained and is feasible) and
        the violation (over the caps, or under the floor)."""
        violation = self.violation(record) + self.shortfall(record)
        values = objs.values(record, self.objectives) if violation <= 0 else [o.worst for o in self.objectives]
        return Evaluation(genome, record, {o.name: v for o, v in zip(self.objectives, values)}, violation)
