"""Benchmark of the training step: end-to-end from shards versus the model alone on in-memory tensors.

Same device, batch size, image size and trainer code (``train.fit.trainer.Trainer``: AMP where the device
has it, channels_last, per-sample dynamics on) on both sides:

* **model alone**: ``train.synthetic.TensorLoader`` over normalised tensors already on the device,
  i.e. what the step costs when data is free;
* **end-to-end**: the project's loader (``train.data.loader.open_loader``)
  reading WebDataset shards built by ``shards build`` from the embedded demo dataset
  (``ingest demo-data`` -> ``ingest clean`` -> ``shards build``), stored at the users' 256:224
  ratio to the training size, decoding and augmenting them.

``end-to-end / model alone`` near 1 means the data path is not the bottleneck (target >= 0.9 on
the users' GPU). On a CPU the model and the decoder share the same cores, so the CPU ratio is a
lower bound. Also reported: the cost of recording per-sample dynamics (model alone with / without).

    python bench/train_bench.py [--quick] [--image-size 64] [--batch-size 16] [--device auto]

Every run saves its command, commit, machine, device, each side's images and seconds and the ratios
through ``bench/result_file.py`` to ``bench/results/train-<date>-<commit>[-quick]-seed0.json``. The
last lines are ``RATIO <name> <project/baseline>`` (higher is better).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.train.config import OptimConfig  # noqa: E402
from pawpipe.train.data.batch import Batch, Loader  # noqa: E402
from pawpipe.train.data.synthetic import TensorLoader, synthetic_images  # noqa: E402
from pawpipe.train.fit.device import resolve_device, resolve_precision  # noqa: E402
from pawpipe.train.fit.dynamics import DynamicsWriter  # noqa: E402
from pawpipe.train.fit.loss import ClassWeightedCE  # noqa: E402
from pawpipe.train.fit.model import build_model  # noqa: E402
from pawpipe.train.fit.optim import build_optimizer  # noqa: E402
from pawpipe.train.fit.schedule import WarmupCosine  # noqa: E402
from pawpipe.train.fit.trainer import Trainer  # noqa: E402


class Take:
    """The first ``n`` batches of a loader (a ``Loader`` itself), so both sides run the same steps."""

    def __init__(self, loader: Loader, n: int) -> None:
        self.loader, self.n, self.batch_size = loader, min(n, len(loader)), loader.batch_size

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Batch]:
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                break
            yield batch

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


def make_shards(base: Path, *, videos: int, frames: int, size: int) -> Path:
    """Demo dataset -> ``ingest clean`` -> ``shards build``; returns the shards folder."""
    from pawpipe.ingest.clean import clean
    from pawpipe.ingest.config import CleanConfig
    from pawpipe.ingest.demo.data import generate
    from pawpipe.shards.build import build
    from pawpipe.shards.config import ShardConfig

    generate(base / "raw", videos=videos, frames=frames, seed=0)
    clean(CleanConfig(root=base / "raw", out=base / "clean", workers=2, quiet=True))
    build(ShardConfig(manifest_dir=base / "clean", out=base / "shards", size=size, workers=2, quiet=True))
    return base / "shards"


def timed_epoch(trainer: Trainer, loader: Loader, *, dynamics_dir: Path | None, epoch: int) -> tuple[float, int]:
    """Seconds and images for one pass of ``loader`` through the trainer (device synchronised)."""
    writer = DynamicsWriter(dynamics_dir / f"epoch_{epoch:04d}.parquet", epoch=epoch) if dynamics_dir else None
    loader.set_epoch(epoch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train_epoch(loader, dynamics=writer)
    if writer is not None:
        writer.close()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, len(loader) * loader.batch_size


def make_trainer(num_classes: int, device: torch.device, steps: int) -> Trainer:
    torch.manual_seed(0)
    model = build_model(num_classes)
    return Trainer(
        model,
        optimizer=build_optimizer(model, OptimConfig(lr=1e-4)),
        loss_fn=ClassWeightedCE(None, label_smoothing=0.1),
        schedule=WarmupCosine(1e-4, 1e-6, 0, steps),
        precision=resolve_precision("auto", device),
        device=device,
        channels_last=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: about a minute on 2 cores")
    ap.add_argument(
        "--image-size", type=int, help="training resolution (default 48 quick, 64 full on CPU; 224 on CUDA)"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads on the CPU (the loader gets the rest)"
    )
    ap.add_argument(
        "--shards", type=Path, help="use existing shards (with dataset.json) instead of building the demo ones"
    )
    args = ap.parse_args()
    rec = Recorder("train", seed=0, args=vars(args), quick=args.quick, versions={"torch": torch.__version__})
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    image_size = args.image_size or (224 if device.type == "cuda" else 48 if args.quick else 64)
    videos, frames, batches, repeats = (24, 8, 8, 1) if args.quick else (60, 16, 30, 2)
    bs = args.batch_size
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"device: {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {args.threads} torch thread(s)")
    )
    print(
        f"EfficientNet-B0 at {image_size} px, batch {bs}, precision {resolve_precision('auto', device).name}, "
        f"{batches} steps per measurement"
    )

    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        num_classes = 6
        images, labels, ids = synthetic_images(bs * batches, num_classes=num_classes, image_size=image_size)
        alone = TensorLoader(images, labels, ids, batch_size=bs, train=True, device=device)
        trainer = make_trainer(num_classes, device, steps=10_000)
        timed_epoch(trainer, Take(alone, 3), dynamics_dir=None, epoch=0)  # warm-up: allocator, cuDNN autotune
        best: dict[str, tuple[float, int]] = {}
        for rep in range(repeats):  # best of `repeats`, interleaved: the machine may be shared
            for name, dyn in (("model alone, dynamics off", None), ("model alone, dynamics on", base / "dyn")):
                run = timed_epoch(trainer, alone, dynamics_dir=dyn, epoch=1 + rep)
                if name not in best or run[0] < best[name][0]:
                    best[name] = run
        rows += [(name, *best[name]) for name in best]

        e2e = None
        try:
            import pawpipe.train.data.loader  # noqa: F401
        except ImportError as exc:
            print(f"end-to-end: skipped, train.data.loader is not available yet ({exc})")
        else:
            from pawpipe.train.data.dataset import read_dataset_info
            from pawpipe.train.data.loader import LoaderSpec, open_loader

            started = time.perf_counter()
            # stored at the users' 256:224 ratio to the training size, as `shards build` would for them
            stored = round(image_size * 256 / 224)
            shards = args.shards or make_shards(base / "data", videos=videos, frames=frames, size=stored)
            print(f"input: shards at {shards}, stored at {stored} px ({time.perf_counter() - started:.0f} s to build)")
            info = read_dataset_info(shards)
            loader = open_loader(
                shards / "train",
                LoaderSpec(train=True, batch_size=bs, image_size=image_size),
                device=str(device),
                seed=0,
            )
            print(f"       {type(loader).__name__}: {len(loader)} full batches per epoch, {info.num_classes} classes")
            trainer = make_trainer(info.num_classes, device, steps=10_000)
            timed_epoch(trainer, Take(loader, 2), dynamics_dir=None, epoch=0)
            name = "end-to-end from shards, dynamics on"
            for rep in range(repeats):
                run = timed_epoch(trainer, Take(loader, batches), dynamics_dir=base / "dyn", epoch=10 + rep)
                if e2e is None or run[0] < e2e[0]:
                    e2e = run
            rows.append((name, *e2e))

    print(f"\n{'side':<40} {'img/s':>8} {'images':>7} {'wall s':>7}")
    for name, seconds, n in rows:
        print(f"{name:<40} {n / seconds:>8.1f} {n:>7d} {seconds:>7.2f}")
    rate = {name: n / seconds for name, seconds, n in rows}
    print()
    rec.ratio("dynamics_on_vs_off", rate["model alone, dynamics on"] / rate["model alone, dynamics off"])
    if e2e is not None:
        rec.ratio(
            "train_end_to_end_vs_model_alone",
            rate["end-to-end from shards, dynamics on"] / rate["model alone, dynamics on"],
        )
    rec.finish(
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        torch_threads=args.threads if device.type == "cpu" else None,
        image_size=image_size,
        batch_size=bs,
        steps=batches,
        best_of=repeats,
        precision=resolve_precision("auto", device).name,
        sides={
            name: {"images": n, "seconds": round(seconds, 3), "img_per_s": round(n / seconds, 1)}
            for name, seconds, n in rows
        },
    )


if __name__ == "__main__":
    main()
