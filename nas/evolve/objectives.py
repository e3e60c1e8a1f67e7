"""The objectives, declared once: fitness weights, CSV columns, plot axes, the front and hypervolume derive from here.

Hypervolume is computed in a fixed normalised box so that it is comparable across runs: each objective
is mapped to [0, 1] with 0 the best end of its bounds (log10 for sizes and times) and values past the
bounds clipped; the reference point is (1, ..., 1). A front's hypervolume is the share of the box it
dominates. The default box, ``useful``, spans what users want: accuracy from the majority-class rate of
PublicTest (0.249: a network below it has learnt nothing) to 1, parameters from 10^4 (smaller networks
get no more credit) to 10^7, FLOPs from 10^6 to 10^10, latency from 0.05 ms to 100 ms. The ``pilot`` box
of the first benchmarks (accuracy from 0, parameters from 10^3, latency from 0.01 ms) rewarded degenerate
networks (a 1,015-parameter linear classifier at 0.342 won a random search's seed); it is kept to compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nas.errors import SettingError


@dataclass(frozen=True)
class Objective:
    name: str  # as written on the command line
    column: str  # key in evaluation records and CSV column
    maximize: bool
    label: str  # plot axis label
    log: bool  # plotted and normalised on a log10 scale
    bounds: tuple[float, float]  # best and worst ends of the default hypervolume box ("useful")
    pilot_bounds: tuple[float, float]  # the same in the first benchmarks' box ("pilot")
    # measured by training (the surrogate predicts it with its accuracy model), or a cost known before
    # training (the surrogate takes it from the problem's costs, or ranks by ``stand_in``'s column where
    # this one costs a measurement: latency by FLOPs, which rank it with Spearman rho 0.996 here)
    trained: bool = False
    stand_in: str | None = None

    @property
    def weight(self) -> float:
        """DEAP fitness weight: +1 maximise, -1 minimise."""
        return 1.0 if self.maximize else -1.0

    @property
    def worst(self) -> float:
        """The fitness value a failed candidate gets."""
        return 0.0 if self.maximize else math.inf

    def normalized(self, value: float, box: str = "useful") -> float:
        """0 at the best bound, 1 at (or past) the worst bound."""
        lo, hi = self.bounds if box == "useful" else self.pilot_bounds
        if self.log:
            value, lo, hi = math.log10(max(value, 1e-12)), math.log10(lo), math.log10(hi)
        t = (value - lo) / (hi - lo) if math.isfinite(value) else 1.0
        return min(max(t, 0.0), 1.0)


OBJECTIVES = {
    o.name: o
    for o in (
        # majority class (happy) of PublicTest: 895 of 3,589 images; its macro-F1: (2 * 0.249 / 1.249) / 7
        Objective("acc", "val_acc", True, "validation accuracy", False, (1.0, 0.249), (1.0, 0.0), trained=True),
        Objective("f1", "val_f1", True, "validation macro-F1", False, (1.0, 0.057), (1.0, 0.0), trained=True),
        Objective("params", "params", False, "parameters", True, (1e4, 1e7), (1e3, 1e7)),
        Objective("flops", "flops", False, "FLOPs per image", True, (1e6, 1e10), (1e5, 1e10)),
        Objective(
            "latency",
            "latency_ms",
            False,
            "CPU latency, batch 1, 1 thread (ms)",
            True,
            (5e-2, 1e2),
            (1e-2, 1e2),
            stand_in="flops",
        ),  # fmt: skip
    )
}
DEFAULT_OBJECTIVES = ("acc", "params", "latency")


def parse_objectives(text: str | tuple[str, ...] | list[str]) -> tuple[Objective, ...]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise SettingError(f"--objectives: unknown objective(s) {unknown}; choose from {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise SettingError(f"--objectives: objective listed twice in {names}")
    return tuple(OBJECTIVES[n] for n in names)


def values(record: dict, objectives: tuple[Objective, ...]) -> tuple[float, ...]:
    """Fitness values of an evaluation record; failed or missing ones get each objective's worst."""
    if record.get("status") != "ok":
        return tuple(o.worst for o in objectives)
    out = []
    for o in objectives:
        v = record.get(o.column)
        out.append(o.worst if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
    return tuple(out)


BOXES = ("useful", "pilot")


def normalized_point(record: dict, objectives: tuple[Objective, ...], box: str = "useful") -> list[float]:
    return [o.normalized(v, box) for o, v in zip(objectives, values(record, objectives))]


def hypervolume(records: list[dict], objectives: tuple[Objective, ...], box: str = "useful") -> float:
    """Share of the unit box (normalised objectives, reference point 1, ..., 1) the records dominate."""
    import moocore  # DEAP's own hypervolume backend

    points = [normalized_point(r, objectives, box) for r in records if r.get("status") == "ok"]
    points = [p for p in points if all(v < 1.0 for v in p)]
    if not points:
        return 0.0
    return float(moocore.hypervolume(points, ref=[1.0] * len(objectives)))


def dominates(a: tuple[float, ...], b: tuple[float, ...], objectives: tuple[Objective, ...]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    wa = [v * o.weight for v, o in zip(a, objectives)]
    wb = [v * o.weight for v, o in zip(b, objectives)]
    return all(x >= y for x, y in zip(wa, wb)) and any(x > y for x, y in zip(wa, wb))


def nondominated(points: list[tuple], objectives: tuple[Objective, ...], keep_ties: bool = True) -> list[bool]:
    """Which points no other point dominates (moocore's dimension sweep); ``keep_ties=False`` keeps the
    first of equal points only."""
    import moocore

    if not points:
        return []
    mask = moocore.is_nondominated(points, maximise=[o.maximize for o in objectives], keep_weakly=keep_ties)
    return [bool(m) for m in mask]


def preference(points: list[tuple], objectives: tuple[Objective, ...]) -> list[int]:
    """Indices of ``points``, best first, as NSGA-II's survival keeps them: by Pareto rank (moocore's
    non-dominated sorting), then by crowding distance within a rank (the extremes of each front first)."""
    import moocore
    import numpy as np

    if not points:
        return []
    values = np.asarray(points, dtype=float)
    ranks = moocore.pareto_rank(values, maximise=[o.maximize for o in objectives])
    values = np.nan_to_num(values, nan=0.0, posinf=1e300, neginf=-1e300)  # failed networks' worst values
    crowding = np.zeros(len(values))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        for j in range(values.shape[1]):
            order = members[np.argsort(values[members, j], kind="stable")]
            span = values[order[-1], j] - values[order[0], j]
            crowding[order[[0, -1]]] = np.inf
            if span > 0 and len(order) > 2:
                crowding[order[1:-1]] += (values[order[2:], j] - values[order[:-2], j]) / span
    return sorted(range(len(values)), key=lambda i: (ranks[i], -crowding[i], i))


def pareto_front(records: list[dict], objectives: tuple[Objective, ...]) -> list[dict]:
    """The non-dominated successful records, one per network (cache key), best accuracy first."""
    ok = [r for r in records if r and r.get("status") == "ok" and all(map(math.isfinite, values(r, objectives)))]
    mask = nondominated([values(r, objectives) for r in ok], objectives)
    unique = {r["cache_key"]: r for r, keep in zip(ok, mask) if keep}
    return sorted(unique.values(), key=lambda r: (-r["val_acc"], r["params"], r["genome"]))
