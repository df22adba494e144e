"""Generated video frames with known near-duplicates: real JPEGs of photo scenes with an "animal" disc.

Each video shows one scene. Its first frame is the original; the near-copies a 200 ms frame
rate produces are the camera shifted by 1 or 2 pixels, the frame re-encoded at JPEG quality 60,
and the brightness jittered by -10 % and +10 %. The frames that are *not* copies are the same
scene with the animal moved by at least its radius, and a frame of another scene.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

SIZE = (192, 144)
RADIUS = 36
ANIMAL = (60, 72)
COPIES = ("shift1", "shift2", "quality60", "darker", "brighter")
DISTINCT = ("moved_right", "moved_down", "other_scene")


def photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0], data.retina()]


def scene(photo: np.ndarray, *, shift: tuple[int, int] = (0, 0), animal: tuple[int, int] = ANIMAL) -> Image.Image:
    """The scene of ``photo`` at ``SIZE``: a 2x downscaled crop, the camera moved by ``shift`` output pixels."""
    x0, y0 = 40 + 2 * shift[0], 40 + 2 * shift[1]
    crop = photo[y0 : y0 + 2 * SIZE[1], x0 : x0 + 2 * SIZE[0]]
    img = Image.fromarray(crop).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR)
    ax, ay = animal[0] - shift[0], animal[1] - shift[1]  # the animal stays put in the world
    ImageDraw.Draw(img).ellipse((ax - RADIUS, ay - RADIUS, ax + RADIUS, ay + RADIUS), fill=(230, 40, 40))
    return img


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def video_frames(pics: list[np.ndarray], v: int) -> list[tuple[str, bytes, bool]]:
    """The frames of video ``v`` in order: (kind, JPEG bytes, is a near-copy of the first frame)."""
    photo, other = pics[v % len(pics)], pics[(v + 1) % len(pics)]
    base = scene(photo)
    return [
        ("original", jpeg(base), False),
        ("shift1", jpeg(scene(photo, shift=(1, 0))), True),
        ("shift2", jpeg(scene(photo, shift=(2, 2))), True),
        ("quality60", jpeg(base, quality=60), True),
        ("darker", jpeg(ImageEnhance.Brightness(base).enhance(0.9)), True),
        ("brighter", jpeg(ImageEnhance.Brightness(base).enhance(1.1)), True),
        ("moved_right", jpeg(scene(photo, animal=(ANIMAL[0] + 2 * RADIUS, ANIMAL[1]))), False),
        ("moved_down", jpeg(scene(photo, animal=(ANIMAL[0] + RADIUS, ANIMAL[1] + RADIUS))), False),
        ("other_scene", jpeg(scene(other, animal=(ANIMAL[0] + RADIUS, ANIMAL[1]))), False),  # not another video's bytes
    ]


def write_table(root: Path, *, videos: int, label: str = "cat") -> dict[str, tuple[str, bool]]:
    """Frames of ``videos`` videos under ``root`` and ``boxes.csv`` naming them; image_path -> (kind, is a copy)."""
    pics = photos()
    truth: dict[str, tuple[str, bool]] = {}
    lines = ["path,label,video,x,y,w,h"]
    for v in range(videos):
        for f, (kind, data, copy) in enumerate(video_frames(pics, v)):
            rel = f"v{v:02d}/frame_{f:02d}_{kind}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            truth[rel] = (kind, copy)
            lines.append(f"{rel},{label},v{v:02d},20,30,100,80")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return truth
