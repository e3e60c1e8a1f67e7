"""Command-line callbacks: a progress bar per generation (evaluations, cache hits, best accuracy, front) and
the SIGTERM handler that stops a search like Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path

from nas.evolve.runner import Callback, State


class ProgressBar(Callback):
    """tqdm on stderr; ``run_dir`` remembers where the search writes (for the message after Ctrl-C)."""

    def __init__(self, show: bool = True) -> None:
        self.bar, self.best, self.hits, self.last, self.generations = None, 0.0, 0, {}, 0
        self.run_dir: Path | None = None
        self.show = show

    def start_run(self, run_dir: Path | None, generations: int, state: State) -> None:
        self.run_dir, self.generations = run_dir, generations
        self.last = state.progress[-1] if state.progress else {}

    def start_generation(self, generation: int, n: int) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(
            total=n, desc=f"gen {generation}/{self.generations}", unit="net", file=sys.stderr, disable=not self.show
        )
        self.hits = 0

    def on_record(self, record: dict, cached: bool) -> None:
        self.hits += cached
        if record.get("status") == "ok":
            self.best = max(self.best, record.get("val_acc") or 0.0)
        self._postfix(self.best)
        if self.bar:
            self.bar.update(1)

    def end_generation(self, state: State) -> None:
        self.last = state.progress[-1]
        self._postfix(self.last["best_acc"])
        self.close()  # the generation's summary is logged next, on a line of its own

    def _postfix(self, best: float) -> None:
        if self.bar:
            self.bar.set_postfix(
                hits=self.hits,
                best=f"{best:.3f}",
                front=self.last.get("front_size", "-"),
                hv=f"{self.last.get('hypervolume', 0):.3f}",
            )

    def close(self) -> None:
        if self.bar:
            self.bar.close()
            self.bar = None


class EpochBar:
    """One bar over a long training's epochs, with its ETA and the validation figures so far; an
    ``on_epoch`` callback for ``nas.training.final.train_final``."""

    def __init__(self, epochs: int, show: bool = True) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr, disable=not show)
        self.best = 0.0

    def __call__(self, epoch: int, row: dict) -> None:
        self.best = max(self.best, row["val_acc"] or 0.0)
        # a resumed training starts at its checkpoint's epoch; the bar follows
        self.bar.update(epoch + 1 - self.bar.n)
        self.bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", best=f"{self.best:.4f}", loss=f"{row['train_loss']:.3f}")

    def close(self) -> None:
        self.bar.close()


class StopOnSignal(Callback):
    """A SIGTERM handler that stops the search like Ctrl-C (batch schedulers stop jobs with SIGTERM).

    The handler raises KeyboardInterrupt at once. Python only prints an exception raised while a finalizer
    runs, so the request is also kept and raised again at the next record or generation.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def _check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def start_generation(self, generation: int, n: int) -> None:
        self._check()

    def on_record(self, record: dict, cached: bool) -> None:
        self._check()

    def end_generation(self, state: State) -> None:
        self._check()
