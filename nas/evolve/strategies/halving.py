"""Successive halving inside a generation: train every new network a short first rung, continue only the
most promising, from their own training state, to longer rungs up to the fidelity's whole schedule.

Rungs are epochs of the fidelity's schedule (by default three quarters of it, then all of it: ``(3, 4)``
with the 4-epoch ``default``, and ``eta=3``; against a 30-epoch training of the rank-fidelity benchmark's
24 networks these rungs rank them with Kendall tau 0.49, training all 4 epochs with 0.48, rungs ``(2, 4)``
with 0.25: in a one-cycle schedule the first epochs rank networks barely better than chance). A rung is a
prefix of the same training, so a network promoted to the last rung ends exactly where one trained
straight through ends (same record, same cache key as ``scratch``), and no epoch is ever trained twice.
After each rung, ``1 / eta`` of the networks that trained are promoted, chosen as NSGA-II's survival
would choose them on the rung's accuracy and the costs known before training: by Pareto rank, then by
crowding distance, so a tiny network on the front is kept although larger ones are more accurate.

On a schedule that can be cut and continued (a ``wsd`` fidelity such as ``full``: the final training
itself), each rung is scored by a cool-down branch (``nas.training.loop.cooldown_branch``), and the rungs may
stop short of the schedule's end: the rest is the top rung, which only the search's finalists climb
(``finalize``), continuing their own kept states to the full training. Then the champion leaves the search
fully trained. States of networks at the last rung are kept while they are on the front (they may become
finalists) and deleted once they leave it (``prune``).

A network stopped at an early rung keeps the record of that rung (its ``epochs`` say which): an
accuracy measured after less training, which can only understate it, so it enters survival and the
front at a disadvantage and displaces a network measured at the full budget only by dominating it even
so. Rungs are cached like any training and their states kept in the run's ``states/``; a run killed
mid-generation resumes with every finished rung of every network, and continues the promoted ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import SettingError
from nas.evolve.objectives import preference
from nas.evolve.strategies import OnRecord, Request, Strategy
from nas.genome.grammar import Genome
from nas.settings import setting

if TYPE_CHECKING:
    from nas.evolve.evaluate import Evaluator
    from nas.evolve.problem import Problem


@dataclass(frozen=True)
class Options:
    rungs: tuple[int, ...] | None = setting(
        None, "epochs of each rung, e.g. 3,4 (default: three quarters of the fidelity's epochs, then all)"
    )
    eta: float = setting(3.0, "promote 1/eta of the networks per rung")


# the rungs on a continuable schedule, before the finalists' top rung: two epochs and a cool-down ranked the
# rank-fidelity benchmark's 24 networks like a 30-epoch training with Kendall tau 0.78 (0.66-0.89) at 2.25
# epochs a network (one epoch: 0.69); more rungs, compared across rungs as they are here, ranked them worse
# (rungs 2,4 eta 3: 0.72 at 3 epochs; 1,3: 0.62), as Pareto promotion lifts small networks by their extra
# training alone (benchmarks/results/fidelity_full_cpu.md)
CONTINUABLE_RUNGS = (2,)
REPORT_EVERY = 600.0  # seconds between the top rung's progress lines: it trains for hours


class Halving(Strategy):
    name = "halving"
    Options = Options

    def __init__(self, evaluator: Evaluator, problem: Problem, **options: Any) -> None:
        super().__init__(evaluator, problem, **options)
        fidelity = evaluator.task.fidelity
        epochs, self.continuable = fidelity.epochs, fidelity.scheduler == "wsd"
        rungs, eta = self.settings.rungs, self.settings.eta
        if rungs is None:
            rungs = CONTINUABLE_RUNGS if self.continuable else sorted({math.ceil(epochs * 3 / 4), epochs})
        self.rungs, self.eta = tuple(int(r) for r in rungs), float(eta)
        if not self.rungs or list(self.rungs) != sorted(set(self.rungs)) or self.rungs[0] < 1:
            raise SettingError(f"--rungs must be increasing epochs >= 1, got {list(rungs)}")
        if self.rungs[-1] > epochs or (self.rungs[-1] < epochs and not self.continuable):
            end = "at most" if self.continuable else "the fidelity's"
            raise SettingError(f"--rungs: the last rung must be {end} {epochs} epochs, got {self.rungs[-1]}")
        if not self.eta > 1:
            raise SettingError(f"--eta must be > 1 for halving, got {eta:g}")
        self.open_ended = self.rungs[-1] < epochs  # the finalists climb the top rung
        self.reached: list[int] = []  # networks at each rung, in the last generation

    def options(self) -> dict:
        return {"rungs": list(self.rungs), "eta": self.eta}

    def epochs_per_network(self) -> float:
        """Each rung's epochs, and its cool-down branch if scored by one, times the share of networks that
        reach it (1, 1/eta, 1/eta^2, ...); the finalists' top rung is not included."""
        starts, fidelity = (0, *self.rungs[:-1]), self.evaluator.task.fidelity
        branch = fidelity.branch if self.continuable else 0.0
        return sum(
            (until - start + (branch if until < fidelity.epochs else 0)) / self.eta**depth
            for depth, (start, until) in enumerate(zip(starts, self.rungs))
        )

    def evaluate(self, requests: list[Request], on_record: OnRecord | None = None) -> list[dict]:
        from nas.evolve.worker import Job

        genomes = {r.genome.key: r.genome for r in requests}  # one training per network, repeats share it
        records: dict[str, dict] = {}
        alive, self.reached = list(genomes), []
        for depth, until in enumerate(self.rungs):
            self.reached.append(len(alive))
            last = depth == len(self.rungs) - 1
            jobs = [Job(str(genomes[k]), until=until, keep_state=not last or self.open_ended) for k in alive]
            records |= dict(zip(alive, self.evaluator.evaluate(jobs)))
            ok = [k for k in alive if self.problem.evaluation(genomes[k], records[k]).ok]  # under the floor: not
            promoted = [] if last else self._promote(ok, genomes, records)
            for k in alive:
                if k not in promoted:
                    if not (last and self.open_ended):  # the top rung may still continue it: see prune
                        self.evaluator.drop_state(str(genomes[k]))
                    # trained to the end in an earlier generation (promoted then): that record is the better one
                    records[k] = self.evaluator.cache.get(self.evaluator.key_of(str(genomes[k]))) or records[k]
                    if on_record:
                        on_record(records[k], False)
            alive = promoted
        return [records[r.genome.key] for r in requests]

    def progress(self) -> dict:
        """Networks of the last generation at each rung (``16/6/2``: rungs in order), and the disk the kept
        training states take."""
        megabytes = round(self.evaluator.state_bytes() / 1e6, 1)
        return {"rung_networks": "/".join(map(str, self.reached)), "states_mb": megabytes}

    def final_epochs(self) -> float:
        return float(self.evaluator.task.fidelity.epochs - self.rungs[-1]) if self.open_ended else 0.0

    def finalize(self, genomes: list[Genome], fidelity: str) -> list[dict]:
        """The top rung: on a continuable schedule the finalists continue their own training to its end (the
        final training, whose state is kept for the final report: ``state_file``; ``fidelity`` is not used),
        else they train again at ``fidelity``."""
        if not self.open_ended:
            return super().finalize(genomes, fidelity)
        from nas.evolve.worker import Job

        texts = [str(g) for g in genomes]
        with self.evaluator.reporting(texts, self.evaluator.task.fidelity.epochs, REPORT_EVERY):
            return self.evaluator.evaluate([Job(text, keep_state=True, resumable=True) for text in texts])

    def prune(self, front: list[dict]) -> None:
        """Delete the kept states of networks that left the front: they can no longer become finalists."""
        if self.open_ended:
            self.evaluator.drop_states_except({r["genome"] for r in front})

    def _promote(self, ok: list[str], genomes: dict, records: dict) -> list[str]:
        """The best ``1 / eta`` of the networks that trained, as NSGA-II's survival ranks them."""
        objectives = self.problem.objectives
        points = [self.problem.evaluation(genomes[k], records[k]).values(objectives) for k in ok]
        keep = math.ceil(len(ok) / self.eta)
        return [ok[i] for i in preference(points, objectives)[:keep]]
