"""More than a hundred malformed inputs across every command: each must end with exit status 2 and one line
on stderr that names the file or flag and the problem, with no traceback and nothing stale left behind.

The cases run in this process (``nas.cli.main``) against one small finished world (a run directory with a
champion, a trained model and its export), so the whole corpus costs seconds, not a subprocess each.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nas import data
from nas.cli import main
from nas.deploy.artifact import save_checkpoint
from nas.genome.build import build
from nas.genome.grammar import parse_genome

GENOME = "conv_k3_c8_s1_relu_bn | pool_max | conv_k3_c16_s1_relu_bn | gap"
HEADER = "emotion,pixels,Usage\n"
PIXELS = " ".join(["128"] * 2304)
GOOD_ROWS = "".join(f"{i % 7},{PIXELS},{u}\n" for u in ("Training", "PublicTest", "PrivateTest") for i in range(7))
TINY = ["--space", "tiny", "--population", "4", "--generations", "1", "--fidelity", "cheap", "--jobs", "1"]


@dataclass
class World:
    """A small finished world: data, a run with a champion, a trained model and its export."""

    root: Path
    csv: Path
    run: Path
    export: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_csv) -> World:
    from nas.training.report import test_report

    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": str(synthetic_csv)}))
    (run / "champion.json").write_text(json.dumps({"genome": GENOME, "rule": "test"}))
    torch.manual_seed(0)
    model = build(parse_genome(GENOME)).eval()
    save_checkpoint(run / "model.pt", model, {"val_acc": 0.5})
    test_report(model, data.load(str(synthetic_csv), ("test",))["test"], run, {"name": "champion", "device": "cpu"})
    assert main(["export", "--run", str(run)]) == 0
    image = np.full((96, 96, 3), 128, np.uint8)
    cv2.imwrite(str(root / "face.png"), image)
    return World(root, synthetic_csv, run, run / "export")


@dataclass
class Case:
    """One malformed input: ``make`` builds it in a fresh folder and returns the command line; the error line
    must contain every string of ``says`` (with ``{tmp}`` the folder); ``absent`` must not exist afterwards."""

    name: str
    make: Callable[[World, Path], list[str]]
    says: tuple[str, ...]
    absent: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = field(default_factory=tuple)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def rand_bytes(n: int = 4096) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


# ---------------------------------------------------------------- data files, in each form


def evolve_on(data_path: Callable[[World, Path], str], *extra: str) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        return ["evolve", "--data", data_path(w, tmp), "--run-dir", str(tmp / "r"), *TINY, *extra]

    return make


def csv_file(text: str | bytes, name: str = "d.csv") -> Callable[[World, Path], str]:
    return lambda w, tmp: str(write(tmp / name, text))


def gz_file(content: bytes) -> Callable[[World, Path], str]:
    return lambda w, tmp: str(write(tmp / "d.csv.gz", content))


def folder(layout: dict[str, bytes | None]) -> Callable[[World, Path], str]:
    """An image folder: ``layout`` maps relative paths to bytes (None: a good 48x48 grey image)."""

    def make(w: World, tmp: Path) -> str:
        ok = cv2.imencode(".png", np.full((48, 48), 100, np.uint8))[1].tobytes()
        for rel, content in layout.items():
            write(tmp / "imgs" / rel, ok if content is None else content)
        return str(tmp / "imgs")

    return make


def npz_file(**arrays: np.ndarray) -> Callable[[World, Path], str]:
    def make(w: World, tmp: Path) -> str:
        np.savez(tmp / "d.npz", **arrays)
        return str(tmp / "d.npz")

    return make


GOOD_SPLIT = {"train/happy/a.png": None, "val/happy/a.png": None, "test/happy/a.png": None}
DATA_CASES = [
    Case("data-missing", evolve_on(lambda w, t: str(t / "none.csv")), ("{tmp}/none.csv", "not found"), ("r",)),
    Case("data-empty-csv", evolve_on(csv_file("")), ("{tmp}/d.csv",), ("r",)),
    Case("data-header-only", evolve_on(csv_file(HEADER)), ("{tmp}/d.csv", "no rows"), ("r",)),
    Case("data-wrong-header", evolve_on(csv_file("a,b,c\n1,2,3\n")), ("{tmp}/d.csv", "missing column"), ("r",)),
    Case(
        "data-label-7", evolve_on(csv_file(HEADER + f"7,{PIXELS},Training\n" + GOOD_ROWS)), ("{tmp}/d.csv:2",), ("r",)
    ),
    Case("data-label-neg", evolve_on(csv_file(HEADER + f"-1,{PIXELS},Training\n")), ("{tmp}/d.csv:2", "label"), ("r",)),
    Case("data-label-text", evolve_on(csv_file(HEADER + f"happy,{PIXELS},Training\n")), ("{tmp}/d.csv:2",), ("r",)),
    Case("data-short-pixels", evolve_on(csv_file(HEADER + "0,1 2 3,Training\n")), ("{tmp}/d.csv:2", "2304"), ("r",)),
    Case("data-text-pixel", evolve_on(csv_file(HEADER + f"0,x {PIXELS[4:]},Training\n")), ("{tmp}/d.csv:2",), ("r",)),
    Case(
        "data-pixel-256",
        evolve_on(csv_file(HEADER + f"0,256 {PIXELS[4:]},Training\n" + GOOD_ROWS)),
        ("{tmp}/d.csv:2", "0..255"),
        ("r",),
    ),
    Case("data-bad-usage", evolve_on(csv_file(HEADER + f"0,{PIXELS},Train\n")), ("{tmp}/d.csv:2", "Usage"), ("r",)),
    Case(
        "data-no-publictest",
        evolve_on(csv_file(HEADER + f"0,{PIXELS},Training\n0,{PIXELS},PrivateTest\n")),
        ("{tmp}/d.csv", "PublicTest"),
        ("r",),
    ),
    Case("data-binary-csv", evolve_on(csv_file(rand_bytes())), ("{tmp}/d.csv",), ("r",)),
    Case("data-gz-random", evolve_on(gz_file(rand_bytes())), ("{tmp}/d.csv.gz",), ("r",)),
    Case(
        "data-gz-truncated",
        evolve_on(gz_file(gzip.compress((HEADER + GOOD_ROWS * 20).encode())[:3000])),
        ("{tmp}/d.csv.gz",),
        ("r",),
    ),
    Case("data-gz-empty", evolve_on(gz_file(b"")), ("{tmp}/d.csv.gz",), ("r",)),
    Case("data-folder-empty", evolve_on(folder({})), ("{tmp}/imgs",), ("r",)),
    Case(
        "data-folder-unknown-class",
        evolve_on(folder({**GOOD_SPLIT, "train/happyy/b.png": None})),
        ("{tmp}/imgs/train/happyy", "unknown class"),
        ("r",),
    ),
    Case(
        "data-folder-corrupt-image",
        evolve_on(folder({**GOOD_SPLIT, "train/sad/b.png": b"not a png"})),
        ("{tmp}/imgs/train/sad/b.png",),
        ("r",),
    ),
    Case("data-folder-no-test", evolve_on(folder({"train/happy/a.png": None})), ("{tmp}/imgs",), ("r",)),
    *(
        Case(
            f"data-npz-pixels-{k}",
            evolve_on(npz_file(train_x=x, train_y=np.zeros(2, np.int64), val_x=x, val_y=np.zeros(2, np.int64))),
            ("{tmp}/d.npz", "train_x", says),
            ("r",),
        )
        for k, x, says in [
            ("float-0-1", np.full((2, 48, 48), 0.5), "multiply images scaled to [0, 1] by 255"),
            ("int16-wide", np.full((2, 48, 48), 300, np.int16), "values in [300, 300]"),
            ("negative", np.full((2, 48, 48), -1, np.int32), "values in [-1, -1]"),
            ("complex", np.zeros((2, 48, 48), np.complex64), "dtype complex64"),
        ]
    ),
    Case("data-npz-random", evolve_on(csv_file(rand_bytes(), "d.npz")), ("{tmp}/d.npz",), ("r",)),
    Case("data-npz-missing-split", evolve_on(npz_file(train_x=np.zeros((2, 48, 48)))), ("{tmp}/d.npz",), ("r",)),
    Case(
        "data-npz-wrong-shape",
        evolve_on(npz_file(train_x=np.zeros((2, 5)), train_y=np.zeros(2), val_x=np.zeros((2, 5)), val_y=np.zeros(2))),
        ("{tmp}/d.npz",),
        ("r",),
    ),
    Case(
        "data-npz-label-9",
        evolve_on(
            npz_file(
                train_x=np.zeros((2, 48, 48)),
                train_y=np.full(2, 9),
                val_x=np.zeros((2, 48, 48)),
                val_y=np.zeros(2),
            )
        ),
        ("{tmp}/d.npz", "label"),
        ("r",),
    ),
    Case("data-synthetic-bad", evolve_on(lambda w, t: "synthetic:abc"), ("synthetic:abc",), ("r",)),
    Case("data-synthetic-zero", evolve_on(lambda w, t: "synthetic:0"), ("synthetic:0",), ("r",)),
    Case(
        "data-a-directory-named-csv",
        evolve_on(lambda w, t: str((t / "x.csv").mkdir() or t / "x.csv")),
        ("{tmp}/x.csv",),
        ("r",),
    ),
]


# ---------------------------------------------------------------- search-space files

SPACE = """name = "bad"
input_shape = [1, 48, 48]
num_classes = 7
min_blocks = 1
max_blocks = 3
max_dense = 1
readout = ["gap"]
max_flat_features = 1152

[conv]
kernel = [3]
channels = [8]
stride = [1]
activation = ["relu"]
batch_norm = [true]

[dense]
units = [16]
dropout = [0.0]
"""


def space_file(old: str, new: str, text: str = SPACE) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        assert old in text
        path = write(tmp / "s.toml", text.replace(old, new))
        return ["evolve", "--data", str(w.csv), "--space", str(path), "--run-dir", str(tmp / "r"), *TINY[2:]]

    return make


def space_bytes(content: bytes) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        path = write(tmp / "s.toml", content)
        return ["evolve", "--data", str(w.csv), "--space", str(path), "--run-dir", str(tmp / "r"), *TINY[2:]]

    return make


def bad_space(name: str, old: str, new: str, *says: str) -> Case:
    return Case(name, space_file(old, new), ("{tmp}/s.toml", *says), ("r",))


SPACE_CASES = [
    Case(
        "space-missing",
        lambda w, t: [
            "evolve",
            "--data",
            str(w.csv),
            "--space",
            str(t / "no.toml"),
            "--run-dir",
            str(t / "r"),
            *TINY[2:],
        ],
        ("{tmp}/no.toml", "not found"),
        ("r",),
    ),
    Case("space-binary", space_bytes(rand_bytes(512)), ("{tmp}/s.toml",), ("r",)),
    Case("space-not-utf8", space_bytes(SPACE.encode().replace(b'"bad"', b'"\xff\xfe"')), ("{tmp}/s.toml",), ("r",)),
    Case("space-syntax", space_bytes(b"name = \n"), ("{tmp}/s.toml", "TOML"), ("r",)),
    Case("space-empty", space_bytes(b""), ("{tmp}/s.toml", "missing key"), ("r",)),
    bad_space("space-max-blocks-huge", "max_blocks = 3", "max_blocks = 1000000", "max_blocks <= 64"),
    bad_space("space-max-dense-huge", "max_dense = 1", "max_dense = 100000", "max_dense <= 8"),
    bad_space("space-stride-0", "stride = [1]", "stride = [0]", "stride"),
    bad_space("space-channels-neg", "channels = [8]", "channels = [-8]", "channels"),
    bad_space("space-kernel-0", "kernel = [3]", "kernel = [0]", "kernel"),
    bad_space("space-kernel-even", "kernel = [3]", "kernel = [4]", "odd"),
    bad_space("space-dropout-1.5", "dropout = [0.0]", "dropout = [1.5]", "dropout"),
    bad_space("space-dropout-neg", "dropout = [0.0]", "dropout = [-0.1]", "dropout"),
    bad_space("space-units-0", "units = [16]", "units = [0]", "units"),
    bad_space("space-activation", 'activation = ["relu"]', 'activation = ["swishy"]', "swishy"),
    bad_space("space-input-4x4", "input_shape = [1, 48, 48]", "input_shape = [1, 4, 4]", "input_shape"),
    bad_space("space-input-rgb", "input_shape = [1, 48, 48]", "input_shape = [3, 48, 48]", "input_shape"),
    bad_space("space-classes-5", "num_classes = 7", "num_classes = 5", "num_classes"),
    bad_space("space-unknown-block", "[dense]", "[lstm]\nunits = [3]\n[dense]", "lstm"),
    bad_space("space-unknown-field", "batch_norm = [true]", "batch_norm = [true]\ngroups = [2]", "groups"),
    bad_space("space-empty-list", "kernel = [3]", "kernel = []", "kernel"),
    bad_space("space-wrong-type", "kernel = [3]", 'kernel = ["3"]', "kernel"),
    bad_space("space-min-gt-max", "min_blocks = 1", "min_blocks = 5", "min_blocks"),
    bad_space("space-readout", 'readout = ["gap"]', 'readout = ["mean"]', "readout"),
    bad_space("space-budget-neg", 'name = "bad"', 'name = "bad"\nmax_mflops = -3', "max_mflops"),
    bad_space("space-no-body", "[conv]\nkernel = [3]\nchannels = [8]\nstride = [1]\n", "[x]\n", "x"),
]


# ---------------------------------------------------------------- genomes given to train and tune


def train_genome(genome: str, *extra: str) -> Callable[[World, Path], list[str]]:
    return lambda w, tmp: [
        "train",
        "--run",
        str(w.run),
        "--genome",
        genome,
        "--epochs",
        "1",
        "--out",
        str(tmp / "o"),
        *extra,
    ]


def tune_genome(genome: str) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        run = tmp / "run"
        shutil.copytree(w.run, run)
        return ["tune", "--run", str(run), "--genome", genome, "--trials", "1", "--epochs", "1"]

    return make


BAD_GENOMES = {
    "empty": ("", "--genome"),
    "ten-thousand-blocks": (" | ".join(["conv_k3_c8_s1_relu_bn"] * 10_000) + " | gap", "at most 64"),
    "blank": ("   ", "--genome"),
    "garbage": ("hello world", "unknown block"),
    "seven-pools": (" | ".join(["pool_max"] * 7) + " | gap", "pool"),
    "no-readout": ("conv_k3_c8_s1_relu_bn | pool_max", "readout"),
    "after-readout": ("conv_k3_c8_s1_relu_bn | gap | conv_k3_c8_s1_relu_bn", "readout"),
    "kernel-0": ("conv_k0_c8_s1_relu_bn | gap", "kernel"),
    "channels-0": ("conv_k3_c0_s1_relu_bn | gap", "channels"),
    "stride-0": ("conv_k3_c8_s0_relu_bn | gap", "stride"),
    "activation": ("conv_k3_c8_s1_swishy_bn | gap", "swishy"),
    "dropout-1.5": ("conv_k3_c8_s1_relu_bn | gap | dense_u16_d1.5", "dropout"),
    "not-canonical": ("conv_k3_c8_s1_relu_bn |  gap", "canonical"),
}
GENOME_CASES = [
    Case(f"train-genome-{k}", train_genome(g), (s or "--genome",), ("o",)) for k, (g, s) in BAD_GENOMES.items()
]
GENOME_CASES += [
    Case(f"tune-genome-{k}", tune_genome(g), (s,), ("run/tune.db", "run/tuned.json"))
    for k, (g, s) in BAD_GENOMES.items()
    if k in ("empty", "garbage", "no-readout", "stride-0", "dropout-1.5")
]


# ---------------------------------------------------------------- evolve flags


def evolve_flags(*extra: str) -> Callable[[World, Path], list[str]]:
    return lambda w, tmp: ["evolve", "--data", str(w.csv), "--run-dir", str(tmp / "r"), *TINY, *extra]


def flag(name: str, *extra: str, says: str | None = None) -> Case:
    return Case(name, evolve_flags(*extra), (says or extra[0],), ("r",))


FLAG_CASES = [
    flag("population-6", "--population", "6"),
    flag("population-0", "--population", "0"),
    flag("population-neg", "--population", "-4"),
    flag("generations-neg", "--generations", "-1"),
    flag("objectives-unknown", "--objectives", "acc,speed", says="speed"),
    flag("objectives-twice", "--objectives", "acc,params,acc", says="--objectives"),
    flag("max-mflops-0", "--max-mflops", "0"),
    flag("max-params-neg", "--max-params", "-5"),
    flag("caps-admit-nothing", "--max-params", "1", says="no network of space 'tiny' is within the caps"),
    flag("min-over-max", "--max-params", "5000", "--min-params", "6000", says="no network of space 'tiny'"),
    flag("time-limit-0", "--time-limit", "0"),
    flag("jobs-0", "--jobs", "0"),
    flag("jobs-neg", "--jobs", "-2"),
    flag("finalists-neg", "--finalists", "-1"),
    flag("finalist-fidelity", "--finalist-fidelity", "huge"),
    flag("fidelity", "--fidelity", "huge"),
    flag("fidelity-no-images", "--fidelity", "0x2", says="at least 1 training image"),
    flag("fidelity-wide-proxy", "--fidelity", "3000x2w2", says="width must be in (0, 1]"),
    flag("fidelity-batch-0", "--fidelity", "3000x2b0", says="batch_size >= 1"),
    flag("fidelity-two-points", "--fidelity", "3000x2w0.5.5", says="unknown fidelity"),
    flag("rungs-text", "--strategy", "halving", "--rungs", "a,b", says="--rungs"),
    flag("rungs-decreasing", "--strategy", "halving", "--rungs", "4,2", says="rungs"),
    flag("rungs-without-halving", "--strategy", "scratch", "--rungs", "1,2"),
    flag("eta-1", "--strategy", "halving", "--eta", "1", says="eta"),
    flag("device", "--device", "tpu"),
    flag("scheduler-without-dask", "--scheduler", "tcp://127.0.0.1:1", says="--scheduler"),
    flag("champion-max-params-0", "--champion-max-params", "0"),
    flag("target-params-neg", "--algorithm", "ga", "--target-params", "-1", says="--target-params"),
    Case(
        "run-dir-is-a-file",
        lambda w, t: [*evolve_flags()(w, t)[:3], *TINY, "--run-dir", str(write(t / "f", "x"))],
        ("{tmp}/f",),
    ),
    Case(
        "run-dir-parent-is-a-file",
        lambda w, t: [*evolve_flags()(w, t)[:3], *TINY, "--run-dir", str(write(t / "f", "x") / "r")],
        ("{tmp}/f",),
    ),
]


# ---------------------------------------------------------------- run directories and their files


def copy_run(w: World, tmp: Path, edit: Callable[[Path], object] = lambda run: None) -> Path:
    """A finished evolve run of the world's data (made once), copied and then broken by ``edit``."""
    run = tmp / "run"
    shutil.copytree(_evolved(w), run)
    edit(run)
    return run


def _evolved(w: World) -> Path:
    run = w.root / "evolved"
    if not (run / "checkpoint.json").exists():
        fast = ["--finalists", "0", "--fidelity", "140x1b32", "--strategy", "scratch"]  # no real training needed
        args = ["evolve", "--data", str(w.csv), "--run-dir", str(run), *TINY, *fast]
        assert main(args) == 0
    return run


def resume_after(edit: Callable[[Path], object], generations: str = "2") -> Callable[[World, Path], list[str]]:
    return lambda w, tmp: ["evolve", "--resume", str(copy_run(w, tmp, edit)), "--generations", generations]


def report_after(edit: Callable[[Path], object]) -> Callable[[World, Path], list[str]]:
    return lambda w, tmp: ["report", str(copy_run(w, tmp, edit))]


def replace_json(name: str, change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def drop(key: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k != key}


def cache_line(line: bytes) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        with open(run / "cache.jsonl", "ab") as f:
            f.write(line + b"\n")

    return edit


def edit_last_record(**changes) -> Callable[[Path], None]:
    """Append the cache's last record again, changed: the last line wins, so the change is what is read."""

    def edit(run: Path) -> None:
        record = json.loads((run / "cache.jsonl").read_text().splitlines()[-1]) | changes
        with open(run / "cache.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    return edit


RUN_CASES = [
    Case("resume-missing", lambda w, t: ["evolve", "--resume", str(t / "none")], ("{tmp}/none", "not a run directory")),
    Case("resume-a-file", lambda w, t: ["evolve", "--resume", str(write(t / "f", "x"))], ("{tmp}/f",)),
    Case("resume-empty-dir", lambda w, t: ["evolve", "--resume", str(t)], ("{tmp}",)),
    Case("resume-config-corrupt", resume_after(lambda r: write(r / "config.json", "{oops")), ("config.json",)),
    Case("resume-config-binary", resume_after(lambda r: write(r / "config.json", rand_bytes(64))), ("config.json",)),
    Case(
        "resume-config-no-search", resume_after(replace_json("config.json", drop("search"))), ("config.json", "search")
    ),
    Case("resume-config-a-list", resume_after(lambda r: write(r / "config.json", "[1, 2]")), ("config.json",)),
    Case(
        "resume-checkpoint-corrupt", resume_after(lambda r: write(r / "checkpoint.json", "{oops")), ("checkpoint.json",)
    ),
    Case(
        "resume-checkpoint-wrong-shape",
        resume_after(lambda r: write(r / "checkpoint.json", '{"generation": "two"}')),
        ("checkpoint.json",),
    ),
    Case(
        "resume-other-data",
        resume_after(replace_json("config.json", lambda d: d | {"data": "synthetic:300"})),
        ("config.json", "not the data this run started with"),
    ),
    Case(
        "resume-checkpoint-generation-text",
        resume_after(replace_json("checkpoint.json", lambda d: d | {"generation": "1"})),
        ("checkpoint.json", "generation"),
    ),
    Case(
        "resume-checkpoint-row-without-key",
        resume_after(replace_json("checkpoint.json", lambda d: d | {"rows": [{"generation": 0}]})),
        ("checkpoint.json", "row"),
    ),
    Case(
        "resume-checkpoint-no-rows",
        resume_after(replace_json("checkpoint.json", drop("rows"))),
        ("checkpoint.json", "rows"),
    ),
    Case(
        "resume-config-nested-deep",
        resume_after(lambda r: write(r / "config.json", "[" * 100_000 + "]" * 100_000)),
        ("config.json", "nested too deep"),
    ),
    Case("resume-cache-no-key", resume_after(cache_line(b'{"genome": "gap"}')), ("cache.jsonl",)),
    Case(
        "resume-cache-other-genome",
        resume_after(edit_last_record(genome="conv_k3_c4_s1_relu_bn | gap")),
        ("cache.jsonl", "not the one of its cache key"),
    ),  # fmt: skip
    Case("resume-cache-accuracy-inf", resume_after(edit_last_record(val_acc=float("inf"))), ("cache.jsonl", "val_acc")),
    Case("resume-cache-params-text", resume_after(edit_last_record(params="many")), ("cache.jsonl", "params")),
    Case(
        "resume-latency-table-negative",
        resume_after(lambda r: write(r / "latency_table.json", '{"entries": {"__call__": -0.01}}')),
        ("latency_table.json", "__call__"),
    ),
    Case(
        "resume-latency-table-text",
        resume_after(lambda r: write(r / "latency_table.json", '{"entries": {"__call__": "fast"}}')),
        ("latency_table.json", "__call__"),
    ),
    Case("resume-cache-not-utf8", resume_after(cache_line(b'{"key": "\xff\xfe"}')), ("cache.jsonl",)),
    Case("resume-cache-a-list", resume_after(cache_line(b"[1, 2, 3]")), ("cache.jsonl",)),
    Case("resume-generations-neg", resume_after(lambda r: None, "-3"), ("--generations",)),
    Case("report-missing", lambda w, t: ["report", str(t / "none")], ("{tmp}/none",)),
    Case("report-a-file", lambda w, t: ["report", str(write(t / "f", "x"))], ("{tmp}/f",)),
    Case(
        "report-evaluations-corrupt",
        report_after(lambda r: write(r / "evaluations.csv", rand_bytes(300))),
        ("evaluations.csv",),
    ),
    Case(
        "report-evaluations-no-columns",
        report_after(lambda r: write(r / "evaluations.csv", "a,b\n1,2\n")),
        ("evaluations.csv",),
    ),
]


# ---------------------------------------------------------------- train and tune: run directories and flags


def train_run(edit: Callable[[Path], object], *extra: str) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        run = tmp / "run"
        shutil.copytree(w.run, run)
        edit(run)
        return ["train", "--run", str(run), "--epochs", "1", *extra]

    return make


def tune_run(edit: Callable[[Path], object], *extra: str) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        run = tmp / "run"
        shutil.copytree(w.run, run)
        edit(run)
        return ["tune", "--run", str(run), "--trials", "1", "--epochs", "1", *extra]

    return make


def unlink(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def tuned_file(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    """A tuned.json as tuning writes it (the default recipe, adopted), then ``change``d."""
    from dataclasses import asdict

    from nas.training.loop import TrainConfig

    tuned = {"value": 0.5, "params": {}, "train_config": asdict(TrainConfig()), "budget": {"epochs": 6},
             "confirmation": {"adopted": True, "verdict": "won", "runs": {}}}  # fmt: skip
    return lambda run: write(run / "tuned.json", json.dumps(change(tuned)))


def _train_config(**changes) -> Callable[[dict], dict]:
    return lambda t: t | {"train_config": t["train_config"] | changes}


TUNED_DAMAGE = {  # the field named in the error, and how tuned.json is damaged
    "budget-epochs-text": ("budget.epochs", lambda t: t | {"budget": {"epochs": "6"}}),
    "budget-missing": ("budget.epochs", drop("budget")),
    "train-config-list": ("train_config must be a table", lambda t: t | {"train_config": [1]}),
    "lr-text": ("lr must be a number", _train_config(lr="abc")),
    "lr-negative": ("lr > 0", _train_config(lr=-1.0)),
    "augment-text": ("augment must be a number", _train_config(augment="strong")),
    "runs-list": ("runs are tables", lambda t: t | {"confirmation": {"adopted": True, "runs": [1]}}),
    "adopted-text": ("confirmation.adopted", lambda t: t | {"confirmation": {"adopted": "yes"}}),
}


TRAIN_TUNE_CASES = [
    Case("train-run-missing", lambda w, t: ["train", "--run", str(t / "none")], ("{tmp}/none",)),
    Case("train-no-champion", train_run(unlink("champion.json")), ("champion.json",)),
    Case("train-champion-corrupt", train_run(lambda r: write(r / "champion.json", "{")), ("champion.json",)),
    Case(
        "train-champion-no-genome", train_run(lambda r: write(r / "champion.json", "{}")), ("champion.json", "genome")
    ),
    Case("train-config-corrupt", train_run(lambda r: write(r / "config.json", rand_bytes(50))), ("config.json",)),
    Case("train-tuned-corrupt", train_run(lambda r: write(r / "tuned.json", "{")), ("tuned.json",)),
    Case(
        "train-baseline-report-corrupt",
        train_run(lambda r: write(r / "baselines" / "cnn4" / "report.json", '{"ten_crop": 1}')),
        ("baselines/cnn4/report.json", "single_crop"),
        ("run/train_state.pt",),
    ),
    *(
        Case(f"train-tuned-{k}", train_run(tuned_file(change)), ("tuned.json", says))
        for k, (says, change) in TUNED_DAMAGE.items()
    ),
    Case(
        "train-progress-corrupt",
        train_run(lambda r: write(r / "progress.csv", "gen,evals\n0,sixteen\n")),
        ("progress.csv", "not a progress table"),
    ),
    Case("train-epochs-0", train_run(lambda r: None, "--epochs", "0"), ("--epochs",)),
    Case("train-patience-neg", train_run(lambda r: None, "--patience", "-1"), ("--patience",)),
    Case("train-baseline-unknown", train_run(lambda r: None, "--baseline", "resnet"), ("resnet",)),
    Case("train-device", train_run(lambda r: None, "--device", "tpu"), ("tpu",)),
    Case(
        "train-out-is-a-file",
        lambda w, t: [*train_run(lambda r: None)(w, t), "--out", str(write(t / "f", "x"))],
        ("{tmp}/f",),
    ),
    Case("train-data-missing", train_run(lambda r: None, "--data", "/nonexistent.csv"), ("/nonexistent.csv",)),
    Case("tune-run-missing", lambda w, t: ["tune", "--run", str(t / "none")], ("{tmp}/none",), ("none",)),
    Case("tune-storage", tune_run(lambda r: None, "--storage", "notadb://x"), ("--storage", "notadb://x")),
    Case("tune-trials-0", tune_run(lambda r: None, "--trials", "0"), ("--trials",), ("run/tune.db",)),
    Case("tune-epochs-0", tune_run(lambda r: None, "--epochs", "0"), ("--epochs",), ("run/tune.db",)),
    Case("tune-images-neg", tune_run(lambda r: None, "--train-images", "-5"), ("--train-images",), ("run/tune.db",)),
    Case(
        "tune-margin-neg", tune_run(lambda r: None, "--confirm-margin", "-0.1"), ("--confirm-margin",), ("run/tune.db",)
    ),
    Case("tune-no-champion", tune_run(unlink("champion.json")), ("champion.json",), ("run/tune.db",)),
    Case(
        "tune-data-missing",
        tune_run(lambda r: None, "--data", "/nonexistent.csv"),
        ("/nonexistent.csv",),
        ("run/tune.db",),
    ),
]


# ---------------------------------------------------------------- export: checkpoints


def export_checkpoint(content: Callable[[Path], object]) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        content(tmp / "model.pt")
        return ["export", "--checkpoint", str(tmp / "model.pt"), "--out", str(tmp / "out")]

    return make


def truncated_checkpoint(w: World) -> Callable[[Path], object]:
    return lambda p: write(p, (w.run / "model.pt").read_bytes()[:2000])


def export_with_report(change: Callable[[dict], object]) -> Callable[[World, Path], list[str]]:
    """The trained model exported with its report.json beside it, ``change``d."""

    def make(w: World, tmp: Path) -> list[str]:
        write(tmp / "model.pt", (w.run / "model.pt").read_bytes())
        write(tmp / "report.json", json.dumps(change(json.loads((w.run / "report.json").read_text()))))
        return ["export", "--checkpoint", str(tmp / "model.pt"), "--out", str(tmp / "out")]

    return make


REPORT_DAMAGE = {  # the field named in the error, and how report.json is damaged
    "acc-text": ("ten_crop needs acc and f1", lambda r: r | {"ten_crop": {"acc": "0.7", "f1": 0.6}}),
    "acc-over-1": ("single_crop needs acc and f1", lambda r: r | {"single_crop": {"acc": 70.5, "f1": 0.6}}),
    "crop-missing": ("ten_crop", drop("ten_crop")),
    "images-negative": ("images must be a count", lambda r: r | {"images": -3}),
    "per-class-list": ("per_class must be a table", lambda r: r | {"per_class": [1, 2]}),
    "per-class-support-text": (
        "per_class.angry",
        lambda r: r | {"per_class": r["per_class"] | {"angry": r["per_class"]["angry"] | {"support": "ten"}}},
    ),
    "not-a-table": ("not a JSON object", lambda r: [r]),
}


EXPORT_CASES = [
    *(
        Case(f"export-report-{k}", export_with_report(change), ("{tmp}/report.json", says), ("out",))
        for k, (says, change) in REPORT_DAMAGE.items()
    ),
    Case("export-checkpoint-missing", lambda w, t: ["export", "--checkpoint", str(t / "no.pt")], ("{tmp}/no.pt",)),
    Case("export-run-without-model", lambda w, t: ["export", "--run", str(t)], ("{tmp}",)),
    Case(
        "export-checkpoint-random", export_checkpoint(lambda p: write(p, rand_bytes())), ("{tmp}/model.pt",), ("out",)
    ),
    Case("export-checkpoint-empty", export_checkpoint(lambda p: write(p, b"")), ("{tmp}/model.pt",), ("out",)),
    Case(
        "export-checkpoint-truncated",
        lambda w, t: export_checkpoint(truncated_checkpoint(w))(w, t),
        ("{tmp}/model.pt",),
        ("out",),
    ),
    Case(
        "export-checkpoint-a-tensor",
        export_checkpoint(lambda p: torch.save(torch.zeros(3), p)),
        ("{tmp}/model.pt",),
        ("out",),
    ),
    Case(
        "export-checkpoint-bad-genome",
        export_checkpoint(lambda p: torch.save({"genome": "nonsense", "state_dict": {}}, p)),
        ("{tmp}/model.pt",),
        ("out",),
    ),
    Case(
        "export-checkpoint-wrong-weights",
        export_checkpoint(lambda p: torch.save({"genome": GENOME, "state_dict": {"x": torch.zeros(1)}}, p)),
        ("{tmp}/model.pt",),
        ("out",),
    ),
    Case(
        "export-out-is-a-file",
        lambda w, t: ["export", "--checkpoint", str(w.run / "model.pt"), "--out", str(write(t / "f", "x"))],
        ("{tmp}/f",),
    ),
]


# ---------------------------------------------------------------- demo: models, sources and flags


def demo(*extra: str, model: Callable[[World, Path], str] | None = None) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        m = model(w, tmp) if model else str(w.export / "model.onnx")
        out = ["--output", str(tmp / "o.png")] if "--output" not in extra else []
        return ["demo", "--model", m, "--source", str(w.root / "face.png"), "--headless", *out, *extra]

    return make


def export_copy(edit: Callable[[Path], object], name: str = "model.onnx") -> Callable[[World, Path], str]:
    def make(w: World, tmp: Path) -> str:
        shutil.copytree(w.export, tmp / "export")
        edit(tmp / "export")
        return str(tmp / "export" / name)

    return make


def demo_source(source: Callable[[World, Path], str], *extra: str) -> Callable[[World, Path], list[str]]:
    def make(w: World, tmp: Path) -> list[str]:
        argv = demo(*extra)(w, tmp)
        argv[argv.index("--source") + 1] = source(w, tmp)
        return argv

    return make


DEMO_CASES = [
    Case("demo-model-missing", demo(model=lambda w, t: str(t / "m.onnx")), ("{tmp}/m.onnx",), ("o.png",)),
    Case(
        "demo-onnx-random",
        demo(model=export_copy(lambda e: write(e / "model.onnx", rand_bytes()))),
        ("{tmp}/export/model.onnx",),
        ("o.png",),
    ),
    Case(
        "demo-onnx-empty",
        demo(model=export_copy(lambda e: write(e / "model.onnx", b""))),
        ("{tmp}/export/model.onnx",),
        ("o.png",),
    ),
    Case(
        "demo-ts-random",
        demo("--backend", "torchscript", model=export_copy(lambda e: write(e / "model.ts", rand_bytes()))),
        ("{tmp}/export/model.ts",),
        ("o.png",),
    ),
    Case(
        "demo-model-json-corrupt",
        demo(model=export_copy(lambda e: write(e / "model.json", "{"))),
        ("{tmp}/export/model.json",),
        ("o.png",),
    ),
    Case(
        "demo-model-json-three-classes",
        demo(model=export_copy(replace_json("model.json", lambda i: i | {"class_names": ["a", "b", "c"]}))),
        ("{tmp}/export/model.onnx", "gives 7 outputs, model.json names 3 classes"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-class-repeated",
        demo(model=export_copy(replace_json("model.json", lambda i: i | {"class_names": ["a"] * 7}))),
        ("{tmp}/export/model.json", "class_names repeats"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-input-shape-other",
        demo(
            model=export_copy(
                replace_json("model.json", lambda i: i | {"input": i["input"] | {"shape": [1, 1, 40, 40]}})
            )
        ),
        ("{tmp}/export/model.onnx", "does not take the input"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-input-shape-text",
        demo(model=export_copy(replace_json("model.json", lambda i: i | {"input": i["input"] | {"shape": "48x48"}}))),
        ("{tmp}/export/model.json", "input.shape"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-std-zero",
        demo(
            model=export_copy(
                replace_json("model.json", lambda i: i | {"input": i["input"] | {"normalize": {"mean": 0.5, "std": 0}}})
            )
        ),
        ("{tmp}/export/model.json", "positive std"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-file-outside",
        demo(
            model=export_copy(
                replace_json("model.json", lambda i: i | {"files": i["files"] | {"onnx": "../model.onnx"}})
            )
        ),
        ("{tmp}/export/model.json", "plain file names"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-not-a-table",
        demo(model=export_copy(replace_json("model.json", lambda i: [i]))),
        ("{tmp}/export/model.json", "not a table"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-nested-deep",
        demo(model=export_copy(lambda e: write(e / "model.json", "[" * 100_000 + "]" * 100_000))),
        ("{tmp}/export/model.json", "RecursionError"),
        ("o.png",),
    ),
    Case(
        "demo-model-json-missing",
        demo(model=export_copy(unlink("model.json"))),
        ("{tmp}/export/model.json",),
        ("o.png",),
    ),
    Case(
        "demo-folder-without-model",
        demo(model=lambda w, t: str((t / "empty").mkdir() or t / "empty")),
        ("{tmp}/empty",),
        ("o.png",),
    ),
    Case("demo-source-missing", demo_source(lambda w, t: str(t / "none.mp4")), ("{tmp}/none.mp4",), ("o.png",)),
    Case(
        "demo-source-corrupt-image",
        demo_source(lambda w, t: str(write(t / "bad.png", b"not a png"))),
        ("{tmp}/bad.png",),
        ("o.png",),
    ),
    Case(
        "demo-source-corrupt-video",
        demo_source(lambda w, t: str(write(t / "bad.mp4", rand_bytes()))),
        ("{tmp}/bad.mp4",),
        ("o.png",),
    ),
    Case(
        "demo-source-empty-folder",
        demo_source(lambda w, t: str((t / "none").mkdir() or t / "none"), "--output", "{tmp}/outdir"),
        ("{tmp}/none",),
        ("outdir",),
    ),
    Case("demo-detect-width-0", demo("--detect-width", "0"), ("--detect-width",), ("o.png", "o.csv")),
    Case("demo-scale-factor-1", demo("--scale-factor", "1.0"), ("--scale-factor",), ("o.png", "o.csv")),
    Case("demo-min-neighbors-neg", demo("--min-neighbors", "-1"), ("--min-neighbors",), ("o.png", "o.csv")),
    Case("demo-min-face-0", demo("--min-face", "0"), ("--min-face",), ("o.png", "o.csv")),
    Case("demo-detect-every-0", demo("--detect-every", "0"), ("--detect-every",), ("o.png", "o.csv")),
    Case("demo-margin-neg", demo("--margin", "-0.5"), ("--margin",), ("o.png", "o.csv")),
    Case("demo-smoothing-0", demo("--smoothing", "0"), ("--smoothing",), ("o.png", "o.csv")),
    Case("demo-smoothing-2", demo("--smoothing", "2"), ("--smoothing",), ("o.png", "o.csv")),
    Case("demo-max-frames-0", demo("--max-frames", "0"), ("--max-frames",), ("o.png", "o.csv")),
    Case("demo-no-display", lambda w, t: [a for a in demo()(w, t) if a != "--headless"][:-2], ("--output",)),
    Case("demo-backend", demo("--backend", "tflite"), ("--backend",), ("o.png", "o.csv")),
    Case("demo-output-unknown-ext", demo("--output", "{tmp}/x.xyz"), ("{tmp}/x.xyz",), ("x.xyz", "x.csv")),
    Case(
        "demo-output-parent-is-a-file",
        lambda w, t: [*demo()(w, t)[:-2], "--output", str(write(t / "f", "x") / "o.png")],
        ("{tmp}/f",),
    ),
    Case("demo-headless-without-output", lambda w, t: [a for a in demo()(w, t) if a != "--output"][:-1], ("--output",)),
]

CASES = DATA_CASES + SPACE_CASES + GENOME_CASES + FLAG_CASES + RUN_CASES + TRAIN_TUNE_CASES + EXPORT_CASES + DEMO_CASES


def test_the_corpus_is_large_and_its_names_unique():
    assert len(CASES) >= 100 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_malformed_input_is_one_line_naming_it_and_exit_2(case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.make(world, tmp_path)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    # progress lines may come first ("loading data ..."); the error is one line, the last, and the only one
    assert lines and lines[-1].startswith("error: ") and sum(x.startswith("error:") for x in lines) == 1, err
    assert "Traceback" not in err and not any(x.startswith(" ") for x in lines), err
    for s in case.says:
        assert s.replace("{tmp}", str(tmp_path)) in lines[-1], lines[-1]
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} left behind"
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert set(after) <= set(before), f"left behind: {sorted(set(after) - set(before))}"


@pytest.mark.parametrize("name, command", [
    (".lock", "resume"), ("run.log", "resume"), ("cache.jsonl", "resume"), ("checkpoint.json", "resume"),
    ("progress.png", "report"),
])  # fmt: skip
def test_a_link_in_place_of_a_run_file_is_refused_and_what_it_points_to_is_untouched(world, tmp_path, capsys, name,
                                                                                      command):  # fmt: skip
    outside = tmp_path / "outside"

    def link(run: Path) -> None:  # the link's target holds what the file held, so that reading it succeeds
        outside.write_bytes((run / name).read_bytes() if (run / name).exists() else b"precious\n")
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside)

    run = copy_run(world, tmp_path, link)
    before = outside.read_bytes()
    argv = ["evolve", "--resume", str(run), "--generations", "2"] if command == "resume" else ["report", str(run)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and f"{run / name}: is a symbolic link" in err, err
    assert outside.read_bytes() == before


def test_a_space_named_to_climb_out_still_runs_inside_runs(world, tmp_path, monkeypatch):
    import nas.api

    tiny = (Path(__file__).resolve().parents[1] / "search_spaces/tiny.toml").read_text()
    space = write(tmp_path / "space.toml", tiny.replace('name = "tiny"', 'name = "../../../x"'))
    monkeypatch.setattr(nas.api, "RUNS", tmp_path / "runs")
    assert main(["evolve", "--data", str(world.csv), "--space", str(space), *TINY[2:], "--generations", "0",
                 "--fidelity", "140x1b32", "--strategy", "scratch", "--finalists", "0"]) == 0  # fmt: skip
    made = [p for p in (tmp_path / "runs").iterdir()]
    assert len(made) == 1 and made[0].name.endswith("-x-s0") and not (tmp_path / "x").exists()


def _finished(w: World) -> Path:
    """A run that went through every command: searched, tuned, trained and exported (made once)."""
    run = w.root / "finished"
    if not (run / "export" / "model.json").exists():
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(_evolved(w), run)
        assert main(["tune", "--run", str(run), "--trials", "1", "--epochs", "1", "--confirm", "0"]) == 0
        assert main(["train", "--run", str(run), "--epochs", "2"]) == 0  # as COMMANDS trains it
        assert main(["export", "--run", str(run)]) == 0
    return run


COMMANDS = {
    "resume": lambda run: ["evolve", "--resume", str(run), "--generations", "2"],
    "report": lambda run: ["report", str(run)],
    "tune": lambda run: ["tune", "--run", str(run), "--trials", "2", "--epochs", "1", "--confirm", "0", "--resume"],
    "train": lambda run: ["train", "--run", str(run), "--epochs", "2"],
    "export": lambda run: ["export", "--run", str(run)],
}
WRITES = {"resume": "cache.jsonl", "report": "pareto_params.png", "tune": "tuned.json", "train": "report.json",
          "export": "export/model.json"}  # fmt: skip


def _link_each_file_in_turn(w: World, tmp: Path, command: str, names: list[str], capsys) -> None:
    """Each run file in turn a link to a file outside the run: ``command`` may refuse it or read through it,
    never write through it."""
    for i, name in enumerate(names):
        run, outside = tmp / f"{i}" / "run", tmp / f"{i}" / "outside"
        shutil.copytree(_finished(w), run)
        outside.write_bytes((run / name).read_bytes())
        (run / name).unlink()
        (run / name).symlink_to(outside)
        before = outside.read_bytes()
        code = main(COMMANDS[command](run))
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, (name, err[-500:])
        assert outside.read_bytes() == before, f"{command} wrote through a link at {name}"
        shutil.rmtree(tmp / f"{i}")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_never_writes_through_a_link_at_the_file_it_writes(world, tmp_path, capsys, command):
    _link_each_file_in_turn(world, tmp_path, command, [WRITES[command]], capsys)


@pytest.mark.sweep
@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_writes_through_a_link_at_any_file_of_a_finished_run(world, tmp_path, capsys, command):
    names = sorted(str(p.relative_to(_finished(world))) for p in _finished(world).rglob("*") if p.is_file())
    assert {"tuned.json", "report.json", "export/model.onnx", "checkpoint.json"} <= set(names)
    _link_each_file_in_turn(world, tmp_path, command, names, capsys)


@pytest.mark.parametrize("command", ["report", "resume"])
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS, errno.EPERM])
def test_a_disk_that_refuses_a_write_is_one_line_and_replaces_nothing(world, tmp_path, capsys, monkeypatch, command,
                                                                    error):  # fmt: skip
    run = copy_run(world, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.log"}

    def refuse(fd: int) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "fsync", refuse)
    argv = ["evolve", "--resume", str(run), "--generations", "2"] if command == "resume" else ["report", str(run)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {run}/") and f"cannot write ({os.strerror(error)})" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in run.rglob("*.tmp")], "a half-written file was left"


def _numeric_flags() -> list[tuple[str, str, type]]:
    """Every flag of every command that takes a number: (command, flag, its type)."""
    import argparse

    from nas.cli import build_parser
    from nas.settings import finite

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    kinds = {int: int, float: float, finite: float}
    return [(name, a.option_strings[-1], kinds[a.type]) for name, p in sub.choices.items() for a in p._actions
            if a.option_strings and a.type in kinds]  # fmt: skip


REQUIRED = {  # the least each command needs: a missing run or file, so that nothing runs if a flag passes
    "evolve": ["--data", "/nonexistent.csv"],
    "tune": ["--run", "/nonexistent"],
    "train": ["--run", "/nonexistent"],
    "export": ["--run", "/nonexistent"],
    "report": ["/nonexistent"],
    "demo": ["--model", "/nonexistent.onnx", "--source", "/nonexistent.png", "--headless", "--output", "o.png"],
}


def test_every_numeric_flag_of_every_command_refuses_text_fractions_and_non_finite_numbers(capsys):
    """A class, not a case: each number-taking flag, generated from the parsers, given a word, a fraction
    where an integer belongs, or nan / inf / 1e999 (which would pass every check written as a comparison):
    exit 2 and one line naming that flag, before anything is read."""
    flags = _numeric_flags()
    assert len(flags) > 40 and {c for c, _, _ in flags} >= {"evolve", "tune", "train", "demo"}
    for command, flag, kind in flags:
        for value in ["abc", "1.5"] if kind is int else ["abc", "nan", "inf", "-inf", "1e999"]:
            assert main([command, *REQUIRED.get(command, []), flag, value]) == 2, (command, flag, value)
            last = capsys.readouterr().err.strip().splitlines()[-1]
            assert last.startswith("error: ") and flag in last, (command, flag, value, last)


JSON_READERS = {  # every JSON file of a finished run, and a command that reads it
    "config.json": "resume",
    "checkpoint.json": "resume",
    "champion.json": "train",
    "tuned.json": "train",
    "report.json": "export",
    "export/model.json": "demo",
}
DAMAGES = {"missing": ..., "text": "x", "list": [1], "null": None, "infinite": float("inf"), "negative": -1}


def _damaged(w: World, tmp: Path, name: str, key: str, damage: str) -> list[str]:
    """A copy of the finished run whose ``name`` has ``key`` damaged; the command line that reads it."""
    run = tmp / "run"
    shutil.copytree(_finished(w), run)
    replace_json(name, drop(key) if damage == "missing" else lambda d: d | {key: DAMAGES[damage]})(run)
    command = JSON_READERS[name]
    if command == "demo":
        return ["demo", "--model", str(run / "export"), "--source", str(w.root / "face.png"), "--headless",
                "--output", str(tmp / "o.png")]  # fmt: skip
    return COMMANDS[command](run)


def _check_damage(w: World, tmp: Path, cases: list[tuple[str, str, str]], capsys) -> None:
    """The promise for a damaged field: the command runs (the field does not matter to it) or stops with one
    line naming the file; never a traceback."""
    for i, (name, key, damage) in enumerate(cases):
        argv = _damaged(w, tmp / str(i), name, key, damage)
        code = main(argv)
        err = capsys.readouterr().err
        lines = [x for x in err.strip().splitlines() if x.strip()]
        assert code in (0, 2) and "Traceback" not in err, (name, key, damage, err[-400:])
        if code == 2:
            assert lines[-1].startswith("error: ") and Path(name).name in lines[-1], (name, key, damage, lines[-1])
        shutil.rmtree(tmp / str(i))


def test_a_field_of_each_json_run_file_damaged_is_one_line_naming_the_file_or_harmless(world, tmp_path, capsys):
    cases = []
    for name in JSON_READERS:
        content = json.loads((_finished(world) / name).read_text())
        cases.append((name, next(iter(content)), "list"))
    _check_damage(world, tmp_path, cases, capsys)


@pytest.mark.sweep
def test_every_field_of_every_json_run_file_damaged_every_way(world, tmp_path, capsys):
    """A class, generated: each top-level field of each JSON file a finished run keeps, removed or given a
    text, a list, null, an infinite or a negative number, under the command that reads the file."""
    cases = [(name, key, damage) for name in JSON_READERS for key in json.loads((_finished(world) / name).read_text())
             for damage in DAMAGES]  # fmt: skip
    assert len(cases) > 150
    _check_damage(world, tmp_path, cases, capsys)
