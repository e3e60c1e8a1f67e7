"""The DEAP driver: NSGA-II (or one penalised fitness) over genomes, with checkpoints and resume.

Individuals are lists of genes with a DEAP fitness; workers only ever see genome strings (see
``nas.evaluate``), so the ``creator`` classes never need to be unpickled elsewhere. All randomness of
the search comes from two seeded generators (ours and the global ``random`` that DEAP's selection
uses); both states go into every checkpoint, so a resumed run takes the same decisions as an
uninterrupted one, and evaluations already in the cache are never trained again.
"""

from __future__ import annotations

import math
import pickle
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from deap import base, creator, tools

from nas import objectives as objs
from nas.errors import RunDirError
from nas.evaluate import Evaluator
from nas.genome import Genome, parse_genome
from nas.space import SearchSpace, crossover, load_baselines, mutate, repair, sample

CHECKPOINT = "checkpoint.pkl"
ALGORITHMS = ("nsga2", "random", "optuna")
VARY_TRIES = 20  # breedings per child slot before an over-budget child gives way to its parent


@dataclass(frozen=True)
class SearchConfig:
    """How to search; the space, the data and the evaluation live elsewhere."""

    generations: int = 30
    population: int = 16
    # "nsga2": DEAP's genetic search (NSGA-II, or one penalised fitness with mode "penalty"); "random"
    # and "optuna" (Optuna's NSGAIISampler) are the baselines it must beat, on the same space and evaluator
    algorithm: str = "nsga2"
    mode: str = "pareto"  # or "penalty"
    objectives: tuple[str, ...] = objs.DEFAULT_OBJECTIVES
    seed: int = 0
    seed_baselines: bool = False
    cx_prob: float = 0.5
    mut_prob: float = 0.9
    cx_points: int = 1
    mutation_weights: dict[str, float] = field(default_factory=lambda: {"add": 1, "remove": 1, "change": 2, "swap": 1})
    # penalty mode, "mnas": MnasNet's soft constraint acc * (params/P)^w * (latency/T)^w;
    # "linear": acc - c * log2(params/P) - c * log2(latency/T), i.e. c of accuracy per doubling
    penalty: str = "mnas"
    target_params: float = 100_000
    target_latency_ms: float = 1.0
    penalty_exponent: float = -0.07
    penalty_per_doubling: float = 0.02
    tournament_size: int = 3
    elites: int = 2
    # the champion: best validation accuracy on the front within these budgets, or the knee point
    champion_rule: str = "max-acc"
    max_params: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        objs.parse_objectives(self.objectives)
        if self.mode not in ("pareto", "penalty"):
            raise ValueError(f"mode must be 'pareto' or 'penalty', got {self.mode!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.algorithm != "nsga2" and (self.mode != "pareto" or self.seed_baselines):
            raise ValueError(f"--algorithm {self.algorithm} searches the Pareto front from random genomes only")
        if self.algorithm == "nsga2" and self.mode == "pareto" and self.population % 4:
            raise ValueError(f"population must be a multiple of 4 for NSGA-II (got {self.population})")
        if self.population < 4 or self.generations < 0:
            raise ValueError("need population >= 4 and generations >= 0")
        if self.penalty not in ("mnas", "linear"):
            raise ValueError(f"penalty must be 'mnas' or 'linear', got {self.penalty!r}")
        if self.champion_rule not in ("max-acc", "knee"):
            raise ValueError(f"champion rule must be 'max-acc' or 'knee', got {self.champion_rule!r}")

    @property
    def objective_list(self) -> tuple[objs.Objective, ...]:
        return objs.parse_objectives(self.objectives)


def _creator_classes(objectives: tuple[objs.Objective, ...]):
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


def penalized_fitness(record: dict, cfg: SearchConfig) -> float:
    """One number: accuracy traded against size (and latency, when it is an objective) around targets.

    Both forms reward networks below the targets a little and punish those above smoothly (a soft
    constraint); failed candidates get the worst value.
    """
    if record.get("status") != "ok":
        return -math.inf
    ratios = [record["params"] / cfg.target_params]
    if "latency" in cfg.objectives:
        ratios.append(record["latency_ms"] / cfg.target_latency_ms)
    if cfg.penalty == "linear":
        return float(record["val_acc"] - sum(cfg.penalty_per_doubling * math.log2(r) for r in ratios))
    return float(record["val_acc"] * math.prod(r**cfg.penalty_exponent for r in ratios))


@dataclass
class State:
    """Everything a checkpoint holds; plain data apart from DEAP's logbook."""

    generation: int
    population: list[str]
    archive: list[str]
    logbook: tools.Logbook
    rows: list[dict]  # one per evaluation request: generation, genome, cached
    random_state: tuple
    rng_state: tuple
    numpy_state: dict
    torch_state: torch.Tensor
    cache: dict[str, dict]
    seconds: float = 0.0


class Search:
    """One search: ``run()`` goes generation by generation, checkpointing after each."""

    def __init__(
        self,
        space: SearchSpace,
        cfg: SearchConfig,
        evaluator: Evaluator,
        run_dir: Path,
        on_generation: Callable[[State, list[dict]], None] | None = None,
        progress: Callable[[int, int], Callable[[dict, bool], None]] | None = None,
    ) -> None:
        self.space, self.cfg, self.evaluator, self.run_dir = space, cfg, evaluator, Path(run_dir)
        self.objectives = cfg.objective_list
        self.Individual = _creator_classes(self.objectives)
        self.on_generation, self.progress = on_generation, progress
        self.rng = random.Random(cfg.seed)

    # ----------------------------------------------------------- evaluation

    def _evaluate(self, genomes: list[Genome], generation: int, rows: list[dict]) -> list:
        """Evaluate and record one row per request; ``cached`` marks genomes this run evaluated before."""
        on_record = self.progress(generation, len(genomes)) if self.progress else None
        records = self.evaluator.evaluate([str(g) for g in genomes], on_record)
        seen = {r["cache_key"] for r in rows}
        for rec in records:
            rows.append({"generation": generation, "cache_key": rec["cache_key"], "cached": rec["cache_key"] in seen})
            seen.add(rec["cache_key"])
        return self._individuals(genomes, records)

    def _individuals(self, genomes: list[Genome], records: list[dict]) -> list:
        inds = []
        for g, rec in zip(genomes, records):
            ind = self.Individual(g.genes)
            ind.fitness.values = objs.values(rec, self.objectives)
            ind.penalized.values = (penalized_fitness(rec, self.cfg),)
            ind.record = rec
            inds.append(ind)
        return inds

    def _assign_crowding(self, pop: list) -> None:
        """Rank and crowding distance of the population itself, in place and without reordering.

        Tournament selection (DCD) reads them; computing them from the population alone, not from the
        larger set it survived from, is what lets a resumed run decide exactly like an uninterrupted one.
        """
        if self.cfg.mode == "pareto":
            for front in tools.sortNondominated(pop, len(pop)):
                tools.emo.assignCrowdingDist(front)

    # ----------------------------------------------------------- variation and selection

    def _initial(self) -> list[Genome]:
        seen: set[str] = set()
        baselines = (repair(b.genome, self.space) for b in load_baselines().values()) if self.cfg.seed_baselines else ()
        genomes = self._new_affordable(baselines, seen, self.cfg.population)
        return genomes + self._fresh(seen, self.cfg.population - len(genomes))

    def _fresh(self, seen: set[str], n: int) -> list[Genome]:
        """``n`` uniform samples of the space, new and within the FLOPs budget (see ``_new_affordable``).

        Rejection sampling keeps them uniform over the affordable part of the space. A tiny or
        over-constrained space that runs out gets repeats or over-budget networks (which the evaluator
        rejects untrained) rather than a search that never starts.
        """
        genomes = self._new_affordable((sample(self.space, self.rng) for _ in range(100 * n)), seen, n)
        while len(genomes) < n:
            genomes.append(sample(self.space, self.rng))
        return genomes

    def _new_affordable(self, candidates: Iterable[Genome], seen: set[str], n: int) -> list[Genome]:
        """Up to ``n`` of ``candidates``, in order, not in ``seen`` (cache keys, updated) and within budget.

        Stops as soon as it has ``n``, so a lazy ``candidates`` draws no more than it needs.
        """
        genomes: list[Genome] = []
        if n <= 0:
            return genomes
        for g in candidates:
            key = self.evaluator.key_of(str(g))
            if key not in seen and self.evaluator.admits(g):
                genomes.append(g)
                seen.add(key)
                if len(genomes) == n:
                    break
        return genomes

    def _vary(self, parents: list) -> list[Genome]:
        """One child per parent, bred with its neighbour; a child over the FLOPs budget is bred again.

        Crossover and mutation repair a genome's grammar but know nothing of its cost; retrying keeps
        every evaluation for a network that gets trained. A slot with no affordable child after
        ``VARY_TRIES`` gets its parent back (a repeat, served by the cache).
        """
        genomes = [Genome(tuple(p)) for p in parents]
        mates = [genomes[i ^ 1] if i ^ 1 < len(genomes) else None for i in range(len(genomes))]
        children = []
        for g, mate in zip(genomes, mates):
            for _ in range(VARY_TRIES):
                child = self._child(g, mate)
                if self.evaluator.admits(child):
                    break
            else:
                child = g
            children.append(child)
        return children

    def _child(self, a: Genome, b: Genome | None) -> Genome:
        """Crossover with ``b`` (if any) and mutation, each with its probability."""
        cfg = self.cfg
        if b is not None and self.rng.random() < cfg.cx_prob:
            a = crossover(a, b, self.space, self.rng, cfg.cx_points)[0]
        if self.rng.random() < cfg.mut_prob:
            a = mutate(a, self.space, self.rng, cfg.mutation_weights)
        return a

    def _propose(self, pop: list, rows: list[dict]) -> list[Genome]:
        """The next generation's candidates; the alternatives to DEAP's GA override this."""
        return self._vary(self._select_parents(pop))

    def _select_parents(self, pop: list) -> list:
        if self.cfg.mode == "pareto":
            return tools.selTournamentDCD(pop, len(pop))
        k = len(pop) - self.cfg.elites
        return tools.selTournament(pop, k, self.cfg.tournament_size, fit_attr="penalized")

    def _survivors(self, pop: list, offspring: list) -> list:
        if self.cfg.mode == "pareto":
            return tools.selNSGA2(pop + offspring, self.cfg.population)
        elites = tools.selBest(pop, self.cfg.elites, fit_attr="penalized")
        return elites + offspring[: self.cfg.population - len(elites)]

    # ----------------------------------------------------------- the loop

    def run(self, state: State | None = None) -> State:
        """Run (or continue) the search to ``cfg.generations``; returns the final state."""
        if state is None:
            random.seed(self.cfg.seed)
            np.random.seed(self.cfg.seed)
            torch.manual_seed(self.cfg.seed)
            rows: list[dict] = []
            t0 = time.monotonic()
            pop = self._evaluate(self._initial(), 0, rows)
            self._assign_crowding(pop)
            archive = self._archive([], pop)
            state = self._snapshot(0, pop, archive, tools.Logbook(), rows, time.monotonic() - t0)
            self._end_generation(state, pop)
        else:
            self._restore_rngs(state)
            genomes = [parse_genome(g) for g in state.population]
            pop = self._individuals(genomes, self.evaluator.evaluate([str(g) for g in genomes]))
            self._assign_crowding(pop)
            archive = state.archive
        for gen in range(state.generation + 1, self.cfg.generations + 1):
            t0 = time.monotonic()
            offspring = self._evaluate(self._propose(pop, state.rows), gen, state.rows)
            pop = self._survivors(pop, offspring)
            self._assign_crowding(pop)
            archive = self._archive(archive, offspring)
            state = self._snapshot(gen, pop, archive, state.logbook, state.rows, state.seconds + time.monotonic() - t0)
            self._end_generation(state, pop)
        return state

    def _end_generation(self, state: State, pop: list) -> None:
        """Log, checkpoint, then tell the caller: once its files show a generation, it is resumable."""
        front = self._log(state, pop)
        self._checkpoint(state)
        if self.on_generation:
            self.on_generation(state, front)

    def _archive(self, archive: list[str], new: list) -> list[str]:
        """Genome strings of the non-dominated set of everything evaluated so far."""
        cache = self.evaluator.cache
        records = {self.evaluator.key_of(g): cache.get(self.evaluator.key_of(g)) for g in archive}
        records |= {ind.record["cache_key"]: ind.record for ind in new}
        return [r["genome"] for r in pareto_front(list(records.values()), self.objectives)]

    def _log(self, state: State, pop: list) -> list[dict]:
        """Record the generation in the logbook; returns the records of the front."""
        gen_rows = [r for r in state.rows if r["generation"] == state.generation]
        front = [self.evaluator.cache.get(self.evaluator.key_of(g)) for g in state.archive]
        ok = [ind.record for ind in pop if ind.record["status"] == "ok"]
        entry = {
            "gen": state.generation,
            "evals": len(gen_rows),
            "cache_hits": sum(r["cached"] for r in gen_rows),
            "failed": sum(self.evaluator.cache.get(r["cache_key"])["status"] != "ok" for r in gen_rows),
            "best_acc": max((r["val_acc"] for r in front), default=0.0),
            "pop_mean_acc": float(np.mean([r["val_acc"] for r in ok])) if ok else 0.0,
            "front_size": len(front),
            "hypervolume": objs.hypervolume(front, self.objectives),
            "seconds": round(state.seconds, 1),
        }
        state.logbook.record(**entry)
        return front

    # ----------------------------------------------------------- checkpoints

    def _snapshot(self, gen, pop, archive, logbook, rows, seconds) -> State:
        return State(
            generation=gen,
            population=[str(Genome(tuple(ind))) for ind in pop],
            archive=list(archive),
            logbook=logbook,
            rows=rows,
            random_state=random.getstate(),
            rng_state=self.rng.getstate(),
            numpy_state=np.random.get_state(legacy=False),
            torch_state=torch.get_rng_state(),
            cache=dict(self.evaluator.cache.records),
            seconds=seconds,
        )

    def _restore_rngs(self, state: State) -> None:
        random.setstate(state.random_state)
        self.rng.setstate(state.rng_state)
        np.random.set_state(state.numpy_state)
        torch.set_rng_state(state.torch_state)

    def _checkpoint(self, state: State) -> None:
        """Written to a temporary file and renamed: a crash leaves the previous checkpoint whole."""
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(asdict_shallow(state), f)
        tmp.replace(self.run_dir / CHECKPOINT)


class RandomSearch(Search):
    """The standard NAS baseline: every generation is a fresh uniform sample of genomes not tried yet.

    Same space, evaluator, cache, checkpoints and files as the genetic search, so only the way
    candidates are chosen differs.
    """

    def _initial(self) -> list[Genome]:
        return self._fresh(set(), self.cfg.population)

    def _propose(self, pop: list, rows: list[dict]) -> list[Genome]:
        return self._fresh({r["cache_key"] for r in rows}, self.cfg.population)

    def _survivors(self, pop: list, offspring: list) -> list:
        return offspring


def make_search(space: SearchSpace, cfg: SearchConfig, *args, **kwargs) -> Search:
    """The search of ``cfg.algorithm`` (further arguments as for ``Search``); all write the same run directory."""
    if cfg.algorithm == "optuna":
        from nas.optuna_search import OptunaSearch

        return OptunaSearch(space, cfg, *args, **kwargs)
    return (RandomSearch if cfg.algorithm == "random" else Search)(space, cfg, *args, **kwargs)


def asdict_shallow(state: State) -> dict:
    return {k: getattr(state, k) for k in State.__dataclass_fields__}


def load_checkpoint(run_dir: Path) -> State | None:
    """The last checkpoint, or None when the run stopped before its first one (then it restarts from
    generation 0, and its cache spares it every training already done)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            return State(**pickle.load(f))
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{path}: unreadable checkpoint ({exc})") from None


def pareto_front(records: list[dict], objectives: tuple[objs.Objective, ...]) -> list[dict]:
    """Non-dominated successful records (DEAP's fast non-dominated sort), best accuracy first."""
    ok = [
        r
        for r in records
        if r and r.get("status") == "ok" and all(math.isfinite(v) for v in objs.values(r, objectives))
    ]
    if not ok:
        return []
    Ind = _creator_classes(objectives)
    inds = []
    for r in ok:
        ind = Ind([r["genome"]])
        ind.fitness.values = objs.values(r, objectives)
        ind.record = r
        inds.append(ind)
    front = tools.sortNondominated(inds, len(inds), first_front_only=True)[0]
    unique = {ind.record["cache_key"]: ind.record for ind in front}
    return sorted(unique.values(), key=lambda r: (-r["val_acc"], r["params"], r["genome"]))


def choose_champion(front: list[dict], cfg: SearchConfig, objectives: tuple[objs.Objective, ...]) -> dict | None:
    """The champion and the rule that chose it."""
    within = [
        r
        for r in front
        if (cfg.max_params is None or r["params"] <= cfg.max_params)
        and (cfg.max_latency_ms is None or (r.get("latency_ms") or math.inf) <= cfg.max_latency_ms)
    ]
    if not within:
        return None
    if cfg.champion_rule == "knee":
        # closest to the ideal point in the normalised objective space of the hypervolume
        best = min(
            within, key=lambda r: (math.dist(objs.normalized_point(r, objectives), [0] * len(objectives)), r["genome"])
        )
        rule = "knee: the front member closest to the ideal point in normalised objective space"
    else:
        best = max(within, key=lambda r: (r["val_acc"], -r["params"]))
        rule = "max-acc: highest validation accuracy on the front"
    budgets = []
    if cfg.max_params is not None:
        budgets.append(f"params <= {cfg.max_params:g}")
    if cfg.max_latency_ms is not None:
        budgets.append(f"latency <= {cfg.max_latency_ms:g} ms")
    if budgets:
        rule += " within " + " and ".join(budgets)
    return {"rule": rule, **best}
