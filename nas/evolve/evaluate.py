"""Training jobs -> evaluation records: cache, parallel workers, kept training states, the latency phase.

The evaluator is what evaluation strategies (``nas.evolve.strategies``) run their jobs on. A job is a genome
string, optionally with a budget (train to epoch ``until`` of the fidelity's schedule) and a request to
keep the training state, so that a later job continues it instead of training again: the one primitive
successive halving, finalist stages and confirmation runs are built from. Workers receive plain data and
return plain dicts (a kept state travels back as bytes and is stored by this process, so joblib and Dask
workers alike reach it, with or without a shared disk); nothing algorithm- or run-specific crosses a
process boundary. Training runs in the workers; latency is measured afterwards in this process, in a
phase of its own, so it never competes with training for the cores (see ``nas.deploy.latency``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import torch

from nas import data as fer
from nas.deploy import latency
from nas.errors import GenomeError, NasError, SettingError, first_line
from nas.evolve.fidelity import Fidelity
from nas.evolve.states import KeptStates
from nas.evolve.worker import EvalTask, Job, _failed, _train_job, cache_key, hash_text
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.rundir import Cache
from nas.training.loop import TrainConfig, read_state, resolve_device, train

if TYPE_CHECKING:
    from nas.evolve.problem import Problem

log = logging.getLogger(__name__)


@dataclass
class LatencyConfig:
    backend: str = "onnx"  # or "torch" (eager)
    rounds: int = 5
    runs: int = 30
    reference: str = "conv_k3_c8_s1_relu_bn | ir_k3_e1_c16_s2_r1 | ir_k3_e1_c32_s2_r1 | gap"


class Evaluator:
    """Runs batches of jobs: cache, then parallel training, then a latency phase.

    ``state_dir`` is where kept training states live (a run's ``states/``); without one they are kept in
    memory for as long as the evaluator lives.
    """

    def __init__(
        self,
        task: EvalTask,
        cache: Cache | None = None,
        jobs: int = 1,
        backend: str = "loky",
        scheduler: str | None = None,
        latency_config: LatencyConfig | None = None,
        state_dir: Path | None = None,
        latency_table: latency.LatencyTable | None = None,
    ) -> None:
        self.task, self.cache, self.jobs = task, cache or Cache(), max(1, jobs)
        self.backend, self.scheduler = backend, scheduler
        self.latency_config = latency_config or LatencyConfig()
        self._data = fer.load(task.data, ("train", "val"))  # kept: Dask workers get it from here
        self.fingerprint = self._data.fingerprint
        self.state_dir = Path(state_dir) if state_dir else None
        self.states = KeptStates(self.state_dir)
        self.latency_table = latency_table
        self._client = None

    @property
    def data(self) -> fer.FerData:
        """The training and validation splits the candidates train and are validated on (subsets of them)."""
        return self._data

    def with_fidelity(self, fidelity: Fidelity) -> Evaluator:
        """The same evaluator (cache, workers, latency) training at another fidelity."""
        other = Evaluator(replace(self.task, fidelity=fidelity), self.cache, self.jobs, self.backend, self.scheduler,
                          self.latency_config, self.state_dir, self.latency_table)  # fmt: skip
        other._client = self._client
        return other

    def key_of(self, genome_text: str, until: int | None = None) -> str:
        """The cache key; a string that does not parse still gets one, and fails in its worker."""
        try:
            genome_key = parse_genome(genome_text).key
        except GenomeError:
            genome_key = "invalid-" + hash_text(genome_text)
        return cache_key(genome_key, self.task, self.fingerprint, until)

    def evaluate(self, jobs: Iterable[str | Job], on_record: Callable[[dict, bool], None] | None = None) -> list[dict]:
        """Records for ``jobs`` (genome strings train the full schedule), in order; ``on_record(record,
        cached)`` is called as each is known.

        New jobs are trained in parallel; then every successful one without a latency (new, or left so by a
        crash) gets its latency objective: predicted by the latency table, or, without one, timed in one
        latency phase once all training has stopped.
        """
        jobs = [j if isinstance(j, Job) else Job(j) for j in jobs]
        keys = [self.key_of(j.genome, j.until) for j in jobs]
        new, repeats = {}, []
        for job, k in zip(jobs, keys):
            if k in self.cache:
                if on_record:
                    on_record(self.cache.get(k), True)
            elif k in new:
                repeats.append(k)
            else:
                new[k] = job
        for record in self._train_all(new):
            if record.get("worker_error"):
                raise NasError(f"a training worker cannot read the data: {record['error']} (nothing of it was cached)")
            if "state" in record:
                self.states.store(self._state_base(record["genome"]), record["epochs"], record.pop("state"))
            elif self._live(new[record["cache_key"]]):  # a failure is cached: its live checkpoint never continues
                self.states.discard_live(self._state_base(record["genome"]))
            self.cache.put(record)
            if on_record:
                on_record(record, False)
        for k in repeats:
            if on_record:
                on_record(self.cache.get(k), True)
        pending = [self.cache.get(k) for k in dict.fromkeys(keys)]
        self._measure_latency([r for r in pending if _needs_latency(r)])
        return [self.cache.get(k) for k in keys]

    def reject(self, genome_text: str, error: str, costs: dict | None = None) -> dict:
        """Record a network that is not trained (over a cap), as a failed evaluation; cached like one."""
        key = self.key_of(genome_text)
        if key not in self.cache:
            record = _failed(genome_text, self.task, error) | {"data": self.fingerprint, **(costs or {})}
            self.cache.put(record | {"cache_key": key})
        return self.cache.get(key)

    # ----------------------------------------------------------- kept training states

    def _state_base(self, genome_text: str) -> str:
        return hash_text(self.key_of(genome_text))

    def _state_for(self, job: Job) -> bytes | None:
        until = job.until if job.until is not None else self.task.fidelity.epochs
        return self.states.load(self._state_base(job.genome), until)

    def _live(self, job: Job) -> str | None:
        """Where a resumable job checkpoints every epoch (on this machine's disk: not for Dask workers)."""
        if not job.resumable or self.states.folder is None or self.backend != "loky":
            return None
        return str(self.states.live(self._state_base(job.genome)))

    def drop_state(self, genome_text: str) -> None:
        """Forget a network's kept training state (when no later job will continue it)."""
        self.states.drop(self._state_base(genome_text))

    def state_file(self, genome_text: str) -> Path | None:
        """The file of a network's most trained kept state, if it is kept on disk."""
        return self.states.file(self._state_base(genome_text))

    def live_epochs(self, genome_text: str) -> tuple[int, float] | None:
        """How far a long training under way has come: (epochs, seconds) of its last epoch checkpoint, if any
        (None also while a worker replaces the file)."""
        if self.states.folder is None:
            return None
        path = self.states.live(self._state_base(genome_text))
        try:
            result = read_state(path)["result"] if path.exists() else None
        except NasError:
            return None
        return (result.epochs_run, result.seconds) if result is not None else None

    @contextmanager
    def reporting(self, genome_texts: list[str], epochs: int, every: float = 600.0) -> Iterator[None]:
        """While the block runs, log every ``every`` seconds how far each long training of ``genome_texts``
        has come (the finalists' top rung takes hours, and its workers' own lines stay in their processes)."""
        stop, keys = threading.Event(), {text: parse_genome(text).key for text in genome_texts}

        def report() -> None:
            while not stop.wait(every):
                for text, key in keys.items():
                    done = self.live_epochs(text)
                    if done and done[0]:
                        n, seconds = done
                        left = (epochs - n) * seconds / n / 3600
                        log.info(f"top rung: {key} at epoch {n}/{epochs}, "
                                 f"{seconds / n:.0f} s an epoch, ~{left:.1f} h to go")  # fmt: skip

        thread = threading.Thread(target=report, name="top-rung-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def drop_states_except(self, genome_texts: set[str]) -> None:
        """Forget every kept training state but those of ``genome_texts``."""
        self.states.keep_only({self._state_base(g) for g in genome_texts})

    def state_bytes(self) -> int:
        return self.states.nbytes()

    # ----------------------------------------------------------- training phase

    def _train_all(self, jobs: dict[str, Job]) -> Iterator[dict]:
        """Yield each record as it finishes; a worker that dies costs only its own candidate."""
        if not jobs:
            return
        calls = {k: (k, job, self.task, self._state_for(job), None, self._live(job)) for k, job in jobs.items()}
        if self.jobs == 1 and self.backend == "loky":
            for args in calls.values():
                yield _train_job(*args)
            return
        if self.backend == "dask":
            self._connect_dask()  # a scheduler out of reach is this search's problem, not the candidates' failure
        done: set[str] = set()
        try:
            for record in self._parallel(list(calls.values())):
                done.add(record["cache_key"])
                yield record
        except Exception as exc:  # noqa: BLE001 - e.g. joblib's TerminatedWorkerError
            for k, args in calls.items():
                if k in done:
                    continue
                try:
                    yield next(iter(self._parallel([args])))
                except Exception:  # noqa: BLE001
                    failed = _failed(args[1].genome, self.task, f"worker process died: {type(exc).__name__}")
                    yield failed | {"cache_key": k}

    def _parallel(self, calls: list[tuple]) -> Iterator[dict]:
        call = joblib.delayed(_train_job)
        if self.backend == "dask":
            # the data goes from here to every worker, once (no shared disk needed); each training takes
            # its worker's cores divided by the worker's task slots (threads=0: decided on the worker)
            self._connect_dask()
            task = replace(self.task, threads=0)
            with joblib.parallel_config(backend="dask", scatter=[self._data]):
                jobs = (call(k, job, task, state, self._data) for k, job, _, state, _, _ in calls)
                yield from joblib.Parallel(n_jobs=-1, return_as="generator_unordered")(jobs)
            return
        with joblib.parallel_config(backend=self.backend, inner_max_num_threads=self.task.threads):
            yield from joblib.Parallel(n_jobs=self.jobs, return_as="generator_unordered")(call(*a) for a in calls)

    def _connect_dask(self) -> None:
        if self._client is None:
            from distributed import Client

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler)
                except (OSError, TimeoutError) as exc:
                    raise SettingError(
                        f"--scheduler {self.scheduler}: no Dask scheduler answers ({first_line(exc)})"
                    ) from None
            else:  # a local cluster answers on loopback only, its dashboard too
                self._client = Client(processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:8787")
                log.info(f"Dask dashboard: {self._client.dashboard_link}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ----------------------------------------------------------- latency phase

    def _measure_latency(self, records: list[dict]) -> list[dict]:
        """The latency objective of new records: the latency table's prediction (a lookup, no timing), or,
        without a table, the measured figure (``measure_latency``)."""
        if self.latency_table is None:
            return self.measure_latency(records)
        shape, classes = self.task.input_shape, self.task.num_classes
        out = []
        for r in records:
            out.append(r | {"latency_ms": self.latency_table.predict(parse_genome(r["genome"]), shape, classes)})
            self.cache.put(out[-1])
        return out

    def measure_latency(self, records: list[dict]) -> list[dict]:
        """Time the networks of ``records`` end to end, with a reference network, in one phase (called once
        all training has stopped); the records come back with ``measured_latency_ms``, ``latency_ratio``
        and, without a latency table, ``latency_ms``, and are cached so. A network timed before (another
        budget of the same network) keeps its figures: timing it again would only add noise.
        """
        figures = ("measured_latency_ms", "latency_ratio") + (() if self.latency_table else ("latency_ms",))
        known = {r["key"]: r for r in self.cache.records.values() if r.get("measured_latency_ms") is not None}
        timed = [r | {f: known[r["key"]].get(f) for f in figures} for r in records if r["key"] in known]
        records = [r for r in records if r["key"] not in known]
        if records:
            cfg, shape, classes = self.latency_config, self.task.input_shape, self.task.num_classes
            models = {r["cache_key"]: build(parse_genome(r["genome"]), shape, classes) for r in records}
            models["__reference__"] = build(parse_genome(cfg.reference), shape, classes)
            ms = latency.measure(models, shape, cfg.backend, cfg.rounds, cfg.runs)
            ref = ms.pop("__reference__")
            for r in records:
                figures_of = {"measured_latency_ms": ms[r["cache_key"]], "latency_ratio": ms[r["cache_key"]] / ref}
                timed.append(r | figures_of | ({} if self.latency_table else {"latency_ms": ms[r["cache_key"]]}))
        for r in timed:
            self.cache.put(r)
        return timed


def _needs_latency(record: dict) -> bool:
    return record["status"] == "ok" and record.get("latency_ms") is None


def finalist_slowdown(problem: Problem, samples: int = 64, seed: int = 0) -> tuple[float, str]:
    """How much costlier an epoch of a finalist is than one of the average network the search trains,
    and why. Training cost grows about in proportion to a network's predicted latency (FLOPs without a
    latency budget); the finalists, the most accurate networks, sit at the budget, while the networks a
    search trains average what the space's admitted samples average (the 30-generation default search of
    2026-12-06: 0.36 ms over its 248 networks, 0.37 ms over 300 admitted samples; docs/design.md). Without
    a latency or FLOPs budget there is nothing to scale by."""
    import random

    from nas.evolve.problem import CAP_UNITS
    from nas.genome.space import sample

    name = next((n for n in ("latency_ms", "flops") if n in problem.caps), None)
    if name is None:
        return 1.0, ""
    rng, values = random.Random(seed), []
    for _ in range(samples * 20):
        genome = sample(problem.space, rng)
        costs = problem.costs(genome) if problem.admits(genome) else None  # a capped latency is predicted
        if costs and costs.get(name):
            values.append(costs[name])
            if len(values) == samples:
                break
    if not values:
        return 1.0, ""
    mean = sum(values) / len(values)
    ratio = problem.caps[name] / mean
    scale, unit = CAP_UNITS[name][:2]
    average = f"{mean / scale:.3g} {unit} of the space's average network"
    return ratio, f" (finalists sit at the budget, {ratio:.1f}x the {average})"


def estimate(
    task: EvalTask,
    evaluations: int,
    jobs: int,
    epochs: float | None = None,
    finalists: int = 0,
    final_epochs: float = 0.0,
    problem: Problem | None = None,
) -> str:
    """Up-front cost: a probe network's measured training speed times the number of evaluations, each
    training ``epochs`` of the schedule on average (successive halving stops most networks early), plus the
    top rung, if the search has one: ``finalists`` continuing ``final_epochs`` each, ``jobs`` at a time,
    each epoch as much costlier than the average network's as ``problem``'s budget says (``finalist_slowdown``)."""
    from nas.genome.space import load_baselines

    probe = load_baselines()["mini_xception"]
    dataset = fer.load(task.data, ("train", "val"))
    split = dataset["train"].subset(512, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        t0 = time.perf_counter()
        train(build(probe.genome), split, split.subset(64, 0), TrainConfig(epochs=1, batch_size=128), task.device)
        ips = 576 / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    n_train = min(task.fidelity.train_images or len(dataset["train"]), len(dataset["train"]))
    n_val = min(task.fidelity.val_images or len(dataset["val"]), len(dataset["val"]))
    epochs = task.fidelity.epochs if epochs is None else epochs
    per = (n_train * epochs) / ips + n_val / (3 * ips)  # inference ~3x faster than training
    total = evaluations * per / jobs
    text = (
        f"estimate: {evaluations} evaluations x ~{per:.0f} s / {jobs} worker(s) ~ {total / 3600:.1f} h "
        f"(probe {probe.name} trains at {ips:.0f} images/s on {task.threads} thread(s), {resolve_device(task.device)};"
        f" repeats come from the cache, so usually less)"
    )
    if finalists and final_epochs:
        slowdown, why = finalist_slowdown(problem) if problem is not None else (1.0, "")
        final = math.ceil(finalists / jobs) * n_train * final_epochs / ips * slowdown
        text += f"; then {finalists} finalist(s) finish their training, {final_epochs:g} epochs each"
        text += f" ~ {final / 3600:.1f} h{why}; ~ {(total + final) / 3600:.1f} h in all"
    return text
