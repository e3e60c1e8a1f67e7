"""Real-time expression recognition: Haar-cascade faces, the exported champion, smoothed overlays.

Per frame: detect faces on a downscaled grey frame (the detector is the time budget: ~160 ms at
640x480 with scale factor 1.1 against ~1 ms for the classifier), or, between detections, keep the
tracked boxes; crop each face with a margin, classify all faces in one batch, smooth each face's
probabilities over time (faces are matched across frames by box overlap), and draw the box, the top
label and bars for every class. Sources: a webcam, a video file, an image, or a folder of images.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from nas.errors import NasError

if TYPE_CHECKING:  # the loader and the data module import torch: `nas --help` should not wait for it
    from nas.artifact import Classifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
STAGES = ("detect", "preprocess", "infer", "draw")


@dataclass(frozen=True)
class DemoConfig:
    """Defaults chosen by benchmarks/bench_demo.py (see benchmarks/README.md)."""

    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_face: int = 40  # pixels, in the original frame
    detect_width: int = 320  # the detector runs on a frame downscaled to this width
    detect_every: int = 3  # detect on every Nth frame, keep the tracked boxes in between
    margin: float = 0.1  # widen each face box by this fraction on every side
    smoothing: float = 0.5  # weight of the newest probabilities in the moving average (1: none)
    match_iou: float = 0.3  # a box continues a track when they overlap at least this much


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


def crop_faces(gray: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """(N, 1, 48, 48) uint8 crops, each box widened by ``margin`` and clipped to the frame."""
    from nas.data import face_to_input

    crops = []
    h, w = gray.shape
    for x, y, bw, bh in boxes:
        dx, dy = int(bw * margin), int(bh * margin)
        x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(w, x + bw + dx), min(h, y + bh + dy)
        crops.append(face_to_input(gray[y0:y1, x0:x1]))
    return np.stack(crops) if crops else np.zeros((0, 1, 48, 48), np.uint8)


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
        for t in unmatched:  # keep a lost face for a couple of detections before forgetting it
            t.missed += 1
        self.tracks = current + [t for t in unmatched if t.missed <= 2]
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


def frames(source: str) -> Iterator[np.ndarray]:
    """BGR frames of a webcam index, a video file, an image file or a folder of images."""
    path = Path(source)
    if source.isdigit() or path.suffix.lower() not in IMAGE_SUFFIXES and not path.is_dir():
        if not source.isdigit() and not path.exists():
            raise NasError(f"{source}: video or image not found")
        cap = cv2.VideoCapture(int(source) if source.isdigit() else str(path))
        if not cap.isOpened():
            raise NasError(f"{source}: cannot open {'camera' if source.isdigit() else 'video'}")
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()
        return
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise NasError(f"{source}: no image found")
    for f in files:
        frame = cv2.imread(str(f))
        if frame is None:
            raise NasError(f"{f}: not a readable image")
        yield frame


class Demo:
    """One pipeline; ``process(frame)`` annotates a frame in place and returns its faces."""

    def __init__(self, classifier: Classifier, cfg: DemoConfig = DemoConfig()) -> None:
        self.classifier, self.cfg = classifier, cfg
        self.detector = FaceDetector(cfg)
        self.tracker = Tracker(cfg)
        self.count = 0
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()
        self.fps: float | None = None

    def process(self, frame: np.ndarray) -> list[Track]:
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if self.count % self.cfg.detect_every == 0:
            boxes = self.detector(gray)
        else:
            boxes = np.array([t.box for t in self.tracker.tracks if t.missed == 0]).reshape(-1, 4)
        t1 = time.perf_counter()
        crops = crop_faces(gray, boxes, self.cfg.margin)
        t2 = time.perf_counter()
        probs = self.classifier.predict_proba(crops)
        t3 = time.perf_counter()
        tracks = self.tracker.update(boxes, probs)
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


def run(
    source: str,
    model: str,
    output: str | None = None,
    headless: bool = False,
    cfg: DemoConfig = DemoConfig(),
    backend: str = "onnx",
    max_frames: int | None = None,
) -> Demo:
    """Run the demo; with ``output``, write annotated frames (.mp4/.avi, .png/.jpg or a folder) and a CSV."""
    if not Path(model).exists():
        raise NasError(f"{model}: model not found")
    from nas.artifact import Classifier

    demo = Demo(Classifier(model, backend), cfg)
    writer, csv_file, video = None, None, None
    out = Path(output) if output else None
    try:
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            is_dir = out.suffix == ""
            if is_dir:
                out.mkdir(parents=True, exist_ok=True)
            csv_path = out / "frames.csv" if is_dir else out.with_suffix(".csv")
            csv_file = csv_path.open("w", newline="")
            writer = csv.writer(csv_file)
            writer.writerow(["frame", "time_s", "face", "x", "y", "w", "h", *demo.classifier.class_names])
        start = time.perf_counter()
        for i, frame in enumerate(frames(source)):
            if max_frames is not None and i >= max_frames:
                break
            tracks = demo.process(frame)
            if writer:
                for t in tracks:
                    writer.writerow(
                        [
                            i,
                            f"{time.perf_counter() - start:.4f}",
                            t.id,
                            *map(int, t.box),
                            *(f"{p:.5f}" for p in t.probs),
                        ]
                    )
            if out and out.suffix.lower() in (".mp4", ".avi"):
                if video is None:
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
                    video = cv2.VideoWriter(str(out), fourcc, 25.0, (frame.shape[1], frame.shape[0]))
                video.write(frame)
            elif out and out.suffix == "":
                cv2.imwrite(str(out / f"frame_{i:05d}.png"), frame)
            elif out:
                cv2.imwrite(str(out), frame)  # an image output keeps the last frame
            if not headless:
                cv2.imshow("fer-nas (q to quit)", frame)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
    finally:
        if video is not None:
            video.release()
        if csv_file:
            csv_file.close()
        if not headless:
            cv2.destroyAllWindows()
    return demo
