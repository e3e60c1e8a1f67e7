"""Optuna's NSGA-II on the same genome space: the tool users already have, as a baseline to beat.

A genome is encoded define-by-run (``nas.space.draw`` with ``trial.suggest_categorical``): block count,
then each block's kind and fields, names fixed by position and kind. Optuna's ``NSGAIISampler`` proposes,
our evaluator trains (same fidelity, cache, workers, latency phase), and the objective values go back
with ``study.tell``. A network over the FLOPs budget is told as a complete trial with the worst values
and its excess MFLOPs as a constraint (``Trial.set_constraint``), so the sampler ranks it below every
network within budget, nearer misses first (the DEAP search gives it the worst fitness); told as failed,
it would be invisible to the sampler, and generation 0 would go on sampling at random. The study lives
in ``<run>/search.db``; a trial asked but not told when a run stopped is evaluated first on resume (from
the cache if it had finished), so no training is lost.
Unlike the DEAP search, a resumed run does not repeat the uninterrupted one's decisions exactly: the
sampler's random state is not part of the study.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from nas.evolve import Search
from nas.genome import Genome, parse_genome
from nas.space import draw

STUDY_FILE = "search.db"


class OptunaSearch(Search):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            study_name="search",
            storage=f"sqlite:///{Path(self.run_dir) / STUDY_FILE}",
            directions=["maximize" if o.maximize else "minimize" for o in self.objectives],
            sampler=optuna.samplers.NSGAIISampler(
                population_size=self.cfg.population, crossover_prob=self.cfg.cx_prob, seed=self.cfg.seed
            ),
            load_if_exists=True,
        )
        self.asked: list[optuna.Trial] = []

    def _initial(self) -> list[Genome]:
        return self._ask()

    def _propose(self, pop: list, rows: list[dict]) -> list[Genome]:
        return self._ask()

    def _survivors(self, pop: list, offspring: list) -> list:
        return offspring  # the population lives in the study; the sampler picks its parents there

    def _ask(self) -> list[Genome]:
        left = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        # a Trial, not a FrozenTrial, takes a constraint; Optuna offers no public way from one to the other
        self.asked = [optuna.Trial(self.study, t._trial_id) for t in left[: self.cfg.population]]
        while len(self.asked) < self.cfg.population:
            trial = self.study.ask()
            trial.set_user_attr("genome", str(draw(self.space, trial.suggest_categorical)))
            self.asked.append(trial)
        return [parse_genome(t.user_attrs["genome"]) for t in self.asked]

    def _evaluate(self, genomes: list[Genome], generation: int, rows: list[dict]) -> list:
        inds = super()._evaluate(genomes, generation, rows)
        budget = self.space.max_mflops
        for trial, ind in zip(self.asked, inds):
            excess = (ind.record.get("flops") or 0.0) / 1e6 - budget if budget else None
            if ind.record["status"] == "ok" or (excess is not None and excess > 0):
                if excess is not None:
                    trial.set_constraint("excess_mflops", excess)
                self.study.tell(trial, list(ind.fitness.values))
            else:  # diverged, timed out: Optuna's sampler skips failed trials
                self.study.tell(trial, state=TrialState.FAIL)
        return inds
