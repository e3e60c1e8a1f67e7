"""A seeded test video for the demo, made from face photos: the same photos and seed give the same frames.

640x480 at 30 fps, in scenes of two seconds: a face panning across a textured background, a face zooming
from small to large, several faces of different sizes drifting, a stretch with no face (a photo without
one, panning), and a face that shakes (fast small moves). Written before the demo's defaults were tuned on
it (issue #19), so the defaults cannot have shaped it.

    python benchmarks/demo_video.py --faces ../shared/data/faces --out runs/demo_video.avi
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

W, H, FPS, SCENE = 640, 480, 30, 60  # frame size, frames per second, frames per scene
NO_FACE = "noface"  # photos whose name says so make the scene without a face


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture: no face, but edges for the detector to look at."""
    small = rng.integers(40, 200, (6, 8, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC), (0, 0), 5)


def paste(frame: np.ndarray, photo: np.ndarray, cx: float, cy: float, width: float) -> None:
    """``photo`` scaled to ``width`` pixels, centred at (cx, cy), clipped to the frame."""
    h = int(round(photo.shape[0] * width / photo.shape[1]))
    w = int(round(width))
    if w < 2 or h < 2:
        return
    img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA if w < photo.shape[1] else cv2.INTER_LINEAR)
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = img[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def scenes(faces: list[np.ndarray], empty: list[np.ndarray], rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Every scene kind once per face photo, in a seeded order of photos."""
    for k in rng.permutation(len(faces)):
        face, bg = faces[k], background(rng)
        width = rng.uniform(220, 320)
        y = rng.uniform(200, 280)
        for i in range(SCENE):  # pan from one side to the other
            frame = bg.copy()
            paste(frame, face, 100 + (W - 200) * i / (SCENE - 1), y, width)
            yield frame
        for i in range(SCENE):  # zoom from small (faces of about 30 pixels) to large
            frame = bg.copy()
            paste(frame, face, W / 2, H / 2, 120 * (4.0 ** (i / (SCENE - 1))))
            yield frame
        others = [faces[j] for j in rng.choice(len(faces), size=min(3, len(faces)), replace=False)]
        starts = [(rng.uniform(120, 520), rng.uniform(140, 340), rng.uniform(110, 260)) for _ in others]
        for i in range(SCENE):  # several faces of different sizes, drifting
            frame = bg.copy()
            for j, (photo, (cx, cy, w)) in enumerate(zip(others, starts)):
                paste(frame, photo, cx + 40 * np.sin(i / 9 + j), cy + 25 * np.cos(i / 11 + j), w)
            yield frame
        for i in range(SCENE):  # no face: a photo without one, panning, or the background alone
            frame = bg.copy()
            if empty:
                paste(frame, empty[k % len(empty)], W / 2 + 120 * np.sin(i / 15), H / 2, 420)
            yield frame
        for _ in range(SCENE):  # shaking: fast small moves
            frame = bg.copy()
            paste(frame, face, W / 2 + rng.normal(0, 12), H / 2 + rng.normal(0, 8), width)
            yield frame


def make_video(faces_dir: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write the test video (MJPG in .avi, lossless enough for Haar) and return its path."""
    files = sorted(p for p in Path(faces_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    photos = {p.name: cv2.imread(str(p)) for p in files}
    faces = [img for name, img in photos.items() if NO_FACE not in name]
    empty = [img for name, img in photos.items() if NO_FACE in name]
    if not faces:
        raise SystemExit(f"{faces_dir}: no face photos")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    for frame in scenes(faces, empty, np.random.default_rng(seed)):
        writer.write(frame)
    writer.release()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True, help="folder of photos (e.g. ../shared/data/faces)")
    ap.add_argument("--out", default="runs/demo_video.avi")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(make_video(args.faces, args.out, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
