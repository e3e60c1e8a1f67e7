"""The run directory: every file a run keeps, how each is written, and how it is read back.

``runs/<run-id>/`` holds the resolved configuration, the evaluation cache, the tables, the champion and
the checkpoint (see the README's table). Everything is written atomically (``atomic_write``: a unique
temporary file in the same folder, fsynced, then renamed), so a crash leaves the previous version whole;
the cache is appended line by line and fsynced. Nothing here unpickles: the checkpoint is JSON, so
loading a run directory can never run code.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nas.errors import RunDirError, SettingError, first_line
from nas.settings import number_in, typed

_UMASK = os.umask(0o022)  # read once, at import (the only way to read it changes it: set back at once)
os.umask(_UMASK)

# the files of a run directory, named once
CONFIG, CACHE, CHECKPOINT, CHAMPION = "config.json", "cache.jsonl", "checkpoint.json", "champion.json"
LOCK = ".lock"  # held (flock) by the process searching in the run directory
EVALUATIONS, PARETO, PROGRESS = "evaluations.csv", "pareto.csv", "progress.csv"
OLD_CHECKPOINT = "checkpoint.pkl"  # before checkpoints were JSON; never loaded (unpickling runs code)
RUN_LOG = "run.log"  # what the search logged, every session of it
LATENCY_TABLE = "latency_table.json"  # the run's own copy of the latency units it used
STATES = "states"  # kept training states (successive halving, finalists)
SEARCH_STUDY = "search.db"  # --algorithm optuna: the sampler's study
TUNE_STUDY, TUNED = "tune.db", "tuned.json"  # the tuning study and the recipe it chose
MODEL, TRAIN_STATE = "model.pt", "train_state.pt"  # a full training's result and its checkpoint
REPORT, REPORT_MD = "report.json", "report.md"  # the test report
# the distilled networks of a run, and the distillation stage's students trained without a teacher
DISTILLED, STUDENTS = "distilled", "students"
NETWORKS = "networks"  # full trainings of a run's other genomes (train.py --genome), one folder per genome key
CHECKPOINT_FORMAT = "fer-nas-checkpoint/2"

# the columns of evaluations.csv and pareto.csv: one evaluation record each
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
    "measured_latency_ms",
    "latency_ratio",
    "train_seconds",
    "epochs",
    "fidelity",
    "numerics",
    "data",
    "seed",
)

# a network's lineage in a search: the seed network it descends from (if any) and after how many breedings
LINEAGE_FIELDS = ("origin", "variations")


def record_fields() -> tuple[str, ...]:
    """The tables' columns: the record's fields, and the column of every declared objective."""
    from nas.evolve.objectives import OBJECTIVES

    declared = dict.fromkeys(o.column for o in OBJECTIVES.values())
    return (*RECORD_FIELDS, *(c for c in declared if c not in RECORD_FIELDS))


# ---------------------------------------------------------------- writing safely


def make_dir(path: str | Path) -> Path:
    """Create an output folder and its parents, or say in one line why it cannot be written to."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"{path}: exists and is not a folder") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"{path}: folder is not writable")
    return path


def no_link(path: Path) -> Path:
    """Refuse a symbolic link where a run's file should be: writing through it would change a file outside
    the run directory."""
    if path.is_symlink():
        raise RunDirError(f"{path}: is a symbolic link; a run writes only its own files (remove the link)")
    return path


def open_append(path: str | Path, mode: str = "a") -> TextIO:
    """Open a run file for appending (``a``) or for reading and writing (``r+``, created if missing), never
    through a symbolic link."""
    path = no_link(Path(path))
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_WRONLY | os.O_APPEND if mode == "a" else os.O_RDWR)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write ({exc.strerror})") from None
    return os.fdopen(fd, mode, encoding="utf-8")


def safe_name(text: str) -> str:
    """User text fit to be one path component: letters, digits, ``.-_``; nothing that climbs out."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "space"
    return name[:60]


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` all at once: readers see the old file or the new one, never half (and
    never a file outside the run directory: a link in its place is refused)."""
    path = Path(path)
    atomic_write_all(path.parent, {path.name: data})
    return path


def atomic_write_all(folder: str | Path, files: dict[str, str | bytes]) -> Path:
    """Replace several files of ``folder`` that belong together (an export's model, card and description):
    each is written whole beside its place first, so that a failure on any (a full disk) leaves every old
    file as it was; then all are renamed into place, and a rename refused (a folder in a file's place) puts
    back the ones already renamed. Each file on its own is as ``atomic_write``'s."""
    staged: list[tuple[str, Path]] = []
    path = Path(folder)
    try:
        for name, data in files.items():
            path = Path(folder) / name
            staged.append((_staged(no_link(path), data), path))
        _rename_all(staged)
    except BaseException as exc:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):  # renamed already, or never made
                os.unlink(tmp)
        if isinstance(exc, OSError):  # e.g. a name too long for the file system
            raise RunDirError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None
        raise
    return Path(folder)


def _rename_all(staged: list[tuple[str, Path]]) -> None:
    """Rename each staged file into place; where one is refused, the files renamed before it get their old
    versions back (kept meanwhile as hard links; a file system without them keeps the new ones)."""
    done: list[tuple[Path, str | None]] = []
    old: str | None = None
    together = len(staged) > 1  # one file alone: a refused rename leaves it as it was
    try:
        for tmp, path in staged:
            old = _linked_aside(path) if together else None
            os.replace(tmp, path)
            done.append((path, old))
            old = None
    except OSError as exc:
        for renamed, previous in reversed(done):
            with contextlib.suppress(OSError):
                if previous:
                    os.replace(previous, renamed)
                else:  # it was not there before
                    os.unlink(renamed)
        raise RunDirError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None
    finally:
        for leftover in filter(None, [old, *(previous for _, previous in done)]):
            with contextlib.suppress(OSError):  # put back already
                os.unlink(leftover)


def _linked_aside(path: Path) -> str | None:
    """A second name for ``path``'s file as it is now, to put it back with; None where there is none."""
    if not path.is_file():
        return None
    aside = str(path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.old"))
    try:
        os.link(path, aside)
    except OSError:  # no hard links here
        return None
    return aside


def _staged(path: Path, data: str | bytes) -> str:
    """``data`` written and synced to a temporary file beside ``path``; its name."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX (and Windows from Python 3.13)
                os.fchmod(f.fileno(), _mode_for(path))
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, read-only, immutable: the old file stays as it was
            raise RunDirError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None
        raise
    return tmp


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open`` would give ``path`` (the old file's where one is replaced), not
    mkstemp's owner-only 0600, so that people sharing a run directory can read each other's results."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """One search at a time in a run directory: a second process (a resume started twice) would train every
    network again and interleave its cache lines; it stops with a line saying who holds the directory."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open_append(Path(run_dir) / LOCK, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunDirError(f"{run_dir}: in use by {holder}; wait for it to end or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {platform.node()}\n")
        f.flush()
        yield


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _finite(value: Any) -> Any:
    """Infinities and NaN become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(payload: dict) -> str:
    """What ``write_json`` writes."""
    return json.dumps(_finite(payload), indent=2, default=_json_default) + "\n"


def write_json(path: str | Path, payload: dict) -> Path:
    return atomic_write(path, json_text(payload))


def read_json(path: str | Path, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; anything else is one line naming the file."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable {what} ({exc})") from None
    except RecursionError:
        raise RunDirError(f"{path}: unreadable {what} (nested too deep)") from None
    if not isinstance(payload, dict):
        raise RunDirError(f"{path}: unreadable {what} (not a JSON object)")
    return payload


# ---------------------------------------------------------------- the evaluation cache


# a record's figures and their ranges, and its other fields' types: a value outside them was not written by a
# training, and would stop a resume later with a message that names some other file
_UNBOUNDED = ("params", "flops", "latency_ms", "measured_latency_ms", "epochs", "train_seconds")
_RANGES = {"val_acc": (0.0, 1.0), "val_f1": (0.0, 1.0)} | {field: (0.0, math.inf) for field in _UNBOUNDED}
_TYPES = {"genome": str, "status": str, "error": str, "fidelity": str, "seed": int, "key": str, "data": str,
          "numerics": str, "curve": list}  # fmt: skip
_STATUSES = ("ok", "failed", "timeout")


def _record_problem(rec: dict) -> str | None:
    """What makes a cache line no record of its key's training: a field of the wrong type, a status the
    worker never writes, a figure that is no finite number in its range, or a genome, data, fidelity or seed
    other than its key's."""
    for field, kind in _TYPES.items():
        if field in rec and (not isinstance(rec[field], kind) or isinstance(rec[field], bool)):
            return f"{field} {rec[field]!r} is not a {kind.__name__}"
    if rec.get("status") not in _STATUSES:
        return f"status {rec.get('status')!r} is not one of {', '.join(_STATUSES)}"
    if rec["status"] == "ok" and not {"key", "val_acc"} <= set(rec):
        return "a finished training's record without its key and val_acc"
    for field, (lo, hi) in _RANGES.items():
        value = rec.get(field)
        if value is not None and not number_in(value, lo, hi):
            return f"{field} {value!r} is not a number in [{lo:g}, {hi:g}]"
    return _key_problem(rec)


def _key_problem(rec: dict) -> str | None:
    """Where a record restates its cache key (``genome|fidelity:hash|data|seed[|numerics]``), it agrees."""
    from nas.errors import GenomeError
    from nas.genome.grammar import parse_genome

    genome_key, fidelity, data, seed = (rec["cache_key"].split("|") + [None] * 4)[:4]
    restated = {"key": genome_key, "fidelity": (fidelity or "").split(":")[0] or None, "data": data, "seed": seed}
    for field, part in restated.items():
        if field in rec and part is not None and str(rec[field]) != part:
            return f"its {field} {rec[field]!r} is not the one of its cache_key ({part})"
    if "genome" in rec and not genome_key.startswith("invalid-"):  # a string that never parsed has its own key
        try:
            if parse_genome(rec["genome"]).key != genome_key:
                return f"its genome is not the one of its cache_key {genome_key}"
        except GenomeError:
            return f"its genome {rec['genome']!r} does not parse"
    return None


class Cache:
    """Evaluation records by cache key, persisted as JSON lines (append-only; the last line wins).

    Every finished evaluation is appended and fsynced at once, so a crash loses at most the
    evaluations still running; a line a crash cut short is skipped, and ended before the next append.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.records: dict[str, dict] = {}
        self._cut = False  # the file ends inside a line
        if self.path and self.path.exists():
            try:
                text = self.path.read_bytes()
            except OSError as exc:
                raise RunDirError(f"{self.path}: cannot read the evaluation cache ({exc.strerror})") from None
            self._cut = bool(text) and not text.endswith(b"\n")
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    self._load_line(n, line)

    def _load_line(self, n: int, line: bytes) -> None:
        """One record; a line cut short by a crash mid-write is skipped, anything else that is not a record
        is an error (the file was edited or damaged: its records cannot be trusted)."""
        try:
            rec = json.loads(line)
        except UnicodeDecodeError:
            raise RunDirError(f"{self.path}:{n}: not UTF-8 text; remove the line and resume") from None
        except json.JSONDecodeError:
            return
        except RecursionError:
            raise RunDirError(f"{self.path}:{n}: nested too deep to be a record; remove the line and resume") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("cache_key"), str):
            raise RunDirError(f"{self.path}:{n}: not an evaluation record (no cache_key); remove the line and resume")
        problem = _record_problem(rec)
        if problem:
            raise RunDirError(f"{self.path}:{n}: {problem}; remove the line and resume")
        self.records[rec["cache_key"]] = rec

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def put(self, record: dict) -> None:
        self.records[record["cache_key"]] = record
        if self.path:
            with open_append(self.path) as f:
                f.write("\n" * self._cut + json.dumps(_finite(record)) + "\n")
                self._cut = False
                f.flush()
                os.fsync(f.fileno())


# ---------------------------------------------------------------- tables, champion, checkpoint


def write_tables(run_dir: Path, rows: list[dict], records: dict[str, dict], front: list[dict],
                 progress: list[dict]) -> None:  # fmt: skip
    """``evaluations.csv`` (one row per evaluation request), ``pareto.csv`` and ``progress.csv``."""
    import pandas as pd

    def csv(frame: pd.DataFrame, name: str) -> None:
        if "variations" in frame:  # a count, or empty where the network descends from no seed
            frame["variations"] = frame["variations"].astype("Int64")
        atomic_write(Path(run_dir) / name, frame.to_csv(index=False))

    columns = record_fields()
    table = [{**{k: records[r["cache_key"]].get(k) for k in columns}, **r} for r in rows]
    csv(pd.DataFrame(table, columns=["generation", "cached", *columns, *LINEAGE_FIELDS]), EVALUATIONS)
    front_columns = [*columns, *LINEAGE_FIELDS]
    csv(pd.DataFrame([{k: r.get(k) for k in front_columns} for r in front], columns=front_columns), PARETO)
    csv(pd.DataFrame(progress), PROGRESS)


def write_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    write_json(Path(run_dir) / CHECKPOINT, {"format": CHECKPOINT_FORMAT, **checkpoint})


@dataclass(frozen=True)
class _Checkpoint:
    """What a checkpoint holds, by type (``nas.evolve.runner`` writes it): read back through this schema."""

    format: str
    generation: int
    rng: dict
    algorithm: dict
    rows: tuple[dict, ...]
    progress: tuple[dict, ...]
    archive: tuple[str, ...]
    seconds: float


def read_checkpoint(run_dir: Path) -> dict | None:
    """The last checkpoint, or None when the run stopped before its first one (then it restarts from
    generation 0, and its cache spares it every training already done). Every field is checked by its type,
    each row too: a damaged checkpoint is one line naming the file and the field."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    checkpoint = read_json(path, "checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{path}: unreadable checkpoint (format {checkpoint.get('format')!r})")
    missing = [f for f in _Checkpoint.__dataclass_fields__ if f not in checkpoint]
    if missing:
        raise RunDirError(f"{path}: unreadable checkpoint (no {', '.join(missing)})")
    try:
        typed(_Checkpoint, checkpoint, str(path))
    except SettingError as exc:
        raise RunDirError(f"{path}: unreadable checkpoint ({str(exc).removeprefix(f'{path}: ')})") from None
    bad = [
        r for r in checkpoint["rows"] if not isinstance(r.get("cache_key"), str) or type(r.get("generation")) is not int
    ]
    if checkpoint["generation"] < 0 or not math.isfinite(checkpoint["seconds"]) or bad:
        what = f"row {bad[0]!r}" if bad else f"generation {checkpoint['generation']}, seconds {checkpoint['seconds']}"
        raise RunDirError(f"{path}: unreadable checkpoint ({what})")
    return checkpoint


# ---------------------------------------------------------------- configuration


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "deap", "numpy", "onnxruntime", "optuna", "opencv-python", "joblib", "fer-nas"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def machine_cache() -> Path:
    """``$XDG_CACHE_HOME/fer-nas`` (else ``~/.cache/fer-nas``): what this machine measured once (latency
    units, its numeric modes), shared by every run on it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-nas"


def keep_in_machine_cache(path: Path, added: Callable[[Path], dict]) -> None:
    """Add a measurement to the machine's cache: ``added`` reads ``path`` as it is now and returns it with the
    measurement in, one process at a time, so that runs measuring at once keep each other's entries. A
    cache that cannot be written is a warning, not a stop (a run keeps what it uses itself; the next one
    measures it again); one that is damaged stops, as when it was first read."""
    import logging

    with contextlib.suppress(RunDirError):  # a folder that cannot be made: the write says so below
        make_dir(path.parent)
    with _one_at_a_time(path):
        payload = added(path)
        try:
            write_json(path, payload)
        except (OSError, RunDirError) as exc:
            logging.getLogger("nas").warning(f"not kept: {first_line(exc)}; measured again by the next run")


@contextlib.contextmanager
def _one_at_a_time(path: Path) -> Iterator[None]:
    """A lock on a file beside ``path`` while it is read and written again (none without POSIX locks, or
    where that file cannot be made)."""
    try:
        import fcntl

        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        yield
        return
    with lock:
        with contextlib.suppress(OSError):  # a file system without locks: unguarded, as before
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if the process dies
        yield


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def champion_genome(run_dir: Path) -> str:
    path = Path(run_dir) / CHAMPION
    if not path.exists():
        raise RunDirError(f"{path}: no champion yet; pass --genome or let the search finish a generation")
    genome = read_json(path, "champion").get("genome")
    if not isinstance(genome, str):
        raise RunDirError(f"{path}: the champion has no genome")
    return genome


def run_data(run_dir: Path) -> str | None:
    """The data a run searched on, if it is a run directory."""
    path = Path(run_dir) / CONFIG
    data = read_json(path, "run configuration").get("data") if path.exists() else None
    if data is not None and not isinstance(data, str):
        raise RunDirError(f"{path}: data must be a path (a text), got {data!r}")
    return data


SEARCH_COST = ("run", "generations", "networks_trained", "minutes")  # what search_cost reports


def search_cost(run_dir: Path) -> dict | None:
    """What the search behind a run's networks cost (from its progress table), for the final report and
    the model card; None where the directory holds no search."""
    path = Path(run_dir) / PROGRESS
    if not path.exists():
        return None
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return None if not rows else {
            "run": Path(run_dir).name,
            "generations": int(rows[-1]["gen"]),
            "networks_trained": sum(int(r["evals"]) - int(r["cache_hits"]) - int(r["failed"]) for r in rows),
            "minutes": round(float(rows[-1]["seconds"]) / 60, 1),
        } | _top_rung(run_dir)  # fmt: skip
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error, OSError) as exc:
        raise RunDirError(f"{path}: not a progress table ({type(exc).__name__}: {exc})") from None


def _top_rung(run_dir: Path) -> dict:
    """The finalists' full training after the generations (``champion.json``), where the search did it."""
    path = Path(run_dir) / CHAMPION
    seconds = read_json(path, "champion").get("top_rung_seconds") if path.exists() else None
    return {"top_rung_minutes": round(seconds / 60, 1)} if isinstance(seconds, (int, float)) and seconds > 0 else {}


def distilled_sentence(teacher: dict) -> str:
    """How a network was distilled, for its report and its model card."""
    members = teacher.get("members")
    members = [m for m in members if isinstance(m, dict)] if isinstance(members, list) else []
    names = ", ".join(f"`{Path(str(m.get('path', '?'))).parent.name}`" for m in members)
    return (
        f"Distilled (Hinton et al. 2015) from {len(members)} fully trained network{'s' * (len(members) != 1)} "
        f"({names}; an ensemble averages their probabilities): weight {teacher.get('weight')}, temperature "
        f"{teacher.get('temperature')}, {teacher.get('targets')} targets."
    )


def search_sentence(search: dict) -> str:
    """``search_cost``'s figures in words, for the report and the model card."""
    top_rung = search.get("top_rung_minutes")
    then = f", then {top_rung} minutes of the finalists' full training" if top_rung is not None else ""
    return (
        f"run {search['run']}: {search['generations']} generations, {search['networks_trained']} networks trained, "
        f"{search['minutes']} minutes{then}"
    )
