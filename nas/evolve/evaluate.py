"""Training jobs -> evaluation records: brief training, cache, parallel workers, the latency phase.

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

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import joblib
import torch

from nas import data as fer
from nas.deploy import latency
from nas.errors import DataError, GenomeError, NasError, SettingError
from nas.genome.build import build, count_flops, count_params
from nas.genome.grammar import Genome, parse_genome
from nas.rundir import Cache, atomic_write
from nas.training.loop import Diverged, TimeLimitExceeded, TrainConfig, resolve_device, stable_copy, train

log = logging.getLogger(__name__)


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
    # validation on PublicTest after every epoch (about a quarter of a brief training's time), or only
    # where a decision needs it: at the end of the schedule, or of a successive-halving rung
    validate_every_epoch: bool = False
    class_balance: str = "none"  # the loss's answer to the class imbalance (nas.training.loop.CLASS_BALANCE)
    # a proxy network: every block's channel count times ``width`` (EcoNAS's reduced-channel proxy); the
    # objectives (parameters, FLOPs, latency) are always the real network's, only its training is cheaper
    width: float = 1.0
    # validate a network that trains in bf16 in bf16 too (TrainConfig.validate_bf16); runs configured
    # before 2026-11-25 validated in fp32 and keep doing so, so their cached records stay comparable
    validate_bf16: bool = True
    # the schedule: one-cycle, complete in ``epochs``; or wsd, whose constant phase can be cut into rungs
    # and continued, each rung scored after a cool-down branch of ``branch`` epochs (nas.training.loop)
    scheduler: str = "onecycle"
    branch: float = 0.0

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            optimizer="adamw",
            lr=self.lr,
            scheduler=self.scheduler,
            batch_size=self.batch_size,
            epochs=self.epochs,
            augment=self.augment,
            validate_every_epoch=self.validate_every_epoch,
            validate_bf16=self.validate_bf16,
            class_balance=self.class_balance,
            seed=seed,
        )

    @property
    def key(self) -> str:
        """What the cache key hashes; the settings as every fidelity had them before each choice existed
        (every epoch validated, the plain loss, full width, fp32 validation) hash as they did then, so
        older runs' caches stay valid."""
        fields = asdict(self)
        if fields["validate_every_epoch"]:
            del fields["validate_every_epoch"]
        if fields["class_balance"] == "none":
            del fields["class_balance"]
        if fields["width"] == 1.0:
            del fields["width"]
        if not fields["validate_bf16"]:
            del fields["validate_bf16"]
        if fields["scheduler"] == "onecycle" and not fields["branch"]:
            del fields["scheduler"], fields["branch"]
        return json.dumps(fields, sort_keys=True)

    def trained_genome(self, genome: Genome) -> Genome:
        """The network this fidelity trains for ``genome``: itself, or its proxy of ``width`` times the
        channels (rounded, at least 4 a block; dense layers keep their units, they cost little). Where the
        floor makes two different widths equal (width 0.25: 8 and 16 channels both become 4), the proxy
        gains identity shortcuts the real network lacks; at 0.5 the default space's widths stay apart."""
        if self.width == 1.0:
            return genome
        narrow = [
            replace(g, channels=max(4, int(g.channels * self.width + 0.5))) if hasattr(g, "channels") else g
            for g in genome.genes
        ]
        return Genome(tuple(narrow))


# Chosen by benchmarks/bench_fidelity.py against a long training (30 epochs on all of Training) of 24
# networks within the 60-MFLOP budget (benchmarks/results/fidelity_cpu.md, 2026-11-25): 6,000 images x 4
# epochs ranks them with Kendall tau 0.48; every cheaper schedule measured ranks them worse (6,000 x 2,
# the default of 2026-11-24/25, 0.33; 3,000 x 2 at batch 32 0.33), and only successive halving on this
# schedule with rungs 3,4 (nas.evolve.strategies, the default strategy) keeps its tau (0.49) for less training.
FIDELITIES = {
    "cheap": Fidelity("cheap", train_images=3000, epochs=2),  # smoke runs: ranks poorly
    "default": Fidelity("default", train_images=6000, epochs=4),
    "long": Fidelity("long", train_images=6000, epochs=4),  # the same schedule, by its old name
    "rich": Fidelity("rich", train_images=12000, epochs=4),  # the finalists'
    # the final training itself (all of Training, the default recipe's optimizer, learning rate, batch and
    # augmentation, 100 epochs of warmup-stable-decay), to be cut into rungs that each score a quarter-epoch
    # cool-down branch and continue (issue #33; benchmarks/bench_fidelity.py measures its rank fidelity)
    "full": Fidelity("full", train_images=None, epochs=100, augment=0.5, scheduler="wsd", branch=0.25),
}


_NUMBER = r"(\d*\.?\d+(?:e-?\d+)?)"
_SPEC = re.compile(rf"(\d+|all)x(\d+)(?:b(\d+))?(?:w{_NUMBER})?(?:lr{_NUMBER})?(wsd(?:c{_NUMBER})?)?")


def get_fidelity(name: str) -> Fidelity:
    """A preset by name, or a spelled-out budget ``IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR][wsd[cBRANCH]]``
    (``3000x2b32``, ``6000x2w0.5``, ``allx100wsdc0.25``): Training images (``all``), epochs of a complete
    one-cycle schedule, batch size, the proxy's channel width, peak learning rate, and ``wsd``: a
    warmup-stable-decay schedule instead, its rungs scored by cool-down branches of ``BRANCH`` epochs
    (default 0.25); what the presets leave out is theirs."""
    if name in FIDELITIES:
        return FIDELITIES[name]
    spec = name.lower()
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise SettingError(
            f"--fidelity: unknown fidelity {name!r}; choose from {', '.join(FIDELITIES)}, or spell one out as "
            "IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR][wsd[cBRANCH]], e.g. 3000x2b32"
        )
    n, e, b, w, lr, wsd, branch = m.groups()
    width = float(w or 1)
    if not 0 < width <= 1:
        raise SettingError(f"--fidelity {name!r}: the proxy's width must be in (0, 1], got {width:g}")
    schedule = {"scheduler": "wsd", "branch": float(branch or 0.25)} if wsd else {}
    images = None if n == "all" else int(n)
    fidelity = Fidelity(spec, images, int(e), batch_size=int(b or 128), width=width, lr=float(lr or 3e-3), **schedule)
    try:
        fidelity.train_config(0)
    except SettingError as exc:
        raise SettingError(f"--fidelity {name!r}: {exc}") from None
    if images is not None and images < 1:
        raise SettingError(f"--fidelity {name!r}: need at least 1 training image")
    return fidelity


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
    bf16_above_flops: float | None = None  # on the CPU, train networks with more FLOPs in bf16 (nas.training.numerics)

    def bf16(self, flops: float) -> bool:
        return self.bf16_above_flops is not None and flops > self.bf16_above_flops


@dataclass(frozen=True)
class Job:
    """One training the evaluator runs.

    ``until``: train to this epoch of the fidelity's schedule (None: all of it); a kept state of the same
    network from an earlier job is continued, never trained again. ``keep_state``: store the training
    state afterwards, for a later job to continue (``Evaluator.drop_state`` removes it).
    """

    genome: str
    until: int | None = None
    keep_state: bool = False
    # a long training (the top rung): checkpointed every epoch in the state folder, so that a killed search
    # resumes it where it stopped (workers on this machine only: a Dask worker elsewhere starts it over)
    resumable: bool = False


def cache_key(genome_key: str, task: EvalTask, data_fingerprint: str, until: int | None = None) -> str:
    """Same genome, fidelity, budget, data and seed: same result, so it is never trained twice."""
    budget = f"@{until}" if until is not None and until < task.fidelity.epochs else ""
    numerics = f"|bf16>{task.bf16_above_flops / 1e6:g}M" if task.bf16_above_flops is not None else ""
    fidelity = f"{task.fidelity.name}:{hash_text(task.fidelity.key)}{budget}"
    return f"{genome_key}|{fidelity}|{data_fingerprint}|{task.seed}{numerics}"


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def train_candidate(
    genome_text: str,
    task: EvalTask,
    until: int | None = None,
    state: bytes | None = None,
    keep_state: bool = False,
    dataset: fer.FerData | None = None,
    live: str | None = None,
) -> dict:
    """Train one candidate briefly and return its record; never raises.

    Anything that goes wrong (a build error, NaN loss, out of memory, the time limit) becomes a record
    with status ``failed`` or ``timeout`` and the error message, so the search goes on; data this worker
    cannot read is no fault of the candidate's, and its record says so (``"worker_error"``: never cached).
    ``state`` (bytes of an earlier job's training state) is continued; with ``keep_state`` the record
    carries the new state under ``"state"``. ``dataset``: the loaded data, sent by the client (Dask
    workers need no access to ``task.data``); without it the worker loads ``task.data`` itself. ``live``: a
    file to checkpoint in after every epoch; where it exists, it is continued (it is further than ``state``).
    """
    torch.set_num_threads(task.threads or _worker_threads())
    record: dict = {"genome": genome_text, "status": "ok", "error": "", "fidelity": task.fidelity.name}
    record["seed"] = task.seed
    t0 = time.monotonic()
    try:
        try:
            dataset = dataset or fer.load(task.data, ("train", "val"))
        except DataError as exc:
            return record | {"status": "failed", "error": str(exc), "worker_error": True}
        genome = parse_genome(genome_text)
        record["key"] = genome.key
        record["data"] = dataset.fingerprint
        train_split = dataset["train"].subset(task.fidelity.train_images, task.seed)
        val_split = dataset["val"].subset(task.fidelity.val_images, task.seed)
        model, trained_flops = _network(genome, task, record)
        deadline = t0 + task.time_limit if task.time_limit else None
        cfg = task.fidelity.train_config(task.seed).replace(cpu_bf16=task.bf16(trained_flops))
        gpu = resolve_device(task.device).type == "cuda"
        record["numerics"] = "bf16" if cfg.cpu_bf16 or (gpu and cfg.amp) else "fp32"
        with tempfile.TemporaryDirectory(prefix="fer-nas-state-") as tmp:
            checkpoint = Path(live or Path(tmp) / "state.pt") if state is not None or keep_state or live else None
            if state is not None and not checkpoint.exists():
                checkpoint.write_bytes(state)
            result = train(model, train_split, val_split, cfg, task.device, deadline=deadline, checkpoint=checkpoint,
                           until=until, branch=task.fidelity.branch)  # fmt: skip
            if keep_state:
                record["state"] = checkpoint.read_bytes()
        record |= {"val_acc": result.best_acc, "val_f1": result.best_f1, "epochs": result.epochs_run}
        # the learning curve: cheap signals (the sum of training losses, early epochs) are read off it
        record["curve"] = [
            {k: None if row.get(k) is None else round(row[k], 5) for k in ("train_loss", "val_acc", "branch_acc")
             if k in row} for row in result.history
        ]  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one bad candidate must never stop a search
        record |= _failure(exc)
    record["train_seconds"] = round(time.monotonic() - t0, 3)
    return record


def _network(genome: Genome, task: EvalTask, record: dict) -> tuple[torch.nn.Module, int]:
    """The network to train and its FLOPs: the proxy of a reduced width, if the fidelity has one; the record
    gets the real network's parameters and FLOPs."""
    torch.manual_seed(task.seed)
    model = build(genome, task.input_shape, task.num_classes)
    record["params"], record["flops"] = count_params(model), count_flops(model, task.input_shape)
    if task.fidelity.width == 1.0:
        return model, record["flops"]
    torch.manual_seed(task.seed)
    model = build(task.fidelity.trained_genome(genome), task.input_shape, task.num_classes)
    return model, count_flops(model, task.input_shape)


def _failure(exc: Exception) -> dict:
    """What a candidate's record says of what stopped it: the time limit, a divergence, or any other error
    (its kind, message and where it was raised)."""
    if isinstance(exc, TimeLimitExceeded):
        return {"status": "timeout", "error": str(exc)}
    if isinstance(exc, Diverged):
        return {"status": "failed", "error": f"diverged: {exc}"}
    kind = "out of memory" if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) else type(exc).__name__
    where = traceback.extract_tb(exc.__traceback__)[-1]
    message = str(exc).splitlines()[0] if str(exc) else ""
    return {"status": "failed", "error": f"{kind}: {message} ({Path(where.filename).name}:{where.lineno})"}


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
        self.latency_table = latency_table
        self._states: dict[str, tuple[int, bytes]] = {}
        self._client = None

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
                self._store_state(record.pop("state"), record)
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

    def _kept(self, genome_text: str) -> list[tuple[int, Path | None]]:
        """(epochs, file) of the kept states of a network, fewest epochs first."""
        base = self._state_base(genome_text)
        if self.state_dir is None:
            return [(self._states[base][0], None)] if base in self._states else []
        return sorted((int(p.stem.rsplit("-e", 1)[1]), p) for p in self.state_dir.glob(f"{base}-e*.pt"))

    def _state_for(self, job: Job) -> bytes | None:
        """The most trained kept state that does not go past the job's budget."""
        until = job.until if job.until is not None else self.task.fidelity.epochs
        usable = [(e, p) for e, p in self._kept(job.genome) if e <= until]
        if not usable:
            return None
        epochs, path = usable[-1]
        return path.read_bytes() if path is not None else self._states[self._state_base(job.genome)][1]

    def _store_state(self, state: bytes, record: dict) -> None:
        base, epochs = self._state_base(record["genome"]), record["epochs"]
        if self.state_dir is None:
            self._states[base] = (epochs, state)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state_dir / f"{base}-e{epochs}.pt", state)
        for live in (self.state_dir / f"{base}-live.pt", stable_copy(self.state_dir / f"{base}-live.pt")):
            live.unlink(missing_ok=True)  # a resumable job's, now kept as above
        for e, path in self._kept(record["genome"]):
            if e != epochs:
                path.unlink(missing_ok=True)

    def _live(self, job: Job) -> str | None:
        """Where a resumable job checkpoints every epoch (on this machine's disk: not for Dask workers)."""
        if not job.resumable or self.state_dir is None or self.backend != "loky":
            return None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return str(self.state_dir / f"{self._state_base(job.genome)}-live.pt")

    def drop_state(self, genome_text: str) -> None:
        """Forget a network's kept training state (when no later job will continue it)."""
        self._states.pop(self._state_base(genome_text), None)
        for _, path in self._kept(genome_text):
            if path is not None:
                path.unlink(missing_ok=True)

    def state_file(self, genome_text: str) -> Path | None:
        """The file of a network's most trained kept state, if it is kept on disk."""
        kept = self._kept(genome_text)
        return kept[-1][1] if kept else None

    def drop_states_except(self, genome_texts: set[str]) -> None:
        """Forget every kept training state but those of ``genome_texts``."""
        keep = {self._state_base(g) for g in genome_texts}
        for base in set(self._states) - keep:
            del self._states[base]
        for path in self.state_dir.glob("*-e*.pt") if self.state_dir is not None else ():
            if path.stem.rsplit("-e", 1)[0] not in keep:
                path.unlink(missing_ok=True)

    def state_bytes(self) -> int:
        """Disk (or memory) taken by kept training states."""
        if self.state_dir is None:
            return sum(len(b) for _, b in self._states.values())
        return sum(p.stat().st_size for p in self.state_dir.glob("*-e*.pt"))

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
                self._client = Client(self.scheduler)
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


def _train_job(key: str, job: Job, task: EvalTask, state: bytes | None, dataset: fer.FerData | None = None,
               live: str | None = None) -> dict:  # fmt: skip
    """A worker's whole task: train, and label the record with its cache key."""
    record = train_candidate(job.genome, task, job.until, state, job.keep_state, dataset, live)
    return record | {"cache_key": key}


def _worker_threads() -> int:
    """Threads for one training on a Dask worker: its machine's cores shared by the worker's task slots."""
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, (os.cpu_count() or 1) // slots)


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


def estimate(task: EvalTask, evaluations: int, jobs: int, epochs: float | None = None,
             finalists: int = 0, final_epochs: float = 0.0) -> str:  # fmt: skip
    """Up-front cost: a probe network's measured training speed times the number of evaluations, each
    training ``epochs`` of the schedule on average (successive halving stops most networks early), plus the
    top rung, if the search has one: ``finalists`` continuing ``final_epochs`` each, ``jobs`` at a time."""
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
        final = math.ceil(finalists / jobs) * n_train * final_epochs / ips
        text += f"; then {finalists} finalist(s) finish their training, {final_epochs:g} epochs each"
        text += f" ~ {final / 3600:.1f} h"
    return text
