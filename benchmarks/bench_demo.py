"""End-to-end demo speed at 640x480 on one thread, split into detection, preprocessing, inference, drawing.

With ``--video`` (the seeded test video of ``benchmarks/demo_video.py``): for each setting, the frame rate
and the recall against full-resolution Haar (scale factor 1.1, 5 neighbours, every frame): the share of
the frames in which the reference finds a face where the demo shows one, and the share of the frames
without a reference face where it shows one anyway (false frames).

Without it: real photos letterboxed to 640x480 and shifted a few pixels per frame, and each detector
setting's faces on the photos against the reference's count (see PROVENANCE.md).

    python benchmarks/demo_video.py --faces ../shared/data/faces --out runs/demo_video.avi
    python benchmarks/bench_demo.py --faces ../shared/data/faces --video runs/demo_video.avi
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from nas.deploy.classifier import Classifier
from nas.deploy.demo import STILL, Demo, DemoConfig, FaceDetector

GRID = [  # scale factor, detector width, detect every Nth frame
    (1.1, 640, 1),
    (1.3, 640, 1),
    (1.1, 320, 1),
    (1.2, 320, 1),
    (1.2, 320, 3),
    (1.2, 320, 5),
]


def letterbox(img: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    scale = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def video(photos: list[np.ndarray], frames_per_photo: int) -> list[np.ndarray]:
    out = []
    for img in photos:
        for i in range(frames_per_photo):
            out.append(np.roll(letterbox(img), (i % 7 - 3, i % 5 - 2), axis=(0, 1)))
    return out


VIDEO_GRID = [  # scale factor, detector width, detect every Nth frame, hold (frames a lost face is kept)
    (1.2, 320, 3, 0),
    (1.2, 320, 3, 3),
    (1.1, 320, 3, 3),
    (1.2, 480, 3, 3),
    (1.1, 480, 3, 3),
    (1.2, 320, 1, 3),
    (1.1, 640, 2, 3),
]


def read_video(path: str) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def video_table(frames: list[np.ndarray], classifier: Classifier) -> list[str]:
    """Recall against the reference, false frames and fps for every setting of VIDEO_GRID."""
    reference = FaceDetector(STILL)  # full-resolution Haar, fine scale step, every frame
    truth = np.array([len(reference(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))) > 0 for f in frames])
    lines = [
        f"Model: `{classifier.info['genome']}` ({classifier.info['params']:,} params). {len(frames)} frames "
        f"640x480, {int(truth.sum())} with a face for full-resolution Haar; one thread.",
        "",
        "| scale factor | detector width | detect every | hold | recall | false frames | fps | detect ms | infer ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scale, width, every, hold in VIDEO_GRID:
        demo = Demo(classifier, DemoConfig(scale_factor=scale, detect_width=width, detect_every=every, hold=hold))
        shown = np.zeros(len(frames), bool)
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            shown[i] = len(demo.process(frame.copy())) > 0
        fps = len(frames) / (time.perf_counter() - t0)
        recall = (shown & truth).sum() / max(truth.sum(), 1)
        false = (shown & ~truth).sum() / max((~truth).sum(), 1)
        lines.append(
            f"| {scale} | {width} | {every} | {hold} | {recall:.3f} | {false:.3f} | {fps:.1f} | "
            f"{1e3 * demo.seconds['detect'] / len(frames):.1f} | {1e3 * demo.seconds['infer'] / len(frames):.2f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def default_model() -> str:
    """An exported mini-Xception (untrained: speed does not depend on the weights)."""
    from nas.deploy.artifact import export
    from nas.genome.build import build
    from nas.genome.space import load_baselines

    folder = Path(tempfile.mkdtemp()) / "export"
    export(build(load_baselines()["mini_xception"].genome), folder)
    return str(folder / "model.onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True, help="folder of face photos (e.g. ../shared/data/faces)")
    ap.add_argument("--model", default=None, help="model.onnx (default: an untrained mini-Xception export)")
    ap.add_argument("--frames-per-photo", type=int, default=40)
    ap.add_argument("--screenshot", default="benchmarks/results/demo_frame.png")
    ap.add_argument("--video", default=None, help="the test video of benchmarks/demo_video.py: recall and fps")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    if args.video:
        classifier = Classifier(args.model or default_model(), threads=1)
        print("\n".join(video_table(read_video(args.video), classifier)))
        return 0
    files = sorted(p for p in Path(args.faces).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    photos = [cv2.imread(str(p)) for p in files]
    reference = FaceDetector(STILL)
    expected = [len(reference(cv2.cvtColor(p, cv2.COLOR_BGR2GRAY))) for p in photos]
    model = args.model or default_model()
    classifier = Classifier(model, threads=1)
    frames = video(photos, args.frames_per_photo)

    lines = [
        f"Model: `{classifier.info['genome']}` ({classifier.info['params']:,} params); {len(frames)} frames "
        f"640x480 from {len(photos)} photos; one thread. Faces found: sum over the photos of min(found, expected) "
        f"/ {sum(expected)} expected.",
        "",
        "| scale factor | detector width | detect every | fps | detect ms | preprocess ms | infer ms | draw ms "
        "| faces found |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scale, width, every in GRID:
        cfg = DemoConfig(scale_factor=scale, detect_width=width, detect_every=every)
        found = [len(FaceDetector(cfg)(cv2.cvtColor(letterbox(p), cv2.COLOR_BGR2GRAY))) for p in photos]
        hits = sum(min(f, e) for f, e in zip(found, expected))
        demo = Demo(classifier, cfg)
        t0 = time.perf_counter()
        for frame in frames:
            demo.process(frame.copy())
        fps = len(frames) / (time.perf_counter() - t0)
        ms = {k: 1e3 * v / len(frames) for k, v in demo.seconds.items()}
        lines.append(
            f"| {scale} | {width} | {every} | {fps:.1f} | {ms['detect']:.1f} | {ms['preprocess']:.2f} | "
            f"{ms['infer']:.2f} | {ms['draw']:.2f} | {hits}/{sum(expected)} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))

    if args.screenshot:  # one annotated frame with the default settings, for the README
        demo = Demo(classifier, DemoConfig())
        pick = max(range(len(photos)), key=lambda i: expected[i])
        frame = letterbox(photos[pick])
        for _ in range(3):
            shot = frame.copy()
            demo.process(shot)
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.screenshot, shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
