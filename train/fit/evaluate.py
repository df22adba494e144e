"""Evaluation over a whole split, and per-sample predictions.

``evaluate`` feeds every batch into one ``MetricAccumulator`` and computes the metrics once from
the totals. ``predict`` turns each image's own logits into probabilities and a predicted label
(softmax and argmax along the class axis of that row, never over the whole output array) and
returns one row per sample **sorted by sample_id**, so the file is identical whatever the loader's
order, shard layout or number of ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import nn

from pawpipe.common.atomic import write_parquet
from pawpipe.train.config import TrainConfig
from pawpipe.train.data.batch import Batch, Loader
from pawpipe.train.data.dataset import read_dataset_info
from pawpipe.train.data.loader import open_loader, resolve_data_config
from pawpipe.train.data.shardset import ShardSet
from pawpipe.train.fit.checkpoint import load_checkpoint
from pawpipe.train.fit.device import Precision, resolve_device, resolve_precision
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.metrics import MetricAccumulator
from pawpipe.train.fit.model import PawNet, build_model

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        (
            "image_path",
            pa.string(),
        ),  # the source image (the manifest's path under the dataset root); null without shards
        ("label_id", pa.int64()),  # the label in the data (-1 when the split has none)
        ("label", pa.string()),
        ("pred_id", pa.int64()),
        ("pred", pa.string()),
        ("confidence", pa.float32()),  # probability of pred_id
        ("probs", pa.list_(pa.float32())),  # softmax over classes, index = label id (vocabulary order)
    ]
)


def _logits(
    model: nn.Module,
    loader: Loader,
    *,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    embeddings: bool = False,
) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                images = batch.images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with precision.autocast(device):
                    logits, embedding = model.forward_with_embedding(images) if embeddings else (model(images), None)
                labels = batch.labels.to(device, torch.int64, non_blocking=True)
                yield batch, logits.float(), labels, embedding.float() if embedding is not None else None
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    loader: Loader,
    *,
    loss_fn: ClassWeightedCE,
    vocabulary: list[str],
    device: torch.device,
    precision: Precision = Precision(None),
    channels_last: bool = False,
) -> dict[str, Any]:
    """Loss (the training objective), plain NLL, accuracy, macro-F1, per-class metrics, confusion matrix."""
    totals = MetricAccumulator(len(vocabulary), device=device)
    loss_fn = loss_fn.to(device)
    for _, logits, labels, _ in _logits(model, loader, device=device, precision=precision, channels_last=channels_last):
        terms, weight_total = loss_fn.terms(logits, labels)
        nll = nn.functional.cross_entropy(logits, labels, reduction="none")
        totals.update(labels, logits.argmax(dim=1), loss_terms=terms, weight_total=weight_total, nll=nll)
    totals.all_reduce()
    return totals.compute(vocabulary)


def predict(
    model: nn.Module,
    loader: Loader,
    *,
    vocabulary: list[str],
    device: torch.device,
    precision: Precision = Precision(None),
    channels_last: bool = False,
    embeddings: bool = False,
    image_paths: Mapping[str, str] | None = None,
) -> pa.Table:
    """One row per sample (``PREDICTION_SCHEMA``), sorted by ``sample_id``; a sample seen twice is an error.
    ``embeddings``: also the column ``embedding``, each image's penultimate features
    (``PawNet.forward_with_embedding``).
    ``image_paths``: sample_id -> source image (``ShardSet.image_paths``); None: a null ``image_path``."""
    ids: list[str] = []
    labels_out, preds_out, conf_out, probs_out, emb_out = [], [], [], [], []
    batches = _logits(
        model, loader, device=device, precision=precision, channels_last=channels_last, embeddings=embeddings
    )
    for batch, logits, labels, embedding in batches:
        probs = torch.softmax(logits, dim=1)  # per row: each image's own distribution over classes
        confidence, preds = probs.max(dim=1)
        ids.extend(batch.sample_ids)
        labels_out.append(labels.cpu())
        preds_out.append(preds.cpu())
        conf_out.append(confidence.cpu())
        probs_out.append(probs.cpu())
        if embedding is not None:
            emb_out.append(embedding.cpu())
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(s for s in ids if s in seen or seen.add(s))
        raise ValueError(
            f"predict: sample_id {dup!r} was yielded more than once; an evaluation loader must yield each sample once"
        )
    k = len(vocabulary)
    schema = (
        PREDICTION_SCHEMA.append(pa.field("embedding", pa.list_(pa.float32()))) if embeddings else PREDICTION_SCHEMA
    )
    if not ids:
        return schema.empty_table()
    label_ids = torch.cat(labels_out)
    pred_ids = torch.cat(preds_out)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    index = torch.tensor(order, dtype=torch.int64)
    label_ids, pred_ids = label_ids[index], pred_ids[index]
    confidence = torch.cat(conf_out)[index]
    probs = torch.cat(probs_out)[index]

    def name(i: int) -> str | None:
        return vocabulary[i] if 0 <= i < k else None

    columns = {}
    if embeddings:
        emb = torch.cat(emb_out)[index]
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1).numpy()), emb.shape[1]).cast(
            pa.list_(pa.float32())
        )
    return pa.table(
        {
            "sample_id": pa.array([ids[i] for i in order], pa.string()),
            "image_path": pa.array([(image_paths or {}).get(ids[i]) for i in order], pa.string()),
            "label_id": pa.array(label_ids.numpy()),
            "label": pa.array([name(i) for i in label_ids.tolist()], pa.string()),
            "pred_id": pa.array(pred_ids.numpy()),
            "pred": pa.array([name(i) for i in pred_ids.tolist()], pa.string()),
            "confidence": pa.array(confidence.numpy()),
            "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1).numpy()), k).cast(
                pa.list_(pa.float32())
            ),
            **columns,
        },
        schema=schema,
    )


# -- from a checkpoint: what `train eval` and `train predict` call ---------------------------------------
def load_for_inference(
    checkpoint: str | Path, *, device: torch.device, weights: str = "auto"
) -> tuple[PawNet, TrainConfig, list[str]]:
    """The network of a checkpoint with its config and vocabulary; ``weights``: auto (EMA if saved) | ema | model."""
    model, cfg, vocabulary, _ = _load(checkpoint, device=device, weights=weights)
    return model, cfg, vocabulary


def _load(
    checkpoint: str | Path, *, device: torch.device, weights: str
) -> tuple[PawNet, TrainConfig, list[str], dict | None]:
    state = load_checkpoint(checkpoint, map_location="cpu")
    cfg = TrainConfig.model_validate(state["config"])
    vocabulary = list(state["vocabulary"])
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights: expected auto, ema or model, got {weights!r}")
    if weights == "ema" and state.get("ema") is None:
        raise ValueError(f"{checkpoint}: --weights ema, but the run kept no EMA (optim.ema_decay = 0)")
    use_ema = weights == "ema" or (weights == "auto" and state.get("ema") is not None)
    model = build_model(len(vocabulary), arch=cfg.model.arch, drop_rate=cfg.model.drop_rate)
    model.load_state_dict(state["ema"] if use_ema else state["model"])
    log.info("weights: %s (%s)", checkpoint, "ema" if use_ema else "model")
    model.to(device).eval()
    return model, cfg, vocabulary, state.get("normalize")


def _inference_setup(
    checkpoint: str | Path,
    data: str | Path,
    *,
    device: str,
    batch_size: int | None,
    weights: str,
    loader: Loader | None,
) -> tuple[PawNet, TrainConfig, list[str], Loader, torch.device, Precision]:
    dev = resolve_device(device)
    model, cfg, vocabulary, normalize = _load(checkpoint, device=dev, weights=weights)
    if loader is None:
        info = read_dataset_info(data)
        if info.vocabulary != vocabulary:
            raise ValueError(
                f"{data}: vocabulary {info.vocabulary} differs from the checkpoint's {vocabulary}; label ids would not "
                "match"
            )
        loader = open_loader(
            data,
            resolve_data_config(cfg.data, train=False, batch_size=batch_size),
            device=str(dev),
            seed=cfg.seed,
            normalize=normalize,  # the pixel statistics the model was trained with, not the evaluated shards'
        )
    return model, cfg, vocabulary, loader, dev, resolve_precision(cfg.compute.amp, dev)


def eval_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    weights: str = "auto",
    class_weights: list[float] | None | str = "config",
    loader: Loader | None = None,
) -> dict[str, Any]:
    """``train eval``: the validation metrics of ``train run`` for any split, from a checkpoint.

    The loss uses the class-weight scheme of the run (read from ``dataset.json``) unless
    ``class_weights`` is given (a list, or None for unweighted).
    """
    model, cfg, vocabulary, loader, dev, precision = _inference_setup(
        checkpoint, data, device=device, batch_size=batch_size, weights=weights, loader=loader
    )
    if class_weights == "config":
        class_weights = read_dataset_info(data).weights(cfg.loss.class_weights)
    loss_fn = ClassWeightedCE(class_weights, label_smoothing=cfg.loss.label_smoothing)
    metrics = evaluate(
        model,
        loader,
        loss_fn=loss_fn,
        vocabulary=vocabulary,
        device=dev,
        precision=precision,
        channels_last=cfg.compute.channels_last,
    )
    return {"checkpoint": str(checkpoint), "data": str(data), **metrics}


def predict_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    *,
    out: str | Path,
    device: str = "auto",
    batch_size: int | None = None,
    weights: str = "auto",
    loader: Loader | None = None,
    embeddings: bool = False,
) -> pa.Table:
    """``train predict``: per-sample predictions of a checkpoint, written atomically to ``out`` (Parquet);
    ``embeddings``: with each image's penultimate features (the audit's neighbour view)."""
    model, cfg, vocabulary, loader, dev, precision = _inference_setup(
        checkpoint, data, device=device, batch_size=batch_size, weights=weights, loader=loader
    )
    shards = getattr(loader, "shards", None)  # the shard loaders' ShardSet; tensors in memory have no image files
    table = predict(
        model,
        loader,
        vocabulary=vocabulary,
        device=dev,
        precision=precision,
        channels_last=cfg.compute.channels_last,
        embeddings=embeddings,
        image_paths=shards.image_paths() if isinstance(shards, ShardSet) else None,
    )
    write_parquet(out, table)
    return table
