"""Optuna's NSGA-II on the same genome space: the tool users already have, as a baseline to beat.

A genome is encoded define-by-run (``nas.space.draw`` with ``trial.suggest_categorical``): block count,
then each block's kind and fields, names fixed by position and kind. Optuna's ``NSGAIISampler`` proposes,
our evaluator trains (same fidelity, cache, workers, latency phase), and the objective values go back
with ``study.tell``. The study lives in ``<run>/search.db``; a trial asked but not told when a run
stopped is evaluated first on resume (from the cache if it had finished), so no training is lost.
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
        self.asked: list[int] = []

    def _initial(self) -> list[Genome]:
        return self._ask()

    def _propose(self, pop: list, rows: list[dict]) -> list[Genome]:
        return self._ask()

    def _survivors(self, pop: list, offspring: list) -> list:
        return offspring  # the population lives in the study; the sampler picks its parents there

    def _ask(self) -> list[Genome]:
        left = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        asked = [(t.number, parse_genome(t.user_attrs["genome"])) for t in left[: self.cfg.population]]
        while len(asked) < self.cfg.population:
            trial = self.study.ask()
            genome = draw(self.space, trial.suggest_categorical)
            trial.set_user_attr("genome", str(genome))
            asked.append((trial.number, genome))
        self.asked = [number for number, _ in asked]
        return [genome for _, genome in asked]

    def _evaluate(self, genomes: list[Genome], generation: int, rows: list[dict]) -> list:
        inds = super()._evaluate(genomes, generation, rows)
        for number, ind in zip(self.asked, inds):
            if ind.record["status"] == "ok":
                self.study.tell(number, list(ind.fitness.values))
            else:  # over budget, diverged, timed out: Optuna's sampler skips failed trials
                self.study.tell(number, state=TrialState.FAIL)
        return inds
