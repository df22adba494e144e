"""The one transform definition and its two realisations (DALI on the CPU, PIL) on real JPEGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from pawpipe.train.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PilTransform,
    TransformSpec,
    centre_crop_box,
    dali_transform,
    random_crop_box,
    transform_spec,
)


def jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo(width: int, height: int) -> bytes:
    return jpeg(np.asarray(Image.fromarray(skimage.data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)))


def run_dali(jpegs: list[bytes], spec: TransformSpec, seed: int = 1) -> torch.Tensor:
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=len(jpegs), num_threads=1, device_id=None, seed=seed)
    def pipe():  # type: ignore[no-untyped-def]
        return dali_transform(fn.external_source(name="jpegs"), spec, decoder="cpu")

    p = pipe()
    p.build()
    p.feed_input("jpegs", [np.frombuffer(j, dtype=np.uint8) for j in jpegs])
    (out,) = p.run()
    return torch.from_dlpack(out.as_tensor()).clone()


def run_pil(jpegs: list[bytes], spec: TransformSpec, seed: int = 1) -> torch.Tensor:
    transform, rng = PilTransform(spec), np.random.default_rng(seed)
    return torch.stack([transform(j, rng) for j in jpegs])


RUNS = {"dali": run_dali, "pil": run_pil}


@pytest.mark.parametrize("realisation", RUNS)
@pytest.mark.parametrize("train", [True, False])
def test_normalisation_happens_exactly_once(realisation: str, train: bool) -> None:
    mean, std = (124.0, 116.0, 104.0), (58.0, 57.0, 57.0)
    spec = transform_spec(train=train, image_size=32, mean=mean, std=std)
    at_mean = np.full((48, 48, 3), mean, dtype=np.uint8)
    one_std = np.full((48, 48, 3), [m + s for m, s in zip(mean, std)], dtype=np.uint8)
    out = RUNS[realisation]([jpeg(at_mean), jpeg(one_std)], spec)
    # /255 anywhere would put these near -2.1 and -1.1, not 0 and 1
    assert out[0].abs().max().item() < 0.05
    assert (out[1] - 1).abs().max().item() < 0.05


@pytest.mark.parametrize(
    "size,width,height", [(32, 64, 75), (32, 147, 64), (56, 97, 64), (224, 300, 256), (224, 256, 341)]
)
def test_eval_realisations_agree(size: int, width: int, height: int) -> None:
    spec = transform_spec(train=False, image_size=size)
    images = [photo(width, height)]
    dali, pil = run_dali(images, spec), run_pil(images, spec)
    assert dali.shape == pil.shape == (1, 3, size, size)
    assert (dali - pil).abs().mean().item() < 0.01  # ~0.5/255 in pixels: interpolation rounding only
    assert (dali - pil).abs().max().item() < 0.1


@pytest.mark.parametrize("realisation", RUNS)
def test_train_flips_some_and_crops_to_size(realisation: str) -> None:
    # square image, whole-image crop (scale 1, ratio 1): every output is the resized image or its mirror
    spec = TransformSpec(train=True, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = RUNS[realisation]([photo(64, 64)] * 16, spec)
    plain = run_pil(
        [photo(64, 64)], TransformSpec(train=True, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    )[0]
    flipped = [(o - plain.flip(-1)).abs().mean().item() < 0.02 for o in out]
    unflipped = [(o - plain).abs().mean().item() < 0.02 for o in out]
    assert all(f or u for f, u in zip(flipped, unflipped))
    assert 0 < sum(flipped) < 16


@pytest.mark.parametrize("realisation", RUNS)
def test_train_output_kind_half_and_jitter(realisation: str) -> None:
    images = [photo(96, 64), photo(64, 80)] * 4
    for half, jitter in ((False, 0.0), (True, 0.0), (False, 0.3)):
        spec = transform_spec(train=True, image_size=40, half=half, jitter=jitter)
        out = RUNS[realisation](images, spec)
        assert out.shape == (8, 3, 40, 40)
        assert out.dtype == (torch.float16 if half else torch.float32)
        low = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        high = max((255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        assert low - 0.01 <= out.float().min().item() and out.float().max().item() <= high + 0.01


def test_random_crop_box_follows_the_spec() -> None:
    spec = TransformSpec(train=True, size=32, scale=(0.25, 0.5), ratio=(3 / 4, 4 / 3))
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = random_crop_box(200, 120, spec, rng)
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 120
        w, h = x1 - x0, y1 - y0
        assert 0.23 <= w * h / (200 * 120) <= 0.52  # whole pixels
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    # nothing fits a 1-px-high strip at these ratios: the centred square of the shorter side
    assert random_crop_box(50, 1, spec, rng) == (24, 0, 25, 1)


def test_centre_crop_box_is_centred() -> None:
    spec = TransformSpec(train=False, size=224)
    x0, y0, x1, y1 = centre_crop_box(256, 341, spec)
    assert (x0, x1) == (16, 240) and abs((y0 + y1) / 2 - 341 / 2) < 1
    assert spec.resize_shorter == 256


@pytest.mark.parametrize(
    "values,message",
    [
        ({"mean": (0.485, 0.456, 0.406)}, "0-1 scaled"),
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"scale": (0.5, 0.4)}, "scale"),
        ({"jitter": 1.0}, "jitter"),
        ({"size": 4}, "image_size"),
        ({"std": (1.0, 0.0, 1.0)}, "std"),
    ],
)
def test_spec_refuses_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformSpec(train=True, **values)


@pytest.mark.parametrize("train", [True, False])
def test_gpu_graph_is_well_formed(train: bool) -> None:
    """The ``mixed`` (nvJPEG) graph: every argument exists; it builds and runs where CUDA is present."""
    from nvidia.dali import fn, pipeline_def

    spec = transform_spec(train=train, image_size=32, jitter=0.1, half=True)

    @pipeline_def(batch_size=2, num_threads=1, device_id=0, seed=1)
    def pipe():  # type: ignore[no-untyped-def]
        return dali_transform(fn.external_source(name="jpegs"), spec, decoder="mixed")

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):  # past graph definition: no unknown argument
            pipe().build()
        return
    p = pipe()
    p.build()
    p.feed_input("jpegs", [np.frombuffer(photo(64, 48), dtype=np.uint8)] * 2)
    (out,) = p.run()
    images = torch.from_dlpack(out.as_tensor())
    assert images.is_cuda and images.dtype == torch.float16 and images.shape == (2, 3, 32, 32)
