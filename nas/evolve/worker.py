"""One candidate's training, as a worker process runs it: plain data in (a genome string, the task, a kept
state as bytes), one plain record out, never an exception (a bad candidate must never stop a search).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nas import data as fer
from nas.errors import DataError, NasError, first_line
from nas.evolve.fidelity import Fidelity
from nas.genome.build import build, count_flops, count_params
from nas.genome.grammar import Genome, parse_genome
from nas.rundir import atomic_write
from nas.training.loop import Diverged, TimeLimitExceeded, read_state, resolve_device, train

log = logging.getLogger(__name__)


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
    limited: bool = True,
) -> dict:
    """Train one candidate briefly and return its record; never raises.

    Anything that goes wrong (a build error, NaN loss, out of memory, the time limit) becomes a record
    with status ``failed`` or ``timeout`` and the error message, so the search goes on; data this worker
    cannot read is no fault of the candidate's, and its record says so (``"worker_error"``: never cached).
    ``state`` (bytes of an earlier job's training state) is continued; with ``keep_state`` the record
    carries the new state under ``"state"``. ``dataset``: the loaded data, sent by the client (Dask
    workers need no access to ``task.data``); without it the worker loads ``task.data`` itself. ``live``: a
    file to checkpoint in after every epoch; where it exists, it is continued (it is further than ``state``).
    ``limited``: the task's time limit applies (not to the top rung, the finalists' full training: their
    speed is known from their first rung, and the limit guards brief trainings).
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
        deadline = t0 + task.time_limit if task.time_limit and limited else None
        cfg = task.fidelity.train_config(task.seed).replace(cpu_bf16=task.bf16(trained_flops))
        gpu = resolve_device(task.device).type == "cuda"
        record["numerics"] = "bf16" if cfg.cpu_bf16 or (gpu and cfg.amp) else "fp32"
        with state_folder() as tmp:
            checkpoint = _checkpoint(tmp, state, keep_state, live)
            result = train(model, train_split, val_split, cfg, task.device, deadline=deadline, checkpoint=checkpoint,
                           until=until, branch=task.fidelity.branch)  # fmt: skip
            if keep_state:
                record["state"] = checkpoint.read_bytes()
        record |= {"val_acc": result.best_acc, "val_f1": result.best_f1, "epochs": result.epochs_run}
        record["clock_seconds"] = round(result.seconds, 1)  # the training's own clock: across resumes, from epoch 1
        # the learning curve: cheap signals (the sum of training losses, early epochs) are read off it
        record["curve"] = [
            {k: None if row.get(k) is None else round(row[k], 5) for k in ("train_loss", "val_acc", "branch_acc")
             if k in row} for row in result.history
        ]  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one bad candidate must never stop a search
        record |= _failure(exc)
    record["train_seconds"] = round(time.monotonic() - t0, 3)
    return record


STATE_FOLDER = "fer-nas-state-"  # a training's private folder in the temp directory, for the state it keeps
STALE_AFTER = 60.0  # seconds: a younger folder may be one whose worker has not yet taken its lock


@contextlib.contextmanager
def state_folder() -> Iterator[Path]:
    """A private folder for the state a training keeps, locked while it trains; a worker killed mid-training
    leaves its folder (a state of a few MB), which the next training on the machine removes."""
    _sweep(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=STATE_FOLDER) as tmp, open(Path(tmp) / ".lock", "w") as lock:
        with contextlib.suppress(ImportError, OSError):  # no lock where the file system has none: kept, not swept
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel when the process dies
        yield Path(tmp)


def _sweep(root: Path) -> None:
    """Remove the state folders no process holds: their lock is free (a folder without one is left alone)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: nothing tells a live folder from a dead one
        return
    for folder in root.glob(STATE_FOLDER + "*"):
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER:
                continue
            with open(folder / ".lock") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # held (BlockingIOError), gone, or not ours to open
            continue


def _checkpoint(tmp: Path, state: bytes | None, keep_state: bool, live: str | None) -> Path | None:
    """Where the training checkpoints: the live file (continued where it is whole), else a file in ``tmp``
    holding ``state``; None where nothing is continued or kept."""
    if state is None and not keep_state and not live:
        return None
    checkpoint = Path(live or tmp / "state.pt")
    if live and checkpoint.exists():
        _usable(checkpoint)
    if state is not None and not checkpoint.exists():
        atomic_write(checkpoint, state)  # a finalist's live file: never half there after a kill
        _usable(checkpoint)
    return checkpoint


def _usable(checkpoint: Path) -> bool:
    """Whether a kept training state can be continued; a damaged one is said and removed, and the training
    starts again from its beginning: to the same result (a continued training is a straight one, bit for
    bit), and never cached as the network's failure."""
    try:
        read_state(checkpoint)
    except NasError as exc:
        log.warning(f"{first_line(exc).removesuffix('; delete it to start over')}: trained again from the start")
        checkpoint.unlink(missing_ok=True)
        return False
    return True


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


def _train_job(key: str, job: Job, task: EvalTask, state: bytes | None, dataset: fer.FerData | None = None,
               live: str | None = None) -> dict:  # fmt: skip
    """A worker's whole task: train, and label the record with its cache key."""
    record = train_candidate(job.genome, task, job.until, state, job.keep_state, dataset, live, not job.resumable)
    return record | {"cache_key": key}


def _worker_threads() -> int:
    """Threads for one training on a Dask worker: its machine's cores shared by the worker's task slots."""
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, (os.cpu_count() or 1) // slots)


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
