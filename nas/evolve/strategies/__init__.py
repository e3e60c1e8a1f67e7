"""Evaluation strategies: how the runner's requests become evaluation records.

The runner sends one ``Request`` per admitted proposal (the genome, its parents, its costs known before
training) and gets one record back per request, in order. A strategy decides what training each network
gets, using the evaluator's jobs (``nas.evolve.worker.Job``): train from scratch at one fidelity (``scratch``),
or several rounds over the batch that continue the promising networks from their kept training states.
Adding a strategy is one module here plus a line in ``STRATEGIES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nas.errors import SettingError
from nas.genome.grammar import Genome
from nas.settings import registered, typed

if TYPE_CHECKING:
    from nas.evolve.evaluate import Evaluator
    from nas.evolve.problem import Problem

OnRecord = Callable[[dict, bool], None]


@dataclass(frozen=True)
class Request:
    """One network to evaluate: the genome, the genomes it was bred from, and what is known before training."""

    genome: Genome
    parents: tuple[Genome, ...] = ()
    costs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NoOptions:
    """A strategy without settings of its own."""


class Strategy(ABC):
    """Turns a batch of requests into records (see the module docstring). ``Options``: its own settings,
    declared with ``nas.settings.setting`` (the ``evolve`` flags derive from them)."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, evaluator: Evaluator, problem: Problem, **options: Any) -> None:
        unknown = sorted(set(options) - {f.name for f in fields(self.Options)})
        if unknown:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
            raise SettingError(f"{flags}: not an option of evaluation strategy {self.name!r} (--strategy)")
        self.settings = typed(self.Options, options, f"evaluation strategy {self.name!r}")
        self.evaluator, self.problem = evaluator, problem

    @abstractmethod
    def evaluate(self, requests: list[Request], on_record: OnRecord | None = None) -> list[dict]:
        """One record per request, in order; ``on_record(record, cached)`` as each final record is known."""

    def options(self) -> dict[str, Any]:
        """The options it runs with, defaults filled in, as a run's config stores them: a run resumed after
        a default changed keeps its own."""
        return asdict(self.settings)

    def epochs_per_network(self) -> float:
        """Epochs of the fidelity's schedule a new network trains, on average (for the up-front estimate)."""
        return float(self.evaluator.task.fidelity.epochs)

    def final_epochs(self) -> float:
        """Epochs each finalist still trains at the top rung (0: the finalists train at their own fidelity)."""
        return 0.0

    def finalize(self, genomes: list[Genome], fidelity: str) -> list[dict]:
        """Records of a longer training at the fidelity ``fidelity`` (a preset or spelled-out budget: the
        finalists of a search), with the search's loss and validation mode."""
        from nas.evolve.fidelity import get_fidelity

        own = self.evaluator.task.fidelity
        richer = replace(get_fidelity(fidelity), class_balance=own.class_balance, validate_bf16=own.validate_bf16)
        return self.evaluator.with_fidelity(richer).evaluate([str(g) for g in genomes])

    def progress(self) -> dict[str, Any]:
        """Columns of its own for the run's progress table, after each generation."""
        return {}

    def state_file(self, genome: Genome) -> Path | None:
        """The kept training state of a network (a finalist's full training), if there is one."""
        return self.evaluator.state_file(str(genome))

    def prune(self, front: list[dict]) -> None:  # noqa: B027 - a hook: most strategies keep nothing
        """Called after each generation with the front: forget what no later training can continue."""

    def measure(self, records: list[dict]) -> list[dict]:
        """The records with their networks' latency measured end to end (for the front, the user)."""
        return self.evaluator.measure_latency(records)

    def reject(self, genome: Genome, reason: str, costs: dict | None) -> dict:
        """The record of a network the problem does not admit: failed, untrained."""
        return self.evaluator.reject(str(genome), reason, costs)

    def close(self) -> None:
        self.evaluator.close()


STRATEGIES = {"scratch": "nas.evolve.strategies.scratch:Scratch", "halving": "nas.evolve.strategies.halving:Halving"}
# halving over the default 4-epoch schedule, rungs 3,4: the cheapest evaluation that ranked 24 networks like
# a 30-epoch training as well as training all 4 epochs did (benchmarks/results/fidelity_cpu.md)
DEFAULT_STRATEGY = "halving"


def strategy_class(name: str) -> type[Strategy]:
    return registered(STRATEGIES, name, "--strategy", "evaluation strategy")


def make_strategy(name: str, evaluator: Evaluator, problem: Problem, **options: Any) -> Strategy:
    return strategy_class(name)(evaluator, problem, **options)
