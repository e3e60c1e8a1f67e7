"""Optuna's NSGA-II on the same genome space: the tool users already have, as a baseline to beat.

A genome is encoded define-by-run (``nas.genome.space.draw`` with ``trial.suggest_categorical``): block count,
then each block's kind and fields, names fixed by position and kind. Optuna's ``NSGAIISampler`` proposes,
the runner evaluates, and the objective values go back with ``study.tell``. The sampler cannot be asked to
draw again, so a network over the problem's caps is told as a complete trial with the worst values and its
relative excess over each cap as a constraint (``Trial.set_constraint``): ranked below every network
within the caps, nearer misses first (a network under the accuracy floor likewise). Told as failed, it
would be invisible to the sampler. The study lives in ``<run>/search.db``; the seed networks are its first
trials (enqueued with their choices). A trial asked but not told when a run stopped is asked again first on
resume (its evaluation comes from the cache if it had finished), so no training is lost. Unlike the DEAP
searches, a resumed run does not repeat the uninterrupted one's decisions exactly: the sampler's random state is not
part of the study.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.evolve.algorithms import Algorithm, Proposal
from nas.evolve.algorithms.variation import seeded
from nas.evolve.problem import Evaluation
from nas.genome.grammar import Genome, parse_genome
from nas.genome.space import choices, draw
from nas.rundir import SEARCH_STUDY, no_link
from nas.settings import setting


@dataclass(frozen=True)
class Options:
    cx_prob: float = setting(0.5, "NSGAIISampler's crossover probability")


class OptunaSampler(Algorithm):
    name = "optuna"
    Options = Options

    def __init__(self, *args, **kwargs) -> None:
        import optuna  # here: the command line reads this module's options without importing Optuna

        super().__init__(*args, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{no_link(self.workdir / SEARCH_STUDY)}" if self.workdir else None  # sqlite follows links
        self.study = optuna.create_study(
            study_name="search",
            storage=storage,
            directions=["maximize" if o.maximize else "minimize" for o in self.problem.objectives],
            sampler=optuna.samplers.NSGAIISampler(
                population_size=self.population_size, crossover_prob=self.options.cx_prob, seed=self.seed
            ),
            load_if_exists=True,
        )
        if not self.study.get_trials(deepcopy=False):  # a new study: the seeds are its first trials
            for proposal in seeded(self.problem, self.seeds):
                self.study.enqueue_trial(choices(proposal.genome, self.problem.space), {"origin": proposal.origin})
        self.asked: list[optuna.Trial] = []

    def ask(self, n: int) -> list[Proposal | Genome]:
        import optuna
        from optuna.trial import TrialState

        left = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        # a Trial, not a FrozenTrial, takes a constraint; Optuna offers no public way from one to the other
        self.asked = [optuna.Trial(self.study, t._trial_id) for t in left[:n]]
        while len(self.asked) < n:
            trial = self.study.ask()
            trial.set_user_attr("genome", str(draw(self.problem.space, trial.suggest_categorical)))
            self.asked.append(trial)
        return [
            Proposal(parse_genome(t.user_attrs["genome"]), origin=t.user_attrs.get("origin", "")) for t in self.asked
        ]

    def tell(self, evaluations: list[Evaluation]) -> None:
        from optuna.trial import TrialState

        for trial, ev in zip(self.asked, evaluations):
            if ev.ok or not ev.feasible:
                for name, excess in self.problem.excess(ev.record).items():
                    trial.set_constraint(f"excess_{name}", excess)
                if self.problem.floor is not None:
                    trial.set_constraint("under_floor", self.problem.shortfall(ev.record))
                self.study.tell(trial, list(ev.values(self.problem.objectives)))
            else:  # diverged, timed out: Optuna's sampler skips failed trials
                self.study.tell(trial, state=TrialState.FAIL)
        self._last = evaluations
