"""The generic search loop: ask the algorithm, evaluate, tell it; the archive, progress, checkpoints, resume.

Whatever the algorithm and the evaluation strategy, a generation goes the same way: the algorithm
proposes, the problem turns away what breaks its caps (recorded as failed, never trained), the strategy
evaluates the rest, and the algorithm is told every evaluation. The runner keeps what the algorithms
should not have to: one row per evaluation request, the non-dominated archive of everything evaluated,
one progress row per generation, and the random generators. After each generation it writes the
checkpoint (plain JSON: RNG states, the algorithm's state, the rows; never pickle), then the tables and
the champion, then tells the callbacks: once a generation shows in the files, it is resumable. All
randomness of a search comes from two seeded generators, the algorithm's and the global ``random`` that
DEAP uses, so a resumed run takes the same decisions as an uninterrupted one, and evaluations already in
the cache are never trained again.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas import rundir
from nas.config import SearchConfig
from nas.errors import RunDirError, first_line
from nas.evolve import objectives as objs
from nas.evolve.algorithms import Algorithm, Proposal, algorithm_class, resolve_options
from nas.evolve.problem import Evaluation, Problem
from nas.evolve.strategies import Request, Strategy
from nas.genome.grammar import Genome, parse_genome
from nas.rundir import Cache

log = logging.getLogger(__name__)

# the rules that take the front member best on one validation figure (macro-F1 weighs the rare classes in);
# the other of nas.config.CHAMPION_RULES is the knee
RULE_METRIC = {"max-acc": "val_acc", "max-f1": "val_f1"}
NO_LINEAGE = {"origin": "", "variations": None}  # a network that descends from no seed network


class Callback:
    """Hooks into a running search (progress bars, plots); every method is optional."""

    def start_run(self, run_dir: Path | None, generations: int, state: State) -> None:
        """The search starts, or resumes from ``state``, and will go on to ``generations``."""

    def start_generation(self, generation: int, n: int) -> None:
        """``n`` evaluation requests of ``generation`` are about to be made."""

    def on_record(self, record: dict, cached: bool) -> None:
        """One request's record is known (``cached``: from the cache, not trained now)."""

    def end_generation(self, state: State) -> None:
        """The generation is checkpointed and its tables written."""


@dataclass
class State:
    """Where a search stands: the generation done, every request, the progress rows, the front."""

    generation: int = -1
    rows: list[dict] = field(default_factory=list)  # one per evaluation request: generation, cache_key, cached
    progress: list[dict] = field(default_factory=list)  # one per generation
    front: list[dict] = field(default_factory=list)  # the records of the non-dominated archive
    seconds: float = 0.0
    champion: dict | None = None


class Runner:
    """Runs a search in ``run_dir`` (or in memory, without one), resuming whatever checkpoint it holds."""

    def __init__(
        self,
        problem: Problem,
        strategy: Strategy,
        cache: Cache,
        config: SearchConfig,
        run_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.problem, self.strategy, self.cache, self.config = problem, strategy, cache, config
        self.run_dir = Path(run_dir) if run_dir else None
        self.callbacks = list(callbacks)
        self.rng = random.Random(config.seed)
        self.algorithm: Algorithm = algorithm_class(config.algorithm)(
            problem,
            config.population,
            self.rng,
            resolve_options(config.algorithm, config.options),
            seed=config.seed,
            workdir=self.run_dir,
            seeds={name: parse_genome(genome) for name, genome in config.seeds.items()},
        )
        self.lineage: dict[str, dict] = {}  # genome key -> origin (a seed network's name) and variations since

    def run(self, restored: Callable[[], None] | None = None) -> State:
        """Run (or continue) the search to ``config.generations``; returns the final state. ``restored`` is
        called once a saved search has been read through every check (a resume rewrites its config then)."""
        checkpoint = rundir.read_checkpoint(self.run_dir) if self.run_dir else None
        if checkpoint is None:
            random.seed(self.config.seed)
            state = State()
        else:
            state = self._restore(checkpoint)
        if restored is not None:
            restored()
        if checkpoint is not None:
            # the tables as of the checkpoint (a crash may have cut them short); the champion file only if
            # missing: the one there may be the finalists' choice, and a resume that fails must not replace it
            self._write(state, champion_file=not (self.run_dir / rundir.CHAMPION).exists())
        for cb in self.callbacks:
            cb.start_run(self.run_dir, self.config.generations, state)
        for generation in range(state.generation + 1, self.config.generations + 1):
            self._generation(generation, state)
        if self.finalists and state.champion:
            self._finalists(state)
        return state

    @property
    def finalists(self) -> int:
        """Front members trained again after the last generation (none where the champion rule is no metric)."""
        return self.config.finalists if self.config.champion_rule in RULE_METRIC else 0

    def _finalists(self, state: State) -> None:
        """Brief training ranks the top of a front least reliably: its best few train again, longer."""
        c, key = self.config, RULE_METRIC[self.config.champion_rule]
        contenders = self._contenders(state.front)
        genomes = [parse_genome(r["genome"]) for r in contenders]
        finals = self.strategy.finalize(genomes, c.finalist_fidelity)
        scored = [(f[key], -b["params"], b, f) for b, f in zip(contenders, finals) if f["status"] == "ok"]
        if not scored:
            errors = "; ".join(sorted({first_line(str(f.get("error") or f["status"])) for f in finals}))
            log.warning(f"every finalist's training failed ({errors}): the champion is the front's best at its "
                        "brief training, not trained further")  # fmt: skip
            return
        _, _, brief, final = max(scored, key=lambda s: s[:2])
        rule = choose_champion(state.front, c, self.problem.objectives)["rule"]
        state.champion = {
            **self.with_lineage(brief),
            "top_rung_seconds": self._top_rung_seconds(contenders, finals),
            "rule": f"{rule}, then the best of the top {len(contenders)} {self._finalist_training()}",
            "finalist": {k: final.get(k) for k in ("val_acc", "val_f1", "fidelity", "epochs", "train_seconds")}
            | self._checkpoint_of(brief["genome"]),
            "finalists": [
                {"genome": b["genome"], key: b.get(key), f"finalist_{key}": f.get(key)}
                for b, f in zip(contenders, finals)
            ],  # fmt: skip
        }
        if self.run_dir is not None:
            rundir.write_json(self.run_dir / rundir.CHAMPION, state.champion)

    def _top_rung_seconds(self, briefs: list[dict], finals: list[dict]) -> float:
        """The finalists' training after the generations, in wall seconds, from their own clocks (which a
        resume continues): what the search adds to its generations before the champion is fully trained."""
        continued = bool(self.strategy.final_epochs())  # the clock then counts the first rung too
        # the first rung's own clock (its wall time, loading and building included, is counted by the search)
        spent = [max(f["clock_seconds"] - (b.get("clock_seconds") or b.get("train_seconds") or 0.0) * continued, 0.0)
                 for b, f in zip(briefs, finals) if f["status"] == "ok" and "clock_seconds" in f]  # fmt: skip
        return round(max(max(spent, default=0.0), sum(spent) / self._workers()), 1)

    def _finalist_training(self) -> str:
        """How the finalists were compared, in words: at the end of their own training, or after another one."""
        if self.strategy.final_epochs():
            return "after their full training (the top rung)"
        return f"at fidelity {self.config.finalist_fidelity}"

    def _workers(self) -> int:
        return getattr(getattr(self.strategy, "evaluator", None), "jobs", 1)

    def _checkpoint_of(self, genome: str) -> dict:
        """Where the champion's finished training is kept (the top rung of a continuable schedule), relative
        to the run directory, for ``train.py`` to reuse instead of training again."""
        if self.run_dir is None or not self.strategy.final_epochs():
            return {}
        path = self.strategy.state_file(parse_genome(genome))
        return {"checkpoint": str(path.relative_to(self.run_dir))} if path is not None and path.exists() else {}

    # ----------------------------------------------------------- one generation

    def _generation(self, generation: int, state: State) -> None:
        t0 = time.monotonic()
        proposals = [p if isinstance(p, Proposal) else Proposal(p) for p in self.algorithm.ask(self.config.population)]
        evaluations = self._evaluate(proposals, generation, state.rows)
        self.algorithm.tell(evaluations)
        feasible = [ev.record for ev in evaluations if ev.feasible]  # under the floor: never on the front
        state.front = objs.pareto_front(state.front + feasible, self.problem.objectives)
        unmeasured = [r for r in state.front if r.get("measured_latency_ms") is None]
        if unmeasured:  # what the user sees on the front is measured (the objective may be predicted)
            measured = {r["cache_key"]: r for r in self.strategy.measure(unmeasured)}
            state.front = [measured.get(r["cache_key"], r) for r in state.front]
        state.generation, state.seconds = generation, state.seconds + time.monotonic() - t0
        state.progress.append(row := self._progress_row(state))
        self._save(state)
        self.strategy.prune(state.front)  # after the checkpoint: a resume finds every state its front may need
        for cb in self.callbacks:
            cb.end_generation(state)
        log.info(
            f"generation {generation}/{self.config.generations}: {row['evals']} networks ({row['cache_hits']} from "
            f"the cache, {row['failed']} failed), best val acc {row['best_acc']:.4f}, front {row['front_size']}, "
            f"hypervolume {row['hypervolume']:.4f}, {state.seconds / 60:.1f} min so far{self._to_go(state)}"
        )

    def _to_go(self, state: State) -> str:
        """What is left at this run's own pace: the generations, then the finalists' top rung at the speed
        their first rung trained at (the start-up estimate can only guess which networks a search will breed)."""
        left = self.config.generations - state.generation
        seconds = left * state.seconds / max(state.generation + 1, 1)
        final_epochs = self.strategy.final_epochs() if self.finalists else 0.0
        rates = [r["train_seconds"] / r["epochs"] for r in self._contenders(state.front)
                 if r.get("train_seconds") and r.get("epochs")]  # fmt: skip
        top_rung = bool(final_epochs and rates)
        if top_rung:
            seconds += max(rates) * final_epochs * math.ceil(len(rates) / self._workers())
        if not left and not top_rung:
            return ""
        return f"; at this pace ~{seconds / 3600:.1f} h to go" + ", the finalists' top rung included" * top_rung

    def _contenders(self, front: list[dict]) -> list[dict]:
        """The finalists: the front's best on the champion rule's figure within the champion budgets."""
        key = RULE_METRIC[self.config.champion_rule]
        ranked = sorted(_within(front, self.config), key=lambda r: (-(r.get(key) or 0), r["params"]))
        return ranked[: self.finalists]

    def _evaluate(self, proposals: list[Proposal], generation: int, rows: list[dict]) -> list[Evaluation]:
        """Reject what breaks the caps, evaluate the rest; one row per request (``cached``: asked before)."""
        for cb in self.callbacks:
            cb.start_generation(generation, len(proposals))
        records: list[dict | None] = [None] * len(proposals)
        requests, where = [], []
        for i, p in enumerate(proposals):
            costs = self.problem.costs(p.genome)
            if self.problem.violation(costs) > 0:
                records[i] = self.strategy.reject(p.genome, self.problem.rejection(p.genome, costs), costs)
                self._on_record(records[i], False)
            else:  # with its predicted latency: every cost known before training
                requests.append(Request(p.genome, p.parents, dict(self.problem.costs(p.genome, latency=True))))
                where.append(i)
        for i, record in zip(where, self.strategy.evaluate(requests, self._on_record)):
            records[i] = record
        seen = {r["cache_key"] for r in rows}
        for p, r in zip(proposals, records):
            lineage = self.lineage.setdefault(p.genome.key, self._descent(p))
            rows.append({"generation": generation, "cache_key": r["cache_key"], "cached": r["cache_key"] in seen,
                         **lineage})  # fmt: skip
            seen.add(r["cache_key"])
        return [self.problem.evaluation(p.genome, r) for p, r in zip(proposals, records)]

    def _descent(self, proposal: Proposal) -> dict:
        """A new network's lineage: the seed network it descends from (its first parent's with one), if any,
        and how many breedings (crossover, mutation) it is from it; a seed is its own origin."""
        if proposal.origin:
            return {"origin": proposal.origin, "variations": 0}
        for parent in proposal.parents:
            known = self.lineage.get(parent.key, {})
            if known.get("origin"):
                step = 0 if parent.key == proposal.genome.key else 1  # a slot with no child repeats its parent
                return {"origin": known["origin"], "variations": known["variations"] + step}
        return dict(NO_LINEAGE)

    def with_lineage(self, record: dict) -> dict:
        """The record with its network's lineage in this search (``origin``, ``variations``)."""
        return record | self.lineage.get(record.get("key"), NO_LINEAGE)

    def _on_record(self, record: dict, cached: bool) -> None:
        for cb in self.callbacks:
            cb.on_record(record, cached)

    def _progress_row(self, state: State) -> dict:
        gen_rows = [r for r in state.rows if r["generation"] == state.generation]
        ok = [ev.record["val_acc"] for ev in self.algorithm.population if ev.ok]
        return (
            {
                "gen": state.generation,
                "evals": len(gen_rows),
                "cache_hits": sum(r["cached"] for r in gen_rows),
                "failed": sum(self.cache.get(r["cache_key"])["status"] != "ok" for r in gen_rows),
                "best_acc": max((r["val_acc"] for r in state.front), default=0.0),
                "pop_mean_acc": float(np.mean(ok)) if ok else 0.0,
                "front_size": len(state.front),
                "hypervolume": objs.hypervolume(state.front, self.problem.objectives),
                "hypervolume_pilot": objs.hypervolume(state.front, self.problem.objectives, "pilot"),
                "seconds": round(state.seconds, 1),
            }
            | self.algorithm.progress()
            | self.strategy.progress()
        )

    # ----------------------------------------------------------- files

    def _save(self, state: State) -> None:
        """Checkpoint first, then the tables and the champion (which a resume can always rewrite)."""
        if self.run_dir is not None:
            rundir.write_checkpoint(
                self.run_dir,
                {
                    "generation": state.generation,
                    "rng": {"random": random.getstate(), "algorithm": self.rng.getstate()},
                    "algorithm": self.algorithm.state_dict(),
                    "rows": state.rows,
                    "progress": state.progress,
                    "archive": [r["cache_key"] for r in state.front],
                    "seconds": state.seconds,
                },
            )
        self._write(state)

    def _write(self, state: State, champion_file: bool = True) -> None:
        champion = choose_champion(state.front, self.config, self.problem.objectives)
        champion = champion and self.with_lineage(champion)
        state.champion = champion or state.champion
        if self.run_dir is None:
            return
        front = [self.with_lineage(r) for r in state.front]
        rundir.write_tables(self.run_dir, state.rows, self.cache.records, front, state.progress)
        if champion and champion_file:
            rundir.write_json(self.run_dir / rundir.CHAMPION, champion)

    def _restore(self, checkpoint: dict) -> State:
        path = self.run_dir / rundir.CHECKPOINT
        try:
            rng = checkpoint["rng"]
            random.setstate(_rng_state(rng["random"]))
            self.rng.setstate(_rng_state(rng["algorithm"]))

            def cached(key: str) -> dict:
                if key not in self.cache:
                    raise RunDirError(f"{path}: evaluation {key} is missing from {rundir.CACHE}")
                return self.cache.get(key)

            by_genome = {}
            for row in checkpoint["rows"]:
                record = cached(row["cache_key"])
                by_genome[record["key"]] = record
                self.lineage.setdefault(record["key"], {f: row.get(f, NO_LINEAGE[f]) for f in NO_LINEAGE})

            def lookup(genome: Genome, cache_key: str | None = None) -> Evaluation:
                return self.problem.evaluation(genome, cached(cache_key) if cache_key else by_genome[genome.key])

            self.algorithm.load_state_dict(checkpoint["algorithm"], lookup)
            return State(
                generation=checkpoint["generation"],
                rows=checkpoint["rows"],
                progress=checkpoint["progress"],
                front=[cached(k) for k in checkpoint["archive"]],
                seconds=checkpoint["seconds"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RunDirError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None


def _rng_state(saved: list) -> tuple:
    """``random.getstate()`` after a trip through JSON (tuples became lists)."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _within(front: list[dict], config: SearchConfig) -> list[dict]:
    """The front members within the champion's budgets."""
    max_params, max_ms = config.champion_max_params, config.champion_max_latency_ms
    return [
        r
        for r in front
        if (max_params is None or r["params"] <= max_params)
        and (max_ms is None or (r.get("latency_ms") or math.inf) <= max_ms)
    ]


def choose_champion(front: list[dict], config: SearchConfig, objectives: tuple[objs.Objective, ...]) -> dict | None:
    """The champion and the rule that chose it."""
    max_params, max_ms = config.champion_max_params, config.champion_max_latency_ms
    within = _within(front, config)
    if not within:
        return None
    if config.champion_rule == "knee":
        # closest to the ideal point in the normalised objective space of the hypervolume
        best = min(
            within, key=lambda r: (math.dist(objs.normalized_point(r, objectives), [0] * len(objectives)), r["genome"])
        )
        rule = "knee: the front member closest to the ideal point in normalised objective space"
    else:
        key = RULE_METRIC[config.champion_rule]
        best = max(within, key=lambda r: (r.get(key) or 0, -r["params"]))
        figure = "accuracy" if key == "val_acc" else "macro-F1"
        rule = f"{config.champion_rule}: highest validation {figure} on the front"
    budgets = []
    if max_params is not None:
        budgets.append(f"params <= {max_params:g}")
    if max_ms is not None:
        budgets.append(f"latency <= {max_ms:g} ms")
    if budgets:
        rule += " within " + " and ".join(budgets)
    return {"rule": rule, **best}
