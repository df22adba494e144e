"""The DALI loader: ``fn.readers.webdataset`` over the split's tars and index files, decoded on the
GPU (nvJPEG, ``decoders.*(device="mixed")``) when the loader's device is CUDA, on DALI's CPU
backend otherwise; the graph after the decoder is the same (``train.data.transforms.dali_transform``).

One pipeline per epoch: its reader gets that epoch's shard order (``train.data.loader.EpochPlan``),
``shard_id``/``num_shards`` from the rank, the reader's shuffle seeded from ``(seed, epoch)`` and
the augmentation ops from ``(seed, epoch, rank)`` (ranks must not draw the same crops); every
rank's checkpoint is its own (the trainer saves them all). Training pipelines are built with
``enable_checkpointing=True``:
``state_dict()`` holds ``Pipeline.checkpoint()`` (reader position, shuffle buffer RNG, crop and
flip RNGs) after the batches consumed so far, and a new loader resumes from it exactly; every
operator in the graph supports checkpointing (DALI 2.4), so no skip-ahead fallback is needed here.

Each batch carries its ``sample_id``s: the reader's ``source_info`` property is
``<tar path>:<offset>:<key>.jpg``, so the key costs no extra read or JSON decode; labels come from
the ``.cls`` member (ASCII digits).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pawpipe.common.contracts.tar_layout import CLS, JPG, member_key
from pawpipe.train.data.batch import Batch
from pawpipe.train.data.shardset import EpochPlan, ShardSet, check_state, loader_state, undecodable
from pawpipe.train.data.transforms import TransformSpec, dali_transform

log = logging.getLogger(__name__)

READER = "shards"
PREFETCH_DEPTH = (
    2  # batches DALI prepares ahead (pipeline prefetch_queue_depth); train plan's memory estimate counts them
)


@dataclass(frozen=True)
class DecoderPlacement:
    """Where DALI decodes and where the batch's images end up."""

    decoder: str  # "mixed" (nvJPEG on the GPU) or "cpu"
    device_id: int | None  # CUDA device of the pipeline; None: a CPU-only pipeline
    torch_device: torch.device


def decoder_placement(device: str, decode: str = "auto") -> DecoderPlacement:
    """The one place that picks DALI's decoder device: "mixed" for a CUDA device, "cpu" otherwise or when asked."""
    target = torch.device(device)
    if target.type == "cpu":
        return DecoderPlacement("cpu", None, target)
    if target.type != "cuda":
        raise ValueError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: CUDA is not available on this host; use device 'cpu'")
    index = target.index if target.index is not None else torch.cuda.current_device()
    return DecoderPlacement("cpu" if decode == "cpu" else "mixed", index, torch.device("cuda", index))


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A 31-bit seed for one random stream of one epoch (0: reader shuffle, 1: augmentation ops).

    The augmentation stream differs per rank (``rank`` > 0 joins the entropy; rank 0 keeps the
    single-process seed), the shuffle stream is a function of ``(seed, epoch)`` alone.
    """
    entropy = [seed, epoch, stream] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


class DaliLoader:
    """``train.data.batch.Loader`` over a ``ShardSet`` with a DALI pipeline per epoch."""

    def __init__(
        self,
        shards: ShardSet,
        spec: TransformSpec,
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        workers: int,
        device: str,
        shuffle_buffer: int,
        decode: str = "auto",
    ) -> None:
        self.shards, self.spec = shards, spec
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.threads = max(1, workers)
        self.placement = decoder_placement(device, decode)
        self.shuffle_buffer = shuffle_buffer
        self.epoch, self.position = 0, 0
        self._pipe: Any = None  # the live pipeline and the (epoch, position) it stands at
        self._pipe_at: tuple[int, int] | None = None
        self._checkpoint: bytes | None = None  # loaded by load_state_dict, used by the next __iter__
        n = shards.plan(0, seed=seed, shuffle=False, rank=rank, world_size=world_size).samples
        log.info(
            "DALI loader %s: %d samples on rank %d/%d, %d batches of %d, decoder %s, shuffle buffer %d samples "
            "(~%.0f MB encoded)",
            shards.split_dir,
            n,
            rank,
            world_size,
            len(self),
            batch_size,
            self.placement.decoder,
            self._fill(n) if spec.train else 0,
            (self._fill(n) if spec.train else 0) * shards.mean_encoded_bytes / 1e6,
        )

    def __len__(self) -> int:
        return self.shards.batches(
            train=self.spec.train, batch_size=self.batch_size, rank=self.rank, world_size=self.world_size
        )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position, self._checkpoint = epoch, 0, None
            self._release()

    def _settings(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "samples": self.shards.total,
            "shuffle_buffer": self.shuffle_buffer,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "position" (batches consumed), "dali_checkpoint" (bytes or None), settings...}``."""
        checkpoint = self._checkpoint
        if self.position and self._pipe is not None and self._pipe_at == (self.epoch, self.position):
            checkpoint = self._pipe.checkpoint()
        if not self.position:
            checkpoint = None
        return loader_state(
            "dali",
            spec=self.spec,
            epoch=self.epoch,
            position=self.position,
            settings=self._settings(),
            dali_checkpoint=checkpoint,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, position = check_state(state, "dali", spec=self.spec, settings=self._settings())
        checkpoint = state.get("dali_checkpoint")
        if position and self.spec.train and not checkpoint:
            raise ValueError(
                f"loader state: position {position} in epoch {epoch} but no DALI checkpoint to resume from"
            )
        self._release()
        self.epoch, self.position, self._checkpoint = epoch, position, checkpoint if position else None

    def _fill(self, samples: int) -> int:
        return max(1, min(self.shuffle_buffer, samples))

    def _release(self) -> None:
        self._pipe, self._pipe_at = None, None  # DALI frees the pipeline's threads and buffers with it

    def _build(self, plan: EpochPlan, checkpoint: bytes | None) -> Any:
        from nvidia.dali import fn, pipeline_def

        spec, train, decoder = self.spec, self.spec.train, self.placement.decoder

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.threads,
            device_id=self.placement.device_id,
            seed=epoch_seed(self.seed, plan.epoch, 1, self.rank),
            prefetch_queue_depth=PREFETCH_DEPTH,
            enable_checkpointing=train,
        )
        def pipeline():  # type: ignore[no-untyped-def]
            jpegs, labels = fn.readers.webdataset(
                paths=[str(s.path) for s in plan.shards],
                index_paths=[str(s.index) for s in plan.shards],
                ext=[JPG, CLS],
                missing_component_behavior="error",
                name=READER,
                shard_id=self.rank,
                num_shards=self.world_size,
                random_shuffle=train,
                initial_fill=self._fill(plan.samples),
                seed=epoch_seed(self.seed, plan.epoch, 0),
                pad_last_batch=False,
                stick_to_shard=False,
            )
            # Padded to the longest in the batch, so each arrives as one (batch, bytes) array.
            source = fn.pad(fn.get_property(jpegs, key="source_info"), fill_value=0)
            return dali_transform(jpegs, spec, decoder=decoder), fn.pad(labels, fill_value=0), source

        pipe = pipeline(checkpoint=checkpoint) if checkpoint else pipeline()
        try:
            pipe.build()
        except RuntimeError as exc:
            raise RuntimeError(f"{self.shards.split_dir}: cannot start the DALI pipeline: {_first_line(exc)}") from exc
        return pipe

    def __iter__(self) -> Iterator[Batch]:
        total = len(self)
        plan = self.shards.plan(
            self.epoch, seed=self.seed, shuffle=self.spec.train, rank=self.rank, world_size=self.world_size
        )
        if self.position >= total or not self.spec.train:
            self.position = 0  # an evaluation always starts from its first batch
        if self._pipe is None or self._pipe_at != (self.epoch, self.position):
            self._release()
            self._pipe = self._build(plan, self._checkpoint if self.position else None)
            self._pipe_at = (self.epoch, self.position)
        self._checkpoint = None
        pipe = self._pipe
        for index in range(self.position, total):
            try:
                images, labels, sources = pipe.run()
            except RuntimeError as exc:
                self._release()
                raise _diagnose(
                    self.shards,
                    plan,
                    index * self.batch_size + self._fill(plan.samples) + (PREFETCH_DEPTH + 1) * self.batch_size,
                    exc,
                ) from exc
            keep = min(self.batch_size, plan.samples - index * self.batch_size)
            batch = self._batch(images, labels, sources, keep)
            self.position, self._pipe_at = index + 1, (self.epoch, index + 1)
            yield batch
        self.position = 0
        self._release()

    def _batch(self, images: Any, labels: Any, sources: Any, keep: int) -> Batch:
        tensor = _to_torch(images.as_tensor())
        rows = np.asarray(sources.as_tensor())[:keep]
        keys = []
        for row in rows:  # "<tar path>:<offset>:<key>.jpg"
            keys.append(member_key(row.tobytes().rstrip(b"\0").rpartition(b":")[2].decode()))
        values = _label_ids(np.asarray(labels.as_tensor())[:keep], keys, rows)
        images_out = tensor[:keep] if keep < tensor.shape[0] else tensor
        if images_out.device != self.placement.torch_device:
            images_out = images_out.to(self.placement.torch_device)
        return Batch(
            images=images_out, labels=torch.from_numpy(values), sample_ids=[self.shards.sample_id(k) for k in keys]
        )


def _label_ids(digits: np.ndarray, keys: list[str], sources: np.ndarray) -> np.ndarray:
    """Label ids from the ``.cls`` members, ASCII digits zero-padded on the right: one row per sample."""
    present = digits != 0
    bad = present & ((digits < ord("0")) | (digits > ord("9")))
    bad_rows = np.flatnonzero(bad.any(axis=1) | ~present[:, :1].all(axis=1)) if digits.size else np.arange(len(keys))
    if bad_rows.size:
        i = int(bad_rows[0])
        tar = sources[i].tobytes().rstrip(b"\0").decode().rsplit(":", 2)[0] if sources.size else "?"
        raise ValueError(
            f"{tar}: key {keys[i]}: .cls is {digits[i][present[i]].tobytes()!r}, expected a label id in ASCII digits"
        )
    values = np.zeros(len(keys), dtype=np.int64)
    for column in range(digits.shape[1]):
        values = np.where(present[:, column], values * 10 + (digits[:, column].astype(np.int64) - ord("0")), values)
    return values


def _to_torch(tensor: Any) -> torch.Tensor:
    """A DALI tensor as a torch tensor without a copy (DALI's dynamic executor lets DLPack share the buffer)."""
    from nvidia.dali.backend import TensorGPU

    if isinstance(tensor, TensorGPU):
        with torch.cuda.device(tensor.device_id()):
            return torch.from_dlpack(tensor)  # DALI's stream is synchronised with torch's current one
    return torch.from_dlpack(tensor)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:  # an operator's error: what it met follows the pipeline definition's traceback
        return lines[lines.index("encountered:") + 1][:300]
    useful = [
        line
        for line in lines
        if not line.startswith(("Critical error", "Error in", "which was used", "File ", "Current pipeline"))
    ]
    return (useful or lines or [repr(exc)])[0][:300]


def _diagnose(shards: ShardSet, plan: EpochPlan, window: int, exc: RuntimeError) -> Exception:
    """Name the shard and key of an undecodable sample after DALI failed (its message names neither).

    DALI can only have read this rank's first ``window`` samples of the epoch's reading order (the
    consumed batches, the shuffle buffer and the prefetched batches), so those are decoded again
    with PIL, each read through the index's offsets.
    """
    stop = min(plan.stop, plan.start + window)
    for piece in plan.pieces(plan.start, stop):
        lines = piece.shard.index.read_text(encoding="ascii").splitlines()[1:]
        with open(piece.shard.path, "rb") as tar:
            for line in lines[piece.start : piece.stop]:
                fields = line.split()
                members = {
                    fields[i]: (int(fields[i + 1]), int(fields[i + 2]), fields[i + 3]) for i in range(0, len(fields), 4)
                }
                if JPG not in members:
                    return ValueError(f"{piece.shard.path}: sample {line[:60]!r} has no .{JPG} member")
                offset, size, name = members[JPG]
                tar.seek(offset)
                try:
                    with Image.open(io.BytesIO(tar.read(size))) as image:
                        image.load()
                except (OSError, SyntaxError, ValueError) as bad:
                    key = member_key(name)
                    return undecodable(
                        piece.shard.path, key, bad, sample_id=shards.sample_id(key), also=f" (DALI: {_first_line(exc)})"
                    )
    return RuntimeError(
        f"{shards.split_dir}: the DALI pipeline failed in epoch {plan.epoch} (samples {plan.start}..{stop} of the "
        f"epoch's order were decoded again with PIL without error): {_first_line(exc)}"
    )
