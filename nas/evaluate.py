"""Genome string -> evaluation record: brief training, objectives, cache, parallel workers.

Workers receive genome strings and a small task description, and return plain dicts: nothing DEAP- or
run-specific crosses a process boundary, so the same code runs in loky processes on one machine or on
a Dask cluster. Training runs in the workers; latency is measured afterwards in this process, in a
phase of its own, so it never competes with training for the cores (see ``nas.latency``).
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import torch

from nas import data as fer
from nas import latency
from nas.build import build, count_flops, count_params
from nas.errors import GenomeError
from nas.genome import Genome, parse_genome
from nas.train import Diverged, TimeLimitExceeded, TrainConfig, train


@dataclass(frozen=True)
class Fidelity:
    """How much training one candidate gets: the budget that makes a search affordable."""

    name: str
    train_images: int | None  # stratified subset of Training (None: all 28,709)
    epochs: int
    val_images: int | None = None  # stratified subset of PublicTest (None: all 3,589)
    lr: float = 3e-3
    batch_size: int = 128
    augment: float = 0.3

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            optimizer="adamw",
            lr=self.lr,
            scheduler="onecycle",
            batch_size=self.batch_size,
            epochs=self.epochs,
            augment=self.augment,
            seed=seed,
        )

    @property
    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# Chosen by benchmarks/bench_fidelity.py (16 genomes vs a 10-epoch reference, benchmarks/README.md):
# Kendall tau 0.47 (cheap), 0.63 (default: the cheapest measured with tau >= 0.6), 0.77 (rich);
# 3000 x 3 and 2000 x 2 ranked no better than chance.
FIDELITIES = {
    "cheap": Fidelity("cheap", train_images=6000, epochs=3),
    "default": Fidelity("default", train_images=6000, epochs=4),
    "rich": Fidelity("rich", train_images=12000, epochs=4),
}


def get_fidelity(name: str) -> Fidelity:
    if name not in FIDELITIES:
        raise ValueError(f"unknown fidelity {name!r}; choose from {', '.join(FIDELITIES)}")
    return FIDELITIES[name]


@dataclass(frozen=True)
class EvalTask:
    """Everything a worker needs besides the genome; plain data, cheap to pickle."""

    data: str  # a path or synthetic:N spec, loaded (once per process) by the worker
    fidelity: Fidelity
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    time_limit: float | None = None  # seconds of training per candidate
    input_shape: tuple[int, int, int] = (1, 48, 48)
    num_classes: int = 7
    max_flops: float | None = None  # networks above this fail at once, untrained

    def over_budget(self, flops: float) -> bool:
        return bool(self.max_flops) and flops > self.max_flops


RECORD_FIELDS = (
    "key",
    "genome",
    "status",
    "error",
    "val_acc",
    "val_f1",
    "params",
    "flops",
    "latency_ms",
    "latency_ratio",
    "train_seconds",
    "epochs",
    "fidelity",
    "data",
    "seed",
)


def cache_key(genome_key: str, task: EvalTask, data_fingerprint: str) -> str:
    """Same genome, fidelity, data and seed: same result, so it is never trained twice."""
    return f"{genome_key}|{task.fidelity.name}:{hash_text(task.fidelity.key)}|{data_fingerprint}|{task.seed}"


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


class OverBudget(Exception):
    """The network costs more FLOPs than the search space allows."""


def train_candidate(genome_text: str, task: EvalTask) -> dict:
    """Train one candidate briefly and return its record; never raises.

    Anything that goes wrong (a build error, NaN loss, out of memory, the time limit) becomes a record
    with status ``failed`` or ``timeout`` and the error message, so the search goes on.
    """
    torch.set_num_threads(task.threads)
    record: dict = {"genome": genome_text, "status": "ok", "error": "", "fidelity": task.fidelity.name}
    record["seed"] = task.seed
    t0 = time.monotonic()
    try:
        genome = parse_genome(genome_text)
        record["key"] = genome.key
        dataset = fer.load(task.data, ("train", "val"))
        record["data"] = dataset.fingerprint
        train_split = dataset["train"].subset(task.fidelity.train_images, task.seed)
        val_split = dataset["val"].subset(task.fidelity.val_images, task.seed)
        torch.manual_seed(task.seed)
        model = build(genome, task.input_shape, task.num_classes)
        record["params"], record["flops"] = count_params(model), count_flops(model, task.input_shape)
        if task.over_budget(record["flops"]):
            raise OverBudget(
                f"{record['flops'] / 1e6:.3g} MFLOPs, over the run's budget of {task.max_flops / 1e6:g} MFLOPs"
            )
        deadline = t0 + task.time_limit if task.time_limit else None
        result = train(
            model, train_split, val_split, task.fidelity.train_config(task.seed), task.device, deadline=deadline
        )
        record |= {"val_acc": result.best_acc, "val_f1": result.best_f1, "epochs": result.epochs_run}
    except OverBudget as exc:
        record |= {"status": "failed", "error": f"over budget: {exc}"}
    except TimeLimitExceeded as exc:
        record |= {"status": "timeout", "error": str(exc)}
    except Diverged as exc:
        record |= {"status": "failed", "error": f"diverged: {exc}"}
    except Exception as exc:  # noqa: BLE001 - one bad candidate must never stop a search
        kind = "out of memory" if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) else type(exc).__name__
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = str(exc).splitlines()[0] if str(exc) else ""
        record |= {"status": "failed", "error": f"{kind}: {message} ({Path(where.filename).name}:{where.lineno})"}
    record["train_seconds"] = round(time.monotonic() - t0, 3)
    return record


class Cache:
    """Evaluation records by cache key, persisted as JSON lines (append-only; the last line wins).

    Every finished evaluation is appended and flushed at once, so a crash loses at most the
    evaluations still running.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.records: dict[str, dict] = {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash mid-write
                    self.records[rec["cache_key"]] = rec

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def put(self, record: dict) -> None:
        self.records[record["cache_key"]] = record
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps(record, default=_json_default) + "\n")
                f.flush()
                os.fsync(f.fileno())


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


@dataclass
class LatencyConfig:
    backend: str = "onnx"  # or "torch" (eager)
    rounds: int = 5
    runs: int = 30
    reference: str = "conv_k3_c8_s1_relu_bn | ir_k3_e1_c16_s2_r1 | ir_k3_e1_c32_s2_r1 | gap"


class Evaluator:
    """Evaluates batches of genome strings: cache, then parallel training, then a latency phase."""

    def __init__(
        self,
        task: EvalTask,
        cache: Cache | None = None,
        jobs: int = 1,
        backend: str = "loky",
        scheduler: str | None = None,
        latency_config: LatencyConfig | None = None,
    ) -> None:
        self.task, self.cache, self.jobs = task, cache or Cache(), max(1, jobs)
        self.backend, self.scheduler = backend, scheduler
        self.latency_config = latency_config or LatencyConfig()
        self.fingerprint = fer.load(task.data, ("train", "val")).fingerprint
        self._client = None
        self._flops: dict[str, int | None] = {}

    def admits(self, genome: Genome) -> bool:
        """Whether ``genome`` would be trained rather than rejected untrained as over the FLOPs budget.

        Searches ask before proposing, so that every evaluation they spend trains a network. Counted here,
        in the searching process, by the same builder and FLOP counter as the worker (about 60 ms a genome).
        """
        if not self.task.max_flops:
            return True
        if genome.key not in self._flops:
            try:
                model = build(genome, self.task.input_shape, self.task.num_classes)
                self._flops[genome.key] = count_flops(model, self.task.input_shape)
            except Exception:  # noqa: BLE001 - a network that cannot be built is no proposal either
                self._flops[genome.key] = None
        flops = self._flops[genome.key]
        return flops is not None and not self.task.over_budget(flops)

    def key_of(self, genome_text: str) -> str:
        """The cache key; a string that does not parse still gets one, and fails in its worker."""
        try:
            genome_key = parse_genome(genome_text).key
        except GenomeError:
            genome_key = "invalid-" + hash_text(genome_text)
        return cache_key(genome_key, self.task, self.fingerprint)

    def evaluate(self, genomes: Iterable[str], on_record: Callable[[dict, bool], None] | None = None) -> list[dict]:
        """Records for ``genomes``, in order; ``on_record(record, cached)`` is called as each is known.

        New genomes are trained in parallel, then every successful one without a latency (new, or
        left so by a crash) is timed in one latency phase once all training has stopped.
        """
        genomes = list(genomes)
        keys = [self.key_of(g) for g in genomes]
        by_genome = dict(zip(genomes, keys))
        new, repeats = {}, []
        for g, k in zip(genomes, keys):
            if k in self.cache:
                if on_record:
                    on_record(self.cache.get(k), True)
            elif k in new:
                repeats.append(k)
            else:
                new[k] = g
        for record in self._train_all(list(new.values())):
            record["cache_key"] = by_genome[record["genome"]]
            self.cache.put(record)
            if on_record:
                on_record(record, False)
        for k in repeats:
            if on_record:
                on_record(self.cache.get(k), True)
        pending = {k: self.cache.get(k) for k in keys}
        for record in self._measure_latency([r for r in pending.values() if _needs_latency(r)]):
            self.cache.put(record)
        return [self.cache.get(k) for k in keys]

    # ----------------------------------------------------------- training phase

    def _train_all(self, genomes: list[str]) -> Iterator[dict]:
        """Yield each record as it finishes; a worker that dies costs only its own candidate."""
        if not genomes:
            return
        if self.jobs == 1 and self.backend == "loky":
            for g in genomes:
                yield train_candidate(g, self.task)
            return
        done: set[str] = set()
        try:
            for record in self._parallel(genomes):
                done.add(record["genome"])
                yield record
        except Exception as exc:  # noqa: BLE001 - e.g. joblib's TerminatedWorkerError
            for g in genomes:
                if g in done:
                    continue
                try:
                    yield next(iter(self._parallel([g])))
                except Exception:  # noqa: BLE001
                    yield _failed(g, self.task, f"worker process died: {type(exc).__name__}")

    def _parallel(self, genomes: list[str]) -> Iterator[dict]:
        task = self.task
        call = joblib.delayed(train_candidate)
        if self.backend == "dask":
            self._connect_dask()
            with joblib.parallel_config(backend="dask"):
                yield from joblib.Parallel(n_jobs=-1, return_as="generator_unordered")(call(g, task) for g in genomes)
            return
        with joblib.parallel_config(backend=self.backend, inner_max_num_threads=task.threads):
            yield from joblib.Parallel(n_jobs=self.jobs, return_as="generator_unordered")(
                call(g, task) for g in genomes
            )

    def _connect_dask(self) -> None:
        if self._client is None:
            from distributed import Client

            self._client = Client(self.scheduler) if self.scheduler else Client(processes=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ----------------------------------------------------------- latency phase

    def _measure_latency(self, records: list[dict]) -> list[dict]:
        """Time the given candidates and the reference network together, in one phase."""
        if not records:
            return []
        cfg, shape, classes = self.latency_config, self.task.input_shape, self.task.num_classes
        models = {r["cache_key"]: build(parse_genome(r["genome"]), shape, classes) for r in records}
        models["__reference__"] = build(parse_genome(cfg.reference), shape, classes)
        ms = latency.measure(models, shape, cfg.backend, cfg.rounds, cfg.runs)
        ref = ms.pop("__reference__")
        return [r | {"latency_ms": ms[r["cache_key"]], "latency_ratio": ms[r["cache_key"]] / ref} for r in records]


def _needs_latency(record: dict) -> bool:
    return record["status"] == "ok" and record.get("latency_ms") is None


def _failed(genome_text: str, task: EvalTask, error: str) -> dict:
    try:
        key = parse_genome(genome_text).key
    except Exception:  # noqa: BLE001
        key = ""
    return {
        "genome": genome_text,
        "key": key,
        "status": "failed",
        "error": error,
        "fidelity": task.fidelity.name,
        "seed": task.seed,
        "train_seconds": 0.0,
    }


def genome_of(record: dict) -> Genome:
    return parse_genome(record["genome"])
