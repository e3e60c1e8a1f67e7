"""Real-time expression recognition: Haar-cascade faces, the exported champion, smoothed overlays.

Per frame: detect faces on a downscaled grey frame every few frames (the detector is the time budget:
~120 ms at 640x480 with scale factor 1.1 against ~1 ms for the classifier), and look for every tracked
face again in a small region around its last box on every frame, holding its box for a few frames when
it is not found; crop each face with a margin, classify all faces in one batch, smooth each face's
probabilities over time (faces are matched across frames by box overlap), and draw the box, the top
label and bars for every class. Sources: a webcam, a video file, an image, or a folder of images.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from nas.errors import NasError, SettingError
from nas.rundir import atomic_write, make_dir

if TYPE_CHECKING:  # the loader and the data module import torch: `nas --help` should not wait for it
    from nas.deploy.classifier import Classifier

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
STAGES = ("detect", "preprocess", "infer", "draw")


@dataclass(frozen=True)
class DemoConfig:
    """Defaults chosen on the seeded test video for recall first (benchmarks/results/demo_video.md): 96.6%
    of the frames in which full-resolution Haar finds a face, at 37 fps at 640x480 on one core."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: int = 40  # pixels, in the original frame
    detect_width: int = 640  # the detector runs on a frame downscaled to this width
    detect_every: int = 2  # detect on every Nth frame, follow the tracked faces in between
    margin: float = 0.1  # widen each face box by this fraction on every side
    smoothing: float = 0.5  # weight of the newest probabilities in the moving average (1: none)
    match_iou: float = 0.3  # a box continues a track when they overlap at least this much
    # every frame, each tracked face that no whole-frame detection found is looked for again in a region
    # around its last box (a small, cheap search); one not found there keeps its box for this many frames
    hold: int = 3

    def __post_init__(self) -> None:
        rules = (
            ("scale_factor", self.scale_factor > 1, "> 1"),
            ("min_neighbors", self.min_neighbors >= 0, ">= 0"),
            ("min_face", self.min_face >= 1, ">= 1"),
            ("detect_width", self.detect_width >= 16, ">= 16"),
            ("detect_every", self.detect_every >= 1, ">= 1"),
            ("margin", 0 <= self.margin <= 1, "in 0..1"),
            ("smoothing", 0 < self.smoothing <= 1, "in (0, 1]"),
            ("match_iou", 0 < self.match_iou <= 1, "in (0, 1]"),
            ("hold", self.hold >= 0, ">= 0"),
        )
        for name, ok, legal in rules:
            if not ok:
                raise SettingError(f"--{name.replace('_', '-')} must be {legal}, got {getattr(self, name):g}")


class FaceDetector:
    def __init__(self, cfg: DemoConfig) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise NasError(f"{path}: cannot load OpenCV's Haar cascade")
        self.cfg = cfg

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        """Face boxes (N, 4) as x, y, w, h in the coordinates of ``gray``."""
        scale = min(1.0, self.cfg.detect_width / gray.shape[1])
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        min_size = max(12, int(self.cfg.min_face * scale))
        boxes = self.cascade.detectMultiScale(
            small, self.cfg.scale_factor, self.cfg.min_neighbors, minSize=(min_size, min_size)
        )
        return (np.asarray(boxes, float).reshape(-1, 4) / scale).round().astype(int)

    def near(self, gray: np.ndarray, box: np.ndarray, reach: float = 0.5) -> np.ndarray | None:
        """The face in a region around ``box`` (widened by ``reach`` of its size on every side), searched
        at a resolution where that face is about 48 pixels wide, at sizes from 0.6x to 1.6x of it; None
        when there is none. Far cheaper than a whole frame."""
        w = int(box[2])
        x0, y0, x1, y1 = widened(box, reach, gray.shape)
        roi = gray[y0:y1, x0:x1]
        if min(roi.shape) < 12:
            return None
        scale = min(1.0, 48 / max(w, 1))
        small = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else roi
        side = w * scale
        lo, hi = max(12, int(side * 0.6)), max(13, int(side * 1.6))
        found = self.cascade.detectMultiScale(
            small, self.cfg.scale_factor, self.cfg.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
        )
        if len(found) == 0:
            return None
        boxes = np.asarray(found, float).reshape(-1, 4) / scale + [x0, y0, 0, 0]
        return boxes[np.argmax([iou(b, box) for b in boxes])].round().astype(int)


def widened(box: np.ndarray, by: float, shape: tuple[int, ...] | None = None) -> tuple[int, int, int, int]:
    """Corners (x0, y0, x1, y1) of an (x, y, w, h) box widened by ``by`` of its size on every side, clipped
    to a frame of ``shape`` where one is given."""
    x, y, w, h = (int(v) for v in box)
    dx, dy = int(w * by), int(h * by)
    if shape is None:
        return x - dx, y - dy, x + w + dx, y + h + dy
    return max(0, x - dx), max(0, y - dy), min(shape[1], x + w + dx), min(shape[0], y + h + dy)


def crop_faces(gray: np.ndarray, boxes: np.ndarray, margin: float, size: tuple[int, int] = (48, 48)) -> np.ndarray:
    """(N, 1, H, W) uint8 crops of ``size`` (the model's input), each box widened by ``margin``, resized as the
    training images were (area interpolation); where the widened box leaves the frame, the frame's edge is
    repeated, so that a face at the edge keeps its proportions rather than being stretched."""
    crops = []
    for box in boxes:
        x0, y0, x1, y1 = widened(box, margin, gray.shape)
        wx0, wy0, wx1, wy1 = widened(box, margin)
        pad = (y0 - wy0, wy1 - y1, x0 - wx0, wx1 - x1)  # top, bottom, left, right: outside the frame
        face = cv2.copyMakeBorder(gray[y0:y1, x0:x1], *pad, cv2.BORDER_REPLICATE) if any(pad) else gray[y0:y1, x0:x1]
        crops.append(cv2.resize(face, size[::-1], interpolation=cv2.INTER_AREA)[None])
    return np.stack(crops) if crops else np.zeros((0, 1, *size), np.uint8)


def as_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A picture as the detector and the classifier take it, 8-bit grey: from grey, BGR or BGRA, of 8 or 16
    bits (16-bit kept to its high byte); anything else is one line naming it."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if image.dtype != np.uint8 or channels not in (1, 3, 4) or image.size == 0:
        raise NasError(f"{name}: not a picture: 8- or 16-bit grey, BGR or BGRA expected, got {image.dtype} "
                       f"{'x'.join(map(str, image.shape))}")  # fmt: skip
    if channels == 1:
        return image.reshape(image.shape[:2])
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray
    probs: np.ndarray
    missed: int = 0


@dataclass
class Tracker:
    """Greedy IoU matching of boxes to tracks, with an exponential moving average of probabilities."""

    cfg: DemoConfig
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, boxes: np.ndarray, probs: np.ndarray) -> list[Track]:
        a, unmatched = self.cfg.smoothing, list(self.tracks)
        current = []
        for box, p in zip(boxes, probs):
            best = max(unmatched, key=lambda t: iou(t.box, box), default=None)
            if best is not None and iou(best.box, box) >= self.cfg.match_iou:
                unmatched.remove(best)
                best.box, best.probs, best.missed = box, a * p + (1 - a) * best.probs, 0
                current.append(best)
            else:
                current.append(Track(self.next_id, box, p.copy()))
                self.next_id += 1
        for t in unmatched:  # keep a lost face for ``hold`` frames before forgetting it
            t.missed += 1
        self.tracks = current + [t for t in unmatched if t.missed <= self.cfg.hold]
        return current


def draw(frame: np.ndarray, tracks: list[Track], class_names: list[str], fps: float | None) -> None:
    """Box, top label with probability, and a bar per class beside the box."""
    for t in tracks:
        x, y, w, h = (int(v) for v in t.box)
        top = int(np.argmax(t.probs))
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 220, 0), 2)
        cv2.putText(
            frame,
            f"{class_names[top]} {t.probs[top]:.0%}",
            (x, max(15, y - 8)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (0, 220, 0),
            2,
            cv2.LINE_AA,
        )
        # the bars go under the box (faces side by side keep their panels apart), or above it at the bottom edge
        height = 14 * len(class_names)
        top_y = y + h + 4 if y + h + 4 + height <= frame.shape[0] else max(0, y - height - 24)
        bx = min(max(0, x), max(0, frame.shape[1] - 122))
        panel = frame[top_y : top_y + height, bx : bx + 122]
        panel[:] = (panel * 0.35).astype(frame.dtype)  # darken behind the bars so they stay readable
        for i, (name, p) in enumerate(zip(class_names, t.probs)):
            by = top_y + i * 14
            cv2.rectangle(
                frame, (bx + 58, by), (bx + 58 + int(p * 60), by + 10), (0, 220, 0) if i == top else (200, 200, 200), -1
            )
            cv2.putText(frame, name[:8], (bx, by + 9), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(frame, f"{fps:.1f} fps", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2, cv2.LINE_AA)


@dataclass
class Frame:
    """One picture to annotate: its name (an image's file stem, else ``frame_00001``), its time in the source
    (a video's own clock; seconds since the start for a camera; 0 for images), and whether it continues the
    previous frame (tracking and smoothing carry over) or is a picture of its own (an image of a folder)."""

    image: np.ndarray
    name: str
    time_s: float
    continues: bool


def _image_files(folder: Path) -> list[Path]:
    """A folder's images, by name; two of one stem are refused, the outputs and the CSV being named by it."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NasError(f"{folder}: no image ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    for a, b in zip(files, files[1:]):
        if a.stem == b.stem:
            raise NasError(f"{folder}: {a.name} and {b.name} share the name {a.stem!r}, which names the outputs; "
                           "rename one")  # fmt: skip
    return files


def is_images(source: str) -> bool:
    """Whether a source is pictures of their own (an image, a folder of them), not a video or a camera."""
    path = Path(source)
    return not source.isdigit() and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES)


class Source:
    """A webcam index, a video file, an image file or a folder of images, opened (and its first frame read)
    at once, so a source that cannot be read fails before any output is created."""

    def __init__(self, source: str) -> None:
        self.source, path = source, Path(source)
        self.is_images = is_images(source)
        self.fps: float | None = None
        self.inputs: list[Path] = [] if source.isdigit() else [path]  # the files read (never written over)
        self.skipped: list[Path] = []  # a folder's unreadable images
        if not source.isdigit() and not path.exists():
            raise NasError(f"{source}: video or image not found")
        if self.is_images:
            self.inputs = _image_files(path) if path.is_dir() else [path]
            self._images = self._readable(folder=path.is_dir())
            self._first = next(self._images, None)
            if self._first is None:
                what = "no readable image in this folder" if path.is_dir() else "not a readable image"
                raise NasError(f"{source}: {what}")
        else:
            self._cap = cv2.VideoCapture(int(source) if source.isdigit() else str(path))
            ok, frame = self._cap.read() if self._cap.isOpened() else (False, None)
            if not ok:
                self._cap.release()
                raise NasError(f"{source}: cannot open {'camera' if source.isdigit() else 'video'}")
            fps = self._cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if not source.isdigit() and 0 < fps < 1000 else None
            self._first = frame

    def _readable(self, folder: bool) -> Iterator[tuple[Path, np.ndarray]]:
        """The images with their pictures; in a folder, an unreadable one is said, skipped and kept in
        ``skipped`` (the run ends with an error naming it, the others written)."""
        for f in self.inputs:
            frame = cv2.imread(str(f))
            if frame is not None:
                yield f, frame
            elif folder:
                log.warning(f"{f}: not a readable image; skipped")
                self.skipped.append(f)

    def __iter__(self) -> Iterator[Frame]:
        if self.is_images:
            for f, frame in itertools.chain([self._first], self._images):
                yield Frame(frame, f.stem, 0.0, False)
            return
        start = time.perf_counter()
        frame, i = self._first, 0
        try:
            while frame is not None:
                t = i / self.fps if self.fps else time.perf_counter() - start
                yield Frame(frame, f"frame_{i + 1:05d}", t, True)
                ok, frame = self._cap.read()
                frame, i = (frame if ok else None), i + 1
        finally:
            self._cap.release()


class Demo:
    """One pipeline; ``process(frame)`` annotates a frame in place and returns its faces."""

    def __init__(self, classifier: Classifier, cfg: DemoConfig = DemoConfig()) -> None:
        self.classifier, self.cfg = classifier, cfg
        self.detector = FaceDetector(cfg)
        self.tracker = Tracker(cfg)
        self.count = 0
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()
        self._since_detect = 0  # frames since the last detection
        self.fps: float | None = None

    def restart(self) -> None:
        """The next frame is a picture of its own (another image): no track or smoothing carries over into it,
        and it is searched for faces whatever ``detect_every`` says."""
        self.tracker = Tracker(self.cfg, next_id=self.tracker.next_id)
        self._since_detect = 0

    def _find(self, gray: np.ndarray, whole: bool) -> tuple[np.ndarray, set[int]]:
        """This frame's face boxes and the ids of the tracks whose box is only held: the faces of a
        whole-frame detection (every ``detect_every`` frames), and each live track that is not among them
        found again near its last box; a track found in neither keeps its last box for up to ``hold`` frames."""
        found = list(self.detector(gray)) if whole else []
        held: set[int] = set()
        for t in self.tracker.tracks:
            if any(iou(b, t.box) >= self.cfg.match_iou for b in found):
                continue
            again = self.detector.near(gray, t.box)
            if again is not None:
                found.append(again)
            elif t.missed < self.cfg.hold:
                found.append(t.box)
                held.add(t.id)
        return np.array(found, int).reshape(-1, 4), held

    def process(self, frame: np.ndarray) -> list[Track]:
        t0 = time.perf_counter()
        gray = as_gray(frame)
        detect = self._since_detect % self.cfg.detect_every == 0
        self._since_detect += 1
        boxes, held = self._find(gray, detect)
        t1 = time.perf_counter()
        crops = crop_faces(gray, boxes, self.cfg.margin, self.classifier.input_size)
        t2 = time.perf_counter()
        probs = self.classifier.predict_proba(crops)
        t3 = time.perf_counter()
        before = {id(t): (t.missed, t.probs) for t in self.tracker.tracks}
        tracks = self.tracker.update(boxes, probs)
        for t in tracks:  # a held box is the track's own: it continues the track but counts as a miss, and
            if t.id in held and id(t) in before:  # what it shows where no face was found is no expression
                missed, t.probs = before[id(t)]
                t.missed = missed + 1
        draw(frame, tracks, self.classifier.class_names, self.fps)
        t4 = time.perf_counter()
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            self.seconds[stage] += dt
        now = time.perf_counter()
        instant = 1.0 / max(now - self._last, 1e-6)
        self.fps = instant if self.fps is None else 0.9 * self.fps + 0.1 * instant
        self._last = now
        self.count += 1
        return tracks


# stills: the detector at full resolution with a fine scale step (the demo's reference settings)
STILL = DemoConfig(scale_factor=1.1, min_neighbors=5, min_face=30, detect_width=10**6)


def analyze(
    image: str | Path | np.ndarray,
    model: str | Path | Classifier | None = None,
    cfg: DemoConfig = STILL,
    backend: str = "onnx",
) -> list[dict]:
    """The faces in one picture (a path, or a BGR or grey array) with their expressions, largest face first:
    ``[{"box": (x, y, w, h), "expression": "happy", "probabilities": {"angry": 0.01, ...}}]``.

    ``model``: an export folder, its ``model.onnx`` or a loaded ``Classifier`` (load it once for many images);
    default: the model that ships with the package.
    """
    from nas.deploy.classifier import Classifier

    classifier = model if isinstance(model, Classifier) else Classifier(model, backend)
    if isinstance(image, np.ndarray):
        gray = as_gray(image, "the image array")
    else:
        if not Path(image).exists():
            raise NasError(f"{image}: not found")
        frame = cv2.imread(str(image))
        if frame is None:
            raise NasError(f"{image}: not a readable image")
        gray = as_gray(frame, str(image))
    boxes = FaceDetector(cfg)(gray)
    boxes = boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")] if len(boxes) else boxes
    probs = classifier.predict_proba(crop_faces(gray, boxes, cfg.margin, classifier.input_size))
    return [
        {
            "box": tuple(int(v) for v in box),
            "expression": classifier.class_names[int(np.argmax(p))],
            "probabilities": {c: float(v) for c, v in zip(classifier.class_names, p)},
        }
        for box, p in zip(boxes, probs)
    ]


VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # output container -> codec


def has_display() -> bool:
    """Whether a window can be shown (on Linux: an X11 or Wayland display is set)."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(
    source: str,
    model: str | None = None,
    output: str | None = None,
    headless: bool = False,
    cfg: DemoConfig | None = None,
    backend: str = "onnx",
    max_frames: int | None = None,
    **changes: float | int,
) -> Demo:
    """Run the demo; ``output``: a video (.mp4/.avi, at the source's frame rate), an image (.png/.jpg: the last
    frame), a folder (every frame, named after its input) or a .csv alone. Every output but a .csv comes with a
    CSV of every face beside it (``<output>.csv``, or ``frames.csv`` in the folder).

    Settings, the model and the source are all checked before anything is written, and no output may be a
    file the run reads; every output appears only complete (the image, the video and the CSV when the run
    ends, also on Ctrl-C). An unreadable image of a folder is skipped, the others written, and the run ends
    with an error naming it. ``cfg``: by default ``STILL`` for pictures (as ``analyze`` finds faces), else
    ``DemoConfig()``; ``changes``: its fields set on top."""
    cfg = replace(cfg or (STILL if is_images(source) else DemoConfig()), **changes)
    if max_frames is not None and max_frames < 1:
        raise SettingError(f"--max-frames must be >= 1, got {max_frames}")
    out = Path(output) if output else None
    kind = None if out is None else _output_kind(out)
    if not headless and not has_display():
        if out is None:
            raise NasError("no display to show the window on (DISPLAY is not set) and no --output to write to")
        log.warning("no display to show the window on (DISPLAY is not set): running headless")
        headless = True
    from nas.deploy.classifier import Classifier

    demo = Demo(Classifier(model, backend), cfg)
    frames = Source(source)
    outputs, finished = _Outputs(out, kind, demo.classifier.class_names, frames), False
    try:
        for i, f in enumerate(frames):
            if max_frames is not None and i >= max_frames:
                break
            if not f.continues:
                demo.restart()
            tracks = demo.process(f.image)
            outputs.write(i, f, tracks)
            if not headless:
                cv2.imshow("fer-nas (q to quit)", f.image)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
        finished = True
    except KeyboardInterrupt:
        finished = True  # what was processed is kept
    finally:
        outputs.close(finished)
        if not headless:
            cv2.destroyAllWindows()
    if frames.skipped:
        more = f" (and {len(frames.skipped) - 1} more)" if len(frames.skipped) > 1 else ""
        raise NasError(f"{frames.skipped[0]}: not a readable image{more}; skipped, the other images written")
    return demo


class _Outputs:
    """Where the annotated frames go (a video, a folder, the last frame as an image) and the CSV of every face.
    Nothing the run reads is written over; each file appears whole: a folder's images one by one, the image,
    the video (written as a hidden ``.part``) and the CSV (``.part``) when the run ends."""

    def __init__(self, out: Path | None, kind: str | None, class_names: list[str], source: Source) -> None:
        self.out, self.kind, self.fps, self.video, self.last, self.size = out, kind, source.fps, None, None, (0, 0)
        self.csv = None if out is None else out / "frames.csv" if kind == "folder" else out.with_suffix(".csv")
        if out is not None:
            _refuse_overwriting(self._targets(source.inputs), source.inputs)
            make_dir(out if kind == "folder" else out.parent)
        self.part = None if self.csv is None else self.csv.with_name(self.csv.name + ".part")
        self.moving = None if kind != "video" else out.with_name(f".{out.stem}.part{out.suffix}")
        self.file = self.part.open("w", newline="") if self.part else None
        self.writer = csv.writer(self.file) if self.file else None
        if self.writer:
            self.writer.writerow(["frame", "name", "time_s", "face", "x", "y", "w", "h", *class_names])

    def _targets(self, inputs: list[Path]) -> list[Path]:
        named = [self.out / f"{f.stem}.png" for f in inputs] if self.kind == "folder" else [self.out]
        return [p for p in (*named, self.csv) if p is not None]

    def write(self, i: int, f: Frame, tracks: list[Track]) -> None:
        frame = f.image
        for t in tracks if self.writer else ():
            self.writer.writerow([i, f.name, f"{f.time_s:.3f}", t.id, *map(int, t.box), *(f"{p:.5f}" for p in t.probs)])
        if self.kind == "video":
            if self.video is None:
                codec = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.out.suffix.lower()])
                self.size = (frame.shape[1], frame.shape[0])
                self.video = cv2.VideoWriter(str(self.moving), codec, self.fps or 25.0, self.size)
                if not self.video.isOpened():
                    raise NasError(f"{self.out}: cannot write a video there")
            self.video.write(letterboxed(frame, self.size))
        elif self.kind == "folder":
            write_image(self.out / f"{f.name}.png", frame)
        elif self.kind == "image":
            self.last = frame  # an image output keeps the last frame, written at the end

    def close(self, finished: bool) -> None:
        """The video and the image put in place, the CSV renamed into place, if the run finished; else the
        partial files removed and whatever was there before left as it was."""
        if self.video is not None:
            self.video.release()
            _settle(self.moving, self.out, finished)
        if finished and self.last is not None:
            write_image(self.out, self.last)
        if self.file:
            self.file.close()
            _settle(self.part, self.csv, finished)


def _settle(part: Path, path: Path, finished: bool) -> None:
    """A file written under another name put in place when the run finished, else removed."""
    if finished:
        os.replace(part, path)
    else:
        part.unlink(missing_ok=True)


def _refuse_overwriting(targets: list[Path], inputs: list[Path]) -> None:
    read = {p.resolve() for p in inputs}
    clash = next((p for p in targets if p.resolve() in read), None)
    if clash is not None:
        raise SettingError(f"{clash}: is what the demo reads; name another --output")


def write_image(path: Path, frame: np.ndarray) -> None:
    """An annotated frame as the image file ``path`` names (by its suffix), written whole."""
    ok, encoded = cv2.imencode(path.suffix, frame)
    if not ok:
        raise NasError(f"{path}: cannot encode an image as {path.suffix}")
    atomic_write(path, encoded.tobytes())


def letterboxed(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` scaled to fit ``size`` (width, height), centred on black: a video takes one size of frame."""
    w, h = size
    if frame.shape[1] == w and frame.shape[0] == h:
        return frame
    scale = min(w / frame.shape[1], h / frame.shape[0])
    fw, fh = max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - fw) // 2, (h - fh) // 2
    canvas[y : y + fh, x : x + fw] = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
    return canvas


def _output_kind(out: Path) -> str:
    suffix = out.suffix.lower()
    if out.is_dir():
        return "folder"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == ".csv":
        return "csv"
    if suffix == "" and not out.is_file():
        return "folder"
    raise SettingError(
        f"{out}: unknown output type; write out.mp4 or out.avi (video), out.png (last frame), a folder "
        "(every frame) or out.csv (the faces alone)"
    )
