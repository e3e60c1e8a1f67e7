"""FER2013 splits, the one input preprocessing, and a small synthetic stand-in.

Two on-disk forms are read: the Kaggle CSV (``emotion,pixels,Usage``, plain or gzip) and the image-folder
form (``<root>/train/<class>/*.png``, ``<root>/test/<class>/...``). Images stay in memory as uint8
tensors of shape (N, 1, 48, 48); ``normalize`` is the only place they become floats, and training,
export and the demo all call it, so a deployed model sees exactly what it was trained on.

Split names: ``train`` = Training, ``val`` = PublicTest, ``test`` = PrivateTest. Search and tuning ask
only for ``train`` and ``val``; ``test`` rows are not even decoded unless a caller asks for them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from nas.errors import DataError, first_line

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
SIZE = 48
N_PIXELS = SIZE * SIZE
# Mean and spread of FER2013 grey levels (Training split, measured), used to centre the inputs.
MEAN, STD = 0.508, 0.255
DATA_ENV = "FER2013"


def normalize(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 grey levels -> centred float32; numpy in, numpy out; tensor in, tensor out."""
    x = x.astype(np.float32) if isinstance(x, np.ndarray) else x.float()
    return (x / 255.0 - MEAN) / STD


def face_to_input(gray: np.ndarray) -> np.ndarray:
    """A grey face crop of any size -> the (1, 48, 48) uint8 image the networks were trained on."""
    return cv2.resize(gray, (SIZE, SIZE), interpolation=cv2.INTER_AREA)[None]


@dataclass(frozen=True)
class Split:
    """Images (N, 1, 48, 48) uint8 and labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
        return np.bincount(self.y.numpy(), minlength=num_classes)

    def subset(self, n: int | None, seed: int) -> Split:
        """A stratified, seeded subset of ``n`` images (all of them when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        idx = stratified_indices(self.y.numpy(), n, seed)
        return Split(self.x[idx], self.y[idx])


def stratified_indices(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` items keeping class proportions (largest-remainder rounding), sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / counts.sum()
    take = np.floor(exact).astype(int)
    for i in np.argsort(exact - take)[::-1][: n - take.sum()]:
        take[i] += 1
    picked = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True)
class FerData:
    """The loaded splits, where they came from, and a content fingerprint for caches."""

    splits: dict[str, Split]
    source: str
    fingerprint: str
    skipped_rows: int = 0

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"split {name!r} was not loaded (loaded: {sorted(self.splits)})")
        return self.splits[name]


def resolve_data_path(arg: str | None) -> str:
    """The ``--data`` flag, else the FER2013 environment variable; never a built-in path."""
    value = arg or os.environ.get(DATA_ENV)
    if not value:
        raise DataError(f"no data given: pass --data PATH (CSV, CSV.GZ or image folder) or set {DATA_ENV}")
    return value


def stored_path(spec: str) -> str:
    """A data path as a run keeps it: absolute, so that a resume or a final training from another directory
    finds it (a ``synthetic:`` spec as given)."""
    return spec if spec.startswith("synthetic") else os.path.abspath(os.path.expanduser(spec))


def load(path: str | Path, splits: tuple[str, ...] = ("train", "val"), on_bad: str = "error") -> FerData:
    """Load FER2013 splits from a CSV, an image folder, or ``synthetic:N[:SEED]``.

    ``on_bad="error"`` fails on the first malformed row with file and line; ``"skip"`` drops and counts
    malformed rows. Results are memoised per process, so worker processes parse the file once.
    """
    for s in splits:
        if s not in USAGE:
            raise ValueError(f"unknown split {s!r}; splits are {list(USAGE)}")
    spec = str(path)
    if spec.startswith("synthetic"):
        return _load_synthetic(spec, tuple(splits))
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{p}: data file or folder not found")
    stat = p.stat()
    return _load_cached(str(p.resolve()), stat.st_mtime_ns, stat.st_size, tuple(splits), on_bad)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: int, size: int, splits: tuple[str, ...], on_bad: str) -> FerData:
    p = Path(path)
    if p.is_dir():
        arrays, skipped = _read_folder(p, splits), 0
    elif p.suffix == ".npz":
        arrays, skipped = _read_npz(p, splits), 0
    else:
        arrays, skipped = _read_csv(p, splits, on_bad)
    return _to_ferdata(arrays, str(p), skipped)


def _to_ferdata(arrays: dict[str, tuple[np.ndarray, np.ndarray]], source: str, skipped: int = 0) -> FerData:
    digest = hashlib.sha256()
    out = {}
    for name in sorted(arrays):
        x, y = arrays[name]
        if not len(y):
            raise DataError(f"{source}: the {name} split ({USAGE[name]}) has no images")
        x = np.ascontiguousarray(x, dtype=np.uint8).reshape(-1, 1, SIZE, SIZE)
        y = np.asarray(y, dtype=np.int64)
        digest.update(name.encode() + x.tobytes() + y.tobytes())
        out[name] = Split(torch.from_numpy(x), torch.from_numpy(y))
    return FerData(out, source, digest.hexdigest()[:16], skipped)


# ---------------------------------------------------------------- Kaggle CSV

# a compressed file damaged inside (its header whole): what the decompressors raise
_DAMAGED = (zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def _read_csv(path: Path, splits: tuple[str, ...], on_bad: str) -> tuple[dict, int]:
    try:
        with warnings.catch_warnings():  # a first row longer than the header: pandas would shift its columns
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (expected the header emotion,pixels,Usage and rows)") from None
    except pd.errors.ParserWarning:
        raise DataError(f"{path}:2: more fields than the header's emotion,pixels,Usage") from None
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, *_DAMAGED) as exc:
        raise DataError(f"{path}: cannot read as CSV ({ascii(first_line(exc))[1:-1]})") from None
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected header emotion,pixels,Usage")
    df["line"] = np.arange(len(df)) + 2  # the header is line 1
    bad = _row_problems(df)
    if bad and on_bad == "error":
        line, msg = bad[0]
        more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
        raise DataError(f"{path}:{line}: {msg}{more}")
    keep = df[~df["line"].isin({line for line, _ in bad})]
    wanted = keep[keep["Usage"].isin([USAGE[s] for s in splits])]
    pixels = _parse_pixels(path, wanted)
    out = {}
    for name in splits:
        mask = (wanted["Usage"] == USAGE[name]).to_numpy()
        out[name] = (pixels[mask], wanted["emotion"].to_numpy()[mask].astype(np.int64))
        if not mask.any():
            raise DataError(f"{path}: no rows with Usage {USAGE[name]} (needed for split {name!r})")
    return out, len(bad)


def _row_problems(df: pd.DataFrame) -> list[tuple[int, str]]:
    """(line, message) for every malformed row, checked column-wise so good files stay fast."""
    problems: list[tuple[int, str]] = []
    label_ok = df["emotion"].isin([str(i) for i in range(len(CLASS_NAMES))])
    for line, value in df.loc[~label_ok, ["line", "emotion"]].itertuples(index=False):
        problems.append((line, f"label {_shown(value)} is not an integer 0..6"))
    usage_ok = df["Usage"].isin(list(USAGE.values()))
    for line, value in df.loc[~usage_ok, ["line", "Usage"]].itertuples(index=False):
        problems.append((line, f"unknown Usage {_shown(value)} (expected Training, PublicTest or PrivateTest)"))
    pix = df["pixels"].str.strip()
    shape_ok = pix.str.count(" ").eq(N_PIXELS - 1) & pix.str.fullmatch(r"[0-9 ]*")
    for line, value in df.loc[~shape_ok, ["line", "pixels"]].itertuples(index=False):
        problem = _pixel_problem(value)  # None: the fast test only disliked the spacing
        if problem:
            problems.append((line, problem))
    return sorted(problems)


def _shown(value: str) -> str:
    """A field as an error line shows it: quoted, and cut short (a pixel string is 9 KB)."""
    return repr(value) if len(value) <= 20 else repr(value[:20])[:-1] + "...'"


def _pixel_problem(text: str) -> str | None:
    """What is wrong with one row's pixels, or None when they are 2304 grey levels however spaced."""
    tokens = text.split()
    for i, tok in enumerate(tokens):
        if not (tok.isascii() and tok.isdigit()):  # str.isdigit alone admits full-width and superscript digits
            return f"pixel {i} is {_shown(tok)}, not an integer 0..255"
        if len(tok.lstrip("0")) > 3 or int(tok) > 255:
            return f"pixel {i} is {_shown(tok)}, outside 0..255"
    return None if len(tokens) == N_PIXELS else f"expected {N_PIXELS} pixels, found {len(tokens)}"


def _parse_pixels(path: Path, rows: pd.DataFrame) -> np.ndarray:
    """All pixel strings at once through numpy's C parser: seconds for the whole file."""
    if rows.empty:
        return np.zeros((0, N_PIXELS), np.uint8)
    try:
        values = np.loadtxt(io.StringIO("\n".join(rows["pixels"])), dtype=np.int32, ndmin=2)
    except ValueError as exc:  # a value too long for int32: find its row the slow way
        found = ((r.line, problem) for r in rows.itertuples() if (problem := _pixel_problem(r.pixels)))
        line, problem = next(found, (rows["line"].iloc[0], first_line(exc)))
        raise DataError(f"{path}:{line}: {problem}") from None
    too_big = np.flatnonzero(values.max(axis=1) > 255)
    if too_big.size:
        line = rows["line"].iloc[too_big[0]]
        raise DataError(f"{path}:{line}: pixel value {values[too_big[0]].max()} outside 0..255")
    return values.astype(np.uint8)


# ---------------------------------------------------------------- packed arrays


def save_npz(dataset: FerData, path: str | Path) -> Path:
    """Pack loaded splits into one compressed .npz that loads in about a second (``load`` reads it)."""
    arrays = {f"{name}_{part}": getattr(s, part).numpy() for name, s in dataset.splits.items() for part in "xy"}
    np.savez_compressed(path, **arrays)
    return Path(path)


def _read_npz(path: Path, splits: tuple[str, ...]) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [s for s in splits if f"{s}_x" not in z or f"{s}_y" not in z]
            if missing:
                raise DataError(f"{path}: no split(s) {missing} in this .npz (it has {sorted(z.files)})")
            arrays = {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in splits}
    except (OSError, ValueError, EOFError, *_DAMAGED) as exc:
        raise DataError(f"{path}: not a readable .npz ({ascii(first_line(exc))[1:-1]})") from None
    for s, (x, y) in arrays.items():
        if x.ndim < 2 or y.ndim != 1 or not len(y) or len(x) != len(y) or x[0].size != N_PIXELS:
            raise DataError(
                f"{path}: {s}_x must hold N {SIZE}x{SIZE} images and {s}_y N labels, got {x.shape}, {y.shape}"
            )
        _check_labels(path, f"{s}_y", y)
        _check_grey_levels(path, f"{s}_x", x)
    return arrays


def _check_labels(path: Path, name: str, y: np.ndarray) -> None:
    """Labels are class numbers: text, booleans or fractions are some other file's labels."""
    if y.dtype.kind not in "iuf":
        raise DataError(f"{path}: {name} must hold labels 0..{len(CLASS_NAMES) - 1}, got dtype {y.dtype}")
    bad = y[~np.isin(y, np.arange(len(CLASS_NAMES)))]
    if bad.size:
        raise DataError(f"{path}: {name} has label {bad[0]!r}, not an integer 0..{len(CLASS_NAMES) - 1}")


def _check_grey_levels(path: Path, name: str, x: np.ndarray) -> None:
    """Pixels are whole grey levels 0..255 (as FER2013 and ``save_npz`` have them): images scaled to [0, 1]
    would become black and white, and wider integers would wrap, without a word."""
    if x.dtype == np.uint8:
        return
    if x.dtype.kind not in "iuf":
        raise DataError(f"{path}: {name} must hold grey levels 0..255, got dtype {x.dtype}")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not (low >= 0 and high <= 255) or (x.dtype.kind == "f" and not np.array_equal(x, np.round(x))):
        hint = "; multiply images scaled to [0, 1] by 255" if x.dtype.kind == "f" and high <= 1 else ""
        raise DataError(
            f"{path}: {name} must hold whole grey levels 0..255, got {x.dtype} values in [{low:g}, {high:g}]{hint}"
        )


# ---------------------------------------------------------------- image folders


def _read_folder(root: Path, splits: tuple[str, ...]) -> dict:
    """``train/``, ``test/`` and optional ``val/``; without ``val/``, 10% of train is held out.

    The Kaggle image-folder release has no PublicTest/PrivateTest distinction, so its ``test/`` is the
    test split and validation is a seeded, stratified slice of ``train/`` that training never sees.
    """

    def read(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        if not split_dir.is_dir():
            what = "not a folder" if split_dir.exists() else "folder not found"
            raise DataError(f"{split_dir}: {what} (expected {root}/<split>/<class>/*.png)")
        unknown = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and d.name not in CLASS_NAMES)
        if unknown:
            raise DataError(f"{split_dir / unknown[0]}: unknown class folder (classes are {', '.join(CLASS_NAMES)})")
        misplaced = [split_dir / c for c in CLASS_NAMES if (split_dir / c).exists() and not (split_dir / c).is_dir()]
        if misplaced:
            raise DataError(f"{misplaced[0]}: a file where the class folder {misplaced[0].name}/ belongs")
        xs, ys = [], []
        for label, name in enumerate(CLASS_NAMES):
            files = sorted(f for f in (split_dir / name).glob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
            for f in files:
                img = _read_image(f)
                xs.append(img if img.shape == (SIZE, SIZE) else face_to_input(img)[0])
                ys.append(label)
        if not xs:
            raise DataError(f"{split_dir}: no images in any of the class folders {list(CLASS_NAMES)}")
        return np.stack(xs), np.array(ys)

    out = {}
    val_dir = next((root / d for d in ("val", "validation", "PublicTest") if (root / d).exists()), None)
    if "train" in splits or ("val" in splits and val_dir is None):
        x, y = read(root / "train")
        if val_dir is None:
            held = np.zeros(len(y), bool)
            held[stratified_indices(y, len(y) // 10, seed=0)] = True
            out["train"], out["val"] = (x[~held], y[~held]), (x[held], y[held])
        else:
            out["train"] = (x, y)
    if "val" in splits and val_dir is not None:
        out["val"] = read(val_dir)
    if "test" in splits:
        out["test"] = read(root / "test")
    return {k: v for k, v in out.items() if k in splits}


def _read_image(f: Path) -> np.ndarray:
    """One image as grey levels; OpenCV's own complaints stay quiet, the error line names the file."""
    try:
        raw = np.fromfile(f, np.uint8)
    except OSError as exc:  # a dangling link, a folder named like an image
        raise DataError(f"{f}: cannot read ({exc.strerror or exc})") from None
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        img = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if img is None:
        raise DataError(f"{f}: not a readable image")
    return img


# ---------------------------------------------------------------- synthetic stand-in


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` learnable 48x48 'faces': the class decides the mouth, brows and eyes.

    Position, size, brightness and noise vary, so a network must learn shapes, not pixels. Used by tests
    and smoke runs so that nothing needs FER2013.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASS_NAMES)
    rng.shuffle(y)
    x = np.empty((n, SIZE, SIZE), np.uint8)
    for i, label in enumerate(y):
        x[i] = _draw_face(int(label), rng)
    return x, y


def _draw_face(label: int, rng: np.random.Generator) -> np.ndarray:
    img = np.full((SIZE, SIZE), rng.integers(20, 70), np.uint8)
    cx, cy = 24 + rng.integers(-3, 4), 24 + rng.integers(-3, 4)
    skin = int(rng.integers(150, 220))
    cv2.ellipse(img, (cx, cy), (16, 20), 0, 0, 360, skin, -1)
    dark = int(rng.integers(0, 60))
    eye_r = 4 if label in (2, 5) else 2  # fear and surprise: wide eyes
    for dx in (-7, 7):
        cv2.circle(img, (cx + dx, cy - 5), eye_r, dark, -1)
    tilt = {0: 3, 4: -2}.get(label, 0)  # angry: brows down inwards; sad: up inwards
    for sign in (-1, 1):
        inner, outer = (cx + sign * 3, cy - 10 + tilt), (cx + sign * 11, cy - 10 - tilt)
        cv2.line(img, inner, outer, dark, 1)
    my = cy + 9
    if label == 3:
        cv2.ellipse(img, (cx, my - 2), (8, 5), 0, 0, 180, dark, 2)  # smile
    elif label == 4:
        cv2.ellipse(img, (cx, my + 3), (8, 5), 0, 180, 360, dark, 2)  # frown
    elif label == 5:
        cv2.ellipse(img, (cx, my), (4, 6), 0, 0, 360, dark, 2)  # open mouth
    elif label == 1:
        pts = np.array([[cx - 8, my], [cx - 4, my - 3], [cx, my], [cx + 4, my - 3], [cx + 8, my]], np.int32)
        cv2.polylines(img, [pts], False, dark, 2)  # wavy mouth
    else:
        cv2.line(img, (cx - 7, my), (cx + 7, my), dark, 2)
    noise = rng.normal(0, 12, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def synthetic_splits(n: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """80/10/10 train/val/test split of ``synthetic(n, seed)``."""
    x, y = synthetic(n, seed)
    a, b = int(n * 0.8), int(n * 0.9)
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


def write_csv(path: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write splits in the Kaggle FER2013 CSV form (gzip when the name ends in .gz)."""
    rows = []
    for name, (x, y) in splits.items():
        for img, label in zip(x, y):
            rows.append((int(label), " ".join(map(str, img.reshape(-1))), USAGE[name]))
    path = Path(path)
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False)
    return path


@functools.lru_cache(maxsize=4)
def _load_synthetic(spec: str, splits: tuple[str, ...]) -> FerData:
    parts = spec.split(":")
    try:
        n = int(parts[1]) if len(parts) > 1 else 2000
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise DataError(f"{spec}: expected synthetic[:N[:SEED]]") from None
    if n < 30 or parts[0] != "synthetic":
        raise DataError(f"{spec}: expected synthetic[:N[:SEED]] with N >= 30 (every split needs images)")
    arrays = synthetic_splits(n, seed)
    return _to_ferdata({k: arrays[k] for k in splits}, spec)
