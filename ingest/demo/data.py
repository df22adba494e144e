"""The embedded demo dataset: AI Hub layout, real photographs, learnable labels, every fault.

Frames are cut from the photographs scikit-image ships in its wheel (no download). Inside
each bounding box a shape is drawn whose form and colour depend on the emotion label, so a
small model learns the labels from the crops in minutes on a CPU. On top of the clean videos
the generator injects one instance of every fault ``ingest clean`` must catch and every
oddity it must keep, and writes what it injected to ``expected.json`` beside the dataset
folders (``ingest demo-check`` compares it with a cleaning run).

``label_noise`` > 0 plants label flips for the label audit to find: that share of the clean
training frames shows another class's shape and colour than its video's label says, half of
them a uniformly drawn other class (symmetric noise), half the look-alike class (same outline
family: circle/ring, square/diamond, triangle/cross). The truth goes to ``planted_flips.csv``
beside the dataset folders, which ``ingest clean`` never reads. Validation frames stay clean.
With ``noise_unit="video"`` the draw is made once per training video instead, and a flipped video
shows the other class in every clean frame: the shape of the users' own noise, where one annotator's
label covers a whole video.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pawpipe.ingest.demo import NOISE_UNITS
from pawpipe.ingest.sources.aihub import CAT_ACTIONS, DOG_ACTIONS, EMOTIONS, FRAMES_DIR, LABELS_DIR

FRAME_SIZES = ((320, 240), (240, 320), (288, 288))  # landscape, portrait, square
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")  # one per emotion, same order
COLOURS = ((230, 40, 40), (40, 90, 230), (40, 190, 60), (240, 210, 30), (200, 50, 200), (30, 200, 210))

VIDEO_FAULTS = ("label_unknown", "label_missing", "malformed_json")  # each on an extra training video
# Frame-level faults: (name, rule the record must be quarantined under, or None when kept).
FRAME_FAULTS = (
    ("bbox_negative_small", None),  # clipped and kept, repair recorded
    ("bbox_negative_large", "bbox.negative"),
    ("bbox_outside_small", None),  # clipped and kept, repair recorded
    ("bbox_outside_large", "bbox.out_of_bounds"),
    ("bbox_zero_width", "bbox.empty"),
    ("bbox_tiny", "bbox.empty"),
    ("bbox_null", "bbox.invalid"),
    ("bbox_string", "bbox.invalid"),
    ("bbox_nan", "bbox.invalid"),
    ("bbox_absent", "bbox.invalid"),
    ("no_jpeg", "image.missing"),
    ("zero_bytes", "image.unreadable"),
    ("not_an_image", "image.unreadable"),
    ("truncated_jpeg", "image.unreadable"),
    ("symlink_outside", "path.outside_root"),
    ("no_frame_number", "annotation.malformed"),
    ("grayscale", None),
    ("cmyk", None),
    ("png_named_jpg", None),
    ("png16_named_jpg", None),
    ("exif_rotated", None),
)
LOOK_ALIKE = {0: 4, 4: 0, 1: 5, 5: 1, 2: 3, 3: 2}  # circle/ring, square/diamond, triangle/cross
REPAIRED = {"bbox_negative_small": "bbox.negative", "bbox_outside_small": "bbox.out_of_bounds"}
KEPT_ODDITIES = {
    "grayscale": ("JPEG", "L"),
    "cmyk": ("JPEG", "CMYK"),
    "png_named_jpg": ("PNG", "RGB"),
    "png16_named_jpg": ("PNG", "I;16"),
    "exif_rotated": ("JPEG", "RGB"),
}


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
        data.stereo_motorcycle()[0],
        data.retina(),
        data.colorwheel(),
    ]


def draw_frame(
    photo: np.ndarray,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    cls: int,
    rng: np.random.Generator,
    *,
    pair_colours: bool = False,
) -> Image.Image:
    """A frame cut from ``photo`` with the class shape drawn inside ``box`` (x, y, w, h); with
    ``pair_colours`` both classes of a look-alike pair share one colour, so only the outline tells them apart."""
    w, h = size
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.5, 0.9)
    cw, ch = int(min(pw, ph * w / h) * scale), int(min(ph, pw * h / w) * scale)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    img = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw]).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    bx, by, bw, bh = box
    r = min(bw, bh) * rng.uniform(0.3, 0.42)
    cx = bx + bw / 2 + rng.uniform(-0.08, 0.08) * bw
    cy = by + bh / 2 + rng.uniform(-0.08, 0.08) * bh
    draw = ImageDraw.Draw(img)
    colour, shape = COLOURS[min(cls, LOOK_ALIKE[cls]) if pair_colours else cls], SHAPES[cls]
    bounds = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(bounds, fill=colour)
    elif shape == "square":
        draw.rectangle(bounds, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == "cross":
        t = r / 3
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=colour)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=colour)
    elif shape == "ring":
        draw.ellipse(bounds, outline=colour, width=max(2, int(r / 3)))
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    return img


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _encode(img: Image.Image, fault: str | None) -> bytes:
    """The file bytes for a frame, shaped by the oddity it carries."""
    buf = io.BytesIO()
    if fault == "grayscale":
        return _jpeg(img.convert("L"))
    if fault == "cmyk":
        return _jpeg(img.convert("CMYK"))
    if fault == "png_named_jpg":
        img.save(buf, format="PNG")
        return buf.getvalue()
    if fault == "png16_named_jpg":
        arr = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()
    if fault == "exif_rotated":
        # Stored rotated with EXIF orientation 6 ("rotate 90 CW to display"): a viewer, the probe
        # and the shard writer all show the frame upright, so the box stays in display coordinates.
        exif = Image.Exif()
        exif[0x0112] = 6
        return _jpeg(img.transpose(Image.Transpose.ROTATE_90), exif=exif)
    data = _jpeg(img)
    if fault == "truncated_jpeg":
        return data[: len(data) // 2]
    if fault == "zero_bytes":
        return b""
    if fault == "not_an_image":
        return b"this is not an image\n"
    return data


def _box_for(fault: str | None, box: list, size: tuple[int, int]) -> object:
    x, y, w, h = box
    fw, fh = size
    return {
        "bbox_negative_small": {"x": -6, "y": y, "width": w, "height": h},
        "bbox_negative_large": {"x": -80, "y": y, "width": w, "height": h},
        "bbox_outside_small": {"x": x, "y": y, "width": fw - x + 6, "height": h},
        "bbox_outside_large": {"x": x, "y": y, "width": fw - x + 120, "height": h},
        "bbox_zero_width": {"x": x, "y": y, "width": 0, "height": h},
        "bbox_tiny": {"x": x, "y": y, "width": 3, "height": 3},
        "bbox_null": {"x": None, "y": y, "width": w, "height": h},
        "bbox_string": {"x": x, "y": y, "width": "wide", "height": h},
        "bbox_nan": {"x": x, "y": y, "width": w, "height": math.nan},
    }.get(fault, {"x": x, "y": y, "width": w, "height": h})


def generate(
    out: str | Path,
    *,
    videos: int = 36,
    frames: int = 8,
    seed: int = 0,
    label_noise: float = 0.0,
    val_videos: int = len(EMOTIONS),
    noise_unit: str = "frame",
    pair_colours: bool = False,
) -> dict:
    """Write the demo dataset under ``out``; returns (and writes) the ``expected.json`` record.

    The last ``val_videos`` videos are the validation split (video ``v`` shows class ``v % 6``, so
    a multiple of six keeps it balanced); the others, at least one per class, are training videos.
    """
    out = Path(out)
    if videos < 12:
        raise ValueError(f"--videos: expected at least 12 (two per class), got {videos}")
    if not 1 <= val_videos <= videos - len(EMOTIONS):
        raise ValueError(
            f"--val-videos: expected 1..{videos - len(EMOTIONS)} (one training video per class left), got {val_videos}"
        )
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"--label-noise: expected a share in [0, 1), got {label_noise}")
    if noise_unit not in NOISE_UNITS:
        raise ValueError(f"--noise-unit: expected one of {', '.join(NOISE_UNITS)}, got {noise_unit!r}")
    rng = np.random.default_rng(seed)
    # Flips draw from their own generator, so the frames themselves are the same with or without them.
    flips = _Flips(label_noise, np.random.default_rng([seed, 1]), unit=noise_unit) if label_noise > 0 else None
    photos = _photos()
    expected: dict = {"quarantined": [], "repaired": [], "kept_oddities": [], "orphans": [], "warned": []}
    plans = plan_videos(videos, val_videos=val_videos, seed=seed, photos=len(photos))
    frame_faults = list(FRAME_FAULTS)
    for plan in plans:
        _write_video(out, plan, frames, photos, rng, frame_faults, expected, flips, pair_colours=pair_colours)
    _write_duplicate(out, plans, expected)
    if flips is not None:
        flips.write(out / "planted_flips.csv")
    expected["counts"] = {"videos": len(plans), "frames_per_video": frames}
    (out / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return expected


def plan_videos(videos: int, *, val_videos: int, seed: int, photos: int) -> list[dict]:
    """What each video shows: its class (video ``v``: class ``v % 6``), species, action, split, backdrop
    photo (an index below ``photos``, the number of photographs) and frame size; then one extra
    training video per video-level fault.

    The backdrop and frame size are drawn from a stream of their own, never from the class: when they
    cycled with ``v`` (photo ``v % 9`` and class ``v % 6`` share the factor 3) each photo showed two
    classes only, so the backdrop told the class, a flipped frame's given label too, even in videos a
    model had never seen.
    """
    scenes = np.random.default_rng([seed, 2])

    def scene() -> dict:
        return {"photo": int(scenes.integers(photos)), "size": FRAME_SIZES[int(scenes.integers(len(FRAME_SIZES)))]}

    plans = []
    for v in range(videos):
        cls = v % len(EMOTIONS)
        species = "CAT" if (v // len(EMOTIONS)) % 2 == 0 else "DOG"
        actions = CAT_ACTIONS if species == "CAT" else DOG_ACTIONS
        split = "Validation" if v >= videos - val_videos else "Training"
        plans.append(
            {"v": v, "cls": cls, "species": species, "action": actions[v % len(actions)], "split": split, **scene()}
        )
    # Video-level faults on extra videos, so the clean videos keep every class learnable.
    for k, fault in enumerate(VIDEO_FAULTS):
        plans.append(
            {
                "v": videos + k,
                "cls": k,
                "species": "DOG",
                "action": "SIT",
                "split": "Training",
                "video_fault": fault,
                **scene(),
            }
        )
    return plans


class _Flips:
    """Which clean training frames show another class than their label, and the record of it."""

    def __init__(self, share: float, rng: np.random.Generator, *, unit: str = "frame") -> None:
        self.share, self.rng, self.unit, self.rows = share, rng, unit, []
        self.video: tuple[int, str] | None = None  # unit "video": the current video's (true class, kind), or None

    def start_video(self, cls: int) -> None:
        """A training video begins: with unit "video", draw once whether (and to what) all its frames flip."""
        if self.unit == "video":
            self.video = self._draw(cls)

    def _draw(self, cls: int) -> tuple[int, str] | None:
        if self.rng.random() >= self.share:
            return None
        kind = "lookalike" if self.rng.random() < 0.5 else "symmetric"
        true = (
            LOOK_ALIKE[cls] if kind == "lookalike" else int((cls + self.rng.integers(1, len(EMOTIONS))) % len(EMOTIONS))
        )
        return true, kind

    def true_class(self, cls: int, *, source_file: str, record: str, image_path: str) -> int:
        drawn = self.video if self.unit == "video" else self._draw(cls)
        if drawn is None:
            return cls
        true, kind = drawn
        self.rows.append((source_file, record, image_path, EMOTIONS[cls], EMOTIONS[true], kind))
        return true

    def write(self, path: Path) -> None:
        lines = ["source_file,record,image_path,given_label,true_label,kind"] + [",".join(r) for r in self.rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_video(
    out: Path,
    plan: dict,
    frames: int,
    photos,
    rng,
    frame_faults: list,
    expected: dict,
    flips: _Flips | None = None,
    *,
    pair_colours: bool = False,
) -> None:
    v, cls, species, action, split = plan["v"], plan["cls"], plan["species"], plan["action"], plan["split"]
    stem = f"demo-{species.lower()}-{action.lower()}-{v:04d}.mp4"
    label_rel = f"{split}/{LABELS_DIR}/{species}/{action}/{stem}.json"
    frame_rel = f"{split}/{FRAMES_DIR}/{species}/{action}/{stem}"
    (out / frame_rel).mkdir(parents=True, exist_ok=True)
    (out / label_rel).parent.mkdir(parents=True, exist_ok=True)
    size, photo = plan["size"], photos[plan["photo"]]
    video_fault = plan.get("video_fault")
    emotion = EMOTIONS[cls]
    inspect_emotion = {"label_unknown": "몰라", "label_missing": None}.get(video_fault, emotion)
    owner_emotion = EMOTIONS[(cls + 1) % len(EMOTIONS)] if v % 5 == 3 else emotion  # some owners disagree
    meta_size = size[::-1] if v % 11 == 7 and size[0] != size[1] else size  # metadata that lies (warned)
    annotations = []
    if flips is not None and split == "Training" and not video_fault:
        flips.start_video(cls)
    for f in range(frames):
        number = f * 3
        stamp = number * 33
        fw, fh = size
        bw, bh = int(rng.integers(fw * 0.35, fw * 0.7)), int(rng.integers(fh * 0.35, fh * 0.7))
        bx, by = int(rng.integers(0, fw - bw)), int(rng.integers(0, fh - bh))
        # Faults go to the training videos' later frames, one fault per frame, until all are placed.
        fault = frame_faults.pop(0) if (frame_faults and split == "Training" and f >= 2 and not video_fault) else None
        name = fault[0] if fault else None
        path = out / frame_rel / f"frame_{number}_timestamp_{stamp}.jpg"
        shown = cls
        if flips is not None and split == "Training" and not fault and not video_fault:
            shown = flips.true_class(
                cls, source_file=label_rel, record=str(number), image_path=path.relative_to(out).as_posix()
            )
        img = draw_frame(photo, size, (bx, by, bw, bh), shown, rng, pair_colours=pair_colours)
        if name == "symlink_outside":
            os.symlink("/etc/hostname", path)
        elif name != "no_jpeg":
            path.write_bytes(_encode(img, name))
        ann = {
            "frame_number": number,
            "timestamp": stamp,
            "bounding_box": _box_for(name, [bx, by, bw, bh], size),
            "keypoints": {str(k): ({"x": bx + k, "y": by + k} if k % 4 else None) for k in range(1, 16)},
        }
        if name == "bbox_absent":
            del ann["bounding_box"]
        if name == "no_frame_number":
            del ann["frame_number"]
        annotations.append(ann)
        if fault:
            record = str(f) if name == "no_frame_number" else str(number)
            entry = {"fault": name, "source_file": label_rel, "record": record}
            if fault[1]:
                expected["quarantined"].append({**entry, "rule": fault[1]})
            elif name in REPAIRED:
                expected["repaired"].append({**entry, "rule": REPAIRED[name]})
            else:
                fmt, mode = KEPT_ODDITIES[name]
                expected["kept_oddities"].append({**entry, "image_format": fmt, "image_mode": mode})
        if video_fault and video_fault != "malformed_json":
            rule = "label.unknown" if video_fault == "label_unknown" else "label.missing"
            expected["quarantined"].append(
                {"fault": video_fault, "source_file": label_rel, "record": str(number), "rule": rule}
            )
    orphan = f"{frame_rel}/frame_{frames * 3 + 1}_timestamp_{(frames * 3 + 1) * 33}.jpg"
    if v == 1:  # a JPEG that no annotation names
        (out / orphan).write_bytes(_jpeg(draw_frame(photo, size, (10, 10, 60, 60), cls, rng)))
        expected["orphans"].append(orphan)
    if meta_size != size:
        expected["warned"].append({"source_file": label_rel, "rule": "image.size_mismatch", "frames": frames})
    doc = {
        "file_video": stem,
        "metadata": {
            "seq": v,
            "species": species,
            "action": f"{action.lower()} 동작",
            "location": "거실",
            "width": meta_size[0],
            "height": meta_size[1],
            "duration": frames * 0.1,
            "animal": {"breed": "mixed", "gender": "F" if v % 2 else "M", "age": str(1 + v % 9), "neuter": "Y"},
            "owner": {"pain": "N", "disease": "N", "emotion": owner_emotion, "situation": "play", "animalCount": 1},
            "inspect": {"action": action, "painDisease": "N", "abnormalAction": "N", "emotion": inspect_emotion},
        },
        "annotations": annotations,
    }
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    if video_fault == "malformed_json":
        text = text[: len(text) // 2]  # cut mid-document: does not parse
        expected["quarantined"].append(
            {"fault": video_fault, "source_file": label_rel, "record": None, "rule": "annotation.malformed"}
        )
        expected["orphans"] += [f"{frame_rel}/{p.name}" for p in sorted((out / frame_rel).iterdir())]
    (out / label_rel).write_text(text, encoding="utf-8")


def _write_duplicate(out: Path, plans: list[dict], expected: dict) -> None:
    """Copy a training frame's bytes over a validation frame: the same image in both splits."""
    train = next(p for p in plans if p["split"] == "Training" and not p.get("video_fault"))
    val = next(p for p in plans if p["split"] == "Validation")
    src = _frame_dir(out, train) / "frame_0_timestamp_0.jpg"
    dst_dir = _frame_dir(out, val)
    dst = dst_dir / "frame_0_timestamp_0.jpg"
    dst.write_bytes(src.read_bytes())
    label_rel = Path(*dst_dir.relative_to(out).parts[:1], LABELS_DIR, *dst_dir.relative_to(out).parts[2:])
    expected["quarantined"].append(
        {
            "fault": "duplicate_across_splits",
            "source_file": f"{label_rel.as_posix()}.json",
            "record": "0",
            "rule": "image.duplicate",
        }
    )


def _frame_dir(out: Path, plan: dict) -> Path:
    stem = f"demo-{plan['species'].lower()}-{plan['action'].lower()}-{plan['v']:04d}.mp4"
    return out / plan["split"] / FRAMES_DIR / plan["species"] / plan["action"] / stem
