"""The train and eval image transforms, declared once: one ``TransformSpec``, realised side by side
for DALI (``dali_transform``) and for PIL (``PilTransform``).

Train: random resized crop (area fraction ``scale``, aspect ratio ``ratio``) to ``size`` x ``size``,
horizontal flip, optional colour jitter, normalise. Eval: resize the shorter side to
``round(size / crop_fraction)``, centre crop ``size`` x ``size``, normalise. Both end the same way:
NCHW float (float16 when ``half``), ``(pixel - mean) / std`` with mean and std on the **0-255**
scale of ``dataset.json``, applied to the uint8 pixels exactly once. Nothing divides by 255
(the users' lesson: /255 then normalising again broke training), and ``TransformSpec`` refuses a
mean that looks 0-1 scaled.

The two realisations draw their random parameters from the same distributions but from different
generators (DALI's operators vs numpy), so a train batch is the same *kind* of batch, not the same
pixels; eval is deterministic and both realisations agree to within interpolation rounding
(tested). The jitter is defined by DALI's documented formulas, which the PIL side reimplements:
saturation scales the distance from the grey axis (mean of R, G, B); then
``brightness * (128 + contrast * (x - 128))``; each factor is uniform in ``[1 - jitter, 1 + jitter]``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pawpipe.train.config import DataConfig

DATA_DEFAULTS = DataConfig()  # the train transform's scale and jitter default to the data config's (train/config.py)
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # 0.485, 0.456, 0.406 on the 0-255 scale
IMAGENET_STD = (58.395, 57.12, 57.375)  # 0.229, 0.224, 0.225 on the 0-255 scale
CONTRAST_CENTER = 128.0


@dataclass(frozen=True)
class TransformSpec:
    """Everything that decides the pixels a model sees; both loaders build their transform from it."""

    train: bool
    size: int = 224
    scale: tuple[float, float] = DATA_DEFAULTS.scale  # area fraction of the random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = DATA_DEFAULTS.jitter  # 0.1 = light: brightness, contrast, saturation each in [0.9, 1.1]
    crop_fraction: float = 0.875  # eval: shorter side resized to size / crop_fraction, then centre crop
    mean: tuple[float, float, float] = IMAGENET_MEAN  # 0-255 scale
    std: tuple[float, float, float] = IMAGENET_STD
    half: bool = False  # float16 output (GPU + AMP)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"image_size: expected at least 8 px, got {self.size}")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale: expected 0 < min <= max <= 1 (fractions of the image area), got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio: expected 0 < min <= max, got {self.ratio}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter: expected 0 <= jitter < 1, got {self.jitter}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction: expected 0 < crop_fraction <= 1, got {self.crop_fraction}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std: expected 3 values each, std > 0, got mean {self.mean}, std {self.std}")
        if max(self.mean) <= 1.0:
            raise ValueError(
                f"mean: expected the 0-255 scale (as dataset.json pixel_stats), got {self.mean}, which looks 0-1 "
                "scaled; the loader normalises uint8 pixels once and never divides by 255"
            )

    @property
    def resize_shorter(self) -> int:
        """Eval: the shorter side before the centre crop."""
        return round(self.size / self.crop_fraction)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.half else torch.float32


def transform_spec(
    *,
    train: bool,
    image_size: int,
    scale: tuple[float, float] = DATA_DEFAULTS.scale,
    jitter: float = DATA_DEFAULTS.jitter,
    mean: Any = None,
    std: Any = None,
    half: bool = False,
) -> TransformSpec:
    """A ``TransformSpec``; ``mean``/``std`` None means ImageNet's (0-255 scale)."""
    return TransformSpec(
        train=train,
        size=image_size,
        scale=(float(scale[0]), float(scale[1])),
        jitter=float(jitter),
        mean=tuple(float(m) for m in (IMAGENET_MEAN if mean is None else mean)),  # type: ignore[arg-type]
        std=tuple(float(s) for s in (IMAGENET_STD if std is None else std)),  # type: ignore[arg-type]
        half=half,
    )


# --- DALI realisation ------------------------------------------------------------------------


def dali_transform(jpegs: Any, spec: TransformSpec, *, decoder: str) -> Any:
    """The DALI graph from encoded JPEGs to normalised NCHW images; ``decoder`` is "mixed" or "cpu".

    Train decodes only the random crop's region (``decoders.image_random_crop``: ROI decode in
    libjpeg-turbo on the CPU, nvJPEG on the GPU), then resizes it to ``size`` x ``size``.
    """
    from nvidia.dali import fn, types

    # nvJPEG on the GPU: libjpeg-turbo's chroma upsampling, so GPU and CPU decodes (and PIL) agree;
    # its per-thread buffers keep DALI's defaults (16 MB device, 2 x 8 MB pinned host), ample for 256-px crops.
    options = {"jpeg_fancy_upsampling": True} if decoder == "mixed" else {}
    if spec.train:
        images = fn.decoders.image_random_crop(
            jpegs,
            device=decoder,
            output_type=types.RGB,
            random_area=list(spec.scale),
            random_aspect_ratio=list(spec.ratio),
            num_attempts=10,
            **options,
        )
        images = fn.resize(images, size=[spec.size, spec.size], antialias=True)
        if spec.jitter > 0:
            low, high = 1.0 - spec.jitter, 1.0 + spec.jitter
            images = fn.saturation(images, saturation=fn.random.uniform(range=[low, high]))
            images = fn.brightness_contrast(
                images,
                brightness=fn.random.uniform(range=[low, high]),
                contrast=fn.random.uniform(range=[low, high]),
                contrast_center=CONTRAST_CENTER,
            )
        mirror = fn.random.coin_flip(probability=0.5) if spec.flip else 0
    else:
        images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB, **options)
        images = fn.resize(images, resize_shorter=spec.resize_shorter, antialias=True)
        mirror = 0
    return fn.crop_mirror_normalize(
        images,
        crop=[spec.size, spec.size],
        crop_pos_x=0.5,
        crop_pos_y=0.5,
        mirror=mirror,
        mean=list(spec.mean),
        std=list(spec.std),
        dtype=types.FLOAT16 if spec.half else types.FLOAT,
        output_layout="CHW",
    )


# --- PIL realisation -------------------------------------------------------------------------


def random_crop_box(
    width: int, height: int, spec: TransformSpec, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a random crop, drawn as DALI's ``RandomCropGenerator`` draws it.

    Area fraction uniform in ``scale``; aspect ratio (w/h) uniform in ``ratio`` or, on a coin
    flip, its inverse (h/w) uniform in the inverse range, so the mean ratio is 1; whole pixels;
    after 10 draws that do not fit, the centred square of the shorter side.
    """
    for _ in range(10):
        target = width * height * rng.uniform(*spec.scale)
        if rng.random() < 0.5:
            aspect = 1.0 / rng.uniform(1.0 / spec.ratio[1], 1.0 / spec.ratio[0])
        else:
            aspect = rng.uniform(*spec.ratio)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            x, y = int(rng.random() * (width - w)), int(rng.random() * (height - h))
            return x, y, x + w, y + h
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    return x, y, x + side, y + side


def centre_crop_box(width: int, height: int, spec: TransformSpec) -> tuple[float, float, float, float]:
    """The source box that eval's resize-shorter-side + centre crop shows, placed as DALI places it.

    DALI's ``resize`` keeps the exact scale ``resize_shorter / shorter side`` and rounds the
    output size, centring the source region; ``crop_mirror_normalize`` puts the crop at
    ``0.5 * (resized - size)`` rounded half up. Resampling this box straight to ``size`` x ``size``
    gives the same pixels as resizing then cropping (PIL's filter reads past the box's edges).
    """
    factor = spec.resize_shorter / min(width, height)
    boxes = []
    for extent in (width, height):
        resized = round(extent * factor)
        anchor = math.floor(0.5 * (resized - spec.size) + 0.5)
        start = (extent - resized / factor) / 2 + anchor / factor
        boxes.append((max(0.0, start), min(float(extent), start + spec.size / factor)))
    (x0, x1), (y0, y1) = boxes
    return x0, y0, x1, y1


class PilTransform:
    """``spec`` on one encoded image with PIL: bytes -> (3, size, size) normalised tensor."""

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self._mean = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, jpeg: bytes, rng: np.random.Generator | None = None) -> torch.Tensor:
        spec = self.spec
        image = Image.open(io.BytesIO(jpeg))
        image = image.convert("RGB") if image.mode != "RGB" else image
        width, height = image.size
        if spec.train:
            if rng is None:
                raise ValueError("PilTransform: a train transform needs a random generator")
            box = random_crop_box(width, height, spec, rng)
            image = image.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box)
            pixels = np.asarray(image)
            if spec.jitter > 0:
                pixels = _jitter(pixels, rng, spec.jitter)
            if spec.flip and rng.random() < 0.5:
                pixels = pixels[:, ::-1]
        else:
            box = centre_crop_box(width, height, spec)
            pixels = np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box))
        chw = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float()
        return ((chw - self._mean) / self._std).to(spec.dtype)


def _jitter(pixels: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """DALI's ``saturation`` then ``brightness_contrast`` (see the module docstring), rounded to uint8 after each."""
    saturation, brightness, contrast = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    x = pixels.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(np.rint(grey + saturation * (x - grey)), 0, 255)
    x = brightness * (CONTRAST_CENTER + contrast * (x - CONTRAST_CENTER))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
