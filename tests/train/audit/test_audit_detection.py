"""What the audit finds on a planted case, and the gallery it shows of it.

The planted case is a training run's **dynamics written by the test**, through the contract's
writer (``train.fit.dynamics.EpochDynamics``), for 40 images of 4 classes over 10 epochs: the story
of each sample is set by hand, so what the audit must find is known exactly, on every machine. (A
real tiny training run gave 9, 8 or 9 flags with 3, 3 or 1 of them planted, on one machine, by the
CPU kernels torch picked: ``ATEN_CPU_CAPABILITY`` unset, ``avx2`` or ``default``. The figures of a
trained run are a measurement, made by ``bench/noise_bench.py``, not a test.)

- ``FLIPPED`` (0, 5, 10, 15): the label is moved to the next class; the image shows the old one.
  0, 5, 10: the given label's logit stays low, the shown class's climbs; 15 is memorised from the
  second epoch on (its given label wins), which no signal of one run can tell from a right label.
- ``HARD`` (20, 25): right labels on images that look like the next class, with a flip's story:
  no signal of one run can tell them from a flip either.
- ``FORGOTTEN`` (30): a right label the run learned, then lost hard for three epochs (another
  class far ahead): its AUM is the lowest of all, but the model's mean view keeps its label. One
  view alone: ``ambiguous``, not a label issue (the verdict needs both).
- The other 33: right labels, learned at a pace of their own.

So the verdict flags 0, 5, 10, 20 and 25: precision 3/5, recall 3/4. The audit reads the run as any
run folder, scores with ``train.audit.score.score_audit`` (the code behind ``train audit --score``,
``make demo``'s figures and the noise bench), and cuts its gallery from a real shard of the images.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from pawpipe.common.contracts.shard_tables import SAMPLES, SAMPLES_FILE
from pawpipe.common.contracts.tar_layout import CLS, JPG, JSON
from pawpipe.shards.writer import ShardWriter
from pawpipe.train.audit.audit import AuditJob, run_audit
from pawpipe.train.audit.score import score_audit
from pawpipe.train.config import load_train_config
from pawpipe.train.data.synthetic import synthetic_images
from pawpipe.train.fit.dynamics import EpochDynamics
from pawpipe.train.fit.runrecord import RunRecord

VOCAB = ["happy", "calm", "angry", "scared"]
N, EPOCHS = 40, 10
FLIPPED, MEMORISED, HARD, FORGOTTEN = (0, 5, 10, 15), 15, (20, 25), 30


def write_split(split_dir: Path, ids: list[str], images: torch.Tensor, labels: list[int]) -> dict[str, bytes]:
    """One real tar and ``samples.parquet`` holding ``images`` as JPEGs; sample_id -> the JPEG's bytes."""
    writer = ShardWriter(split_dir, "shard-000000", max_bytes=1 << 30)
    jpegs, tars = {}, []
    for sample_id, image, label in zip(ids, images, labels, strict=True):
        pixels = ((image - image.min()) / (image.max() - image.min()) * 255).byte().permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=90)
        jpegs[sample_id] = buf.getvalue()
        tars.append(writer.add(sample_id, {CLS: str(label).encode(), JPG: jpegs[sample_id], JSON: b"{}"}))
    writer.close()
    pl.DataFrame(
        {
            "sample_id": ids,
            "key": ids,
            "shard": tars,
            "label_id": labels,
            "decode_path": ["full"] * len(ids),
            "reason": [None] * len(ids),
        },
        schema=pl.Schema(SAMPLES),
    ).write_parquet(split_dir / SAMPLES_FILE)
    return jpegs


def write_planted_run(run_dir: Path, ids: list[str], given: np.ndarray, shown: np.ndarray) -> None:
    """A run folder as ``train run`` leaves it, whose dynamics tell the story above (one batch an epoch)."""
    record = RunRecord(run_dir, tensorboard=False)
    record.write_start(
        load_train_config(values={"schedule.epochs": EPOCHS}).model_dump(mode="json"),
        seed=0,
        device="none (planted)",
        extra={"vocabulary": VOCAB, "batches_per_epoch": 1, "steps_per_epoch": 1},
    )
    rows = np.arange(N)
    pace = 1.0 + (rows % 7) / 10  # each right label's own pace: the AUMs spread
    for epoch in range(EPOCHS):
        z = np.zeros((N, len(VOCAB)), dtype=np.float32)
        z[rows, shown] += 2.0 + 0.4 * epoch * pace
        memorised = rows == MEMORISED
        z[memorised, given[memorised]] += 1.0 + 1.0 * epoch
        if epoch >= EPOCHS - 3:
            z[FORGOTTEN, (shown[FORGOTTEN] + 1) % len(VOCAB)] = 40.0
        logits, labels = torch.from_numpy(z), torch.from_numpy(given)
        probs = logits.softmax(dim=1)
        own = logits.gather(1, labels[:, None])[:, 0]
        other = logits.scatter(1, labels[:, None], -torch.inf).max(dim=1).values
        dynamics = EpochDynamics(run_dir / "dynamics", epoch)
        dynamics.add(
            ids,
            step=epoch,
            labels=labels,
            preds=logits.argmax(dim=1),
            margin=own - other,
            probs=probs,
            loss=-probs.gather(1, labels[:, None])[:, 0].log(),
        )
        dynamics.close(1)
        record.log("train", step=epoch, epoch=epoch, train_loss=1.0, train_accuracy=0.9, lr=1e-3)
        record.log(
            "eval",
            step=epoch,
            epoch=epoch,
            end_of_epoch=True,
            count=40,
            loss=1.0,
            accuracy=0.9,
            macro_f1=0.9,
            per_class={name: {"support": 10} for name in VOCAB},
        )
    record.close()


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("audit_detection")
    x, _, ids = synthetic_images(N, num_classes=len(VOCAB), image_size=32, seed=1)
    truth = np.arange(N) % len(VOCAB)
    given = truth.copy()
    given[list(FLIPPED)] = (truth[list(FLIPPED)] + 1) % len(VOCAB)
    shown = truth.copy()  # the class each image shows (what the dynamics climb towards)
    shown[list(HARD)] = (truth[list(HARD)] + 1) % len(VOCAB)
    write_planted_run(base / "runs" / "planted", ids, given, shown)
    manifest = pl.DataFrame(
        {
            "sample_id": ids,
            "image_path": [f"frames/{s}.jpg" for s in ids],
            "group_id": [f"video{i // 4}" for i in range(N)],
            "split": ["train"] * N,
            "label": [VOCAB[i] for i in given],
        }
    )
    (base / "clean").mkdir()
    manifest.write_parquet(base / "clean" / "manifest.parquet")
    jpegs = write_split(base / "shards" / "train", ids, x, given.tolist())
    out = base / "audit"
    suspects = run_audit(
        AuditJob(
            runs=[base / "runs" / "planted"],
            manifest=base / "clean",
            out=out,
            shards=base / "shards",
            predict=False,
            gallery=48,
        )
    )
    planted = manifest.filter(pl.col("sample_id").is_in([ids[i] for i in FLIPPED])).select("image_path")
    return {"suspects": suspects, "out": out, "jpegs": jpegs, "ids": ids, "planted": planted}


def test_audit_finds_the_planted_flips_at_the_planted_precision_and_recall(audit):
    ids, suspects = audit["ids"], audit["suspects"]
    flagged = suspects.filter(pl.col("verdict") == "label_issue").get_column("sample_id").sort().to_list()
    assert flagged == sorted(ids[i] for i in (0, 5, 10, *HARD))
    scores = {r["signal"]: r for r in score_audit(suspects, audit["planted"]).iter_rows(named=True)}
    verdict = scores["label_issue (the verdict)"]
    assert (verdict["flagged"], verdict["true_positives"], verdict["precision"], verdict["recall"]) == (
        5,
        3,
        3 / 5,
        3 / 4,
    )
    assert verdict["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    # each of the two views the verdict needs flags the five, the AUM also the forgotten one;
    # neither sees the memorised flip
    assert (
        scores["the model prefers another class"]["flagged"],
        scores["the model prefers another class"]["true_positives"],
    ) == (5, 3)
    assert (
        scores["AUM at or below the cut-off"]["flagged"],
        scores["AUM at or below the cut-off"]["true_positives"],
    ) == (6, 3)
    verdicts = dict(suspects.select("sample_id", "verdict").iter_rows())
    assert verdicts[ids[MEMORISED]] == "ok"
    assert verdicts[ids[FORGOTTEN]] == "ambiguous"  # the lowest AUM, but the model keeps its label
    # no eval-mode pass: no neighbour view, so no verdict per video
    assert scores["the video's verdict"]["flagged"] == scores["neighbours prefer another class"]["flagged"] == 0


def test_gallery_shows_each_suspect_once_with_its_image(audit):
    out, suspects = audit["out"], audit["suspects"]
    shown = suspects.filter(pl.col("verdict") != "ok").sort("rank")
    assert shown.height == 6  # every suspect: fewer than the gallery's 48

    files = sorted(p.name for p in (out / "gallery").iterdir())
    assert files == sorted(f"{s}.jpg" for s in shown.get_column("sample_id"))
    for sample_id in shown.get_column("sample_id"):  # the shard's JPEG, byte for byte
        assert (out / "gallery" / f"{sample_id}.jpg").read_bytes() == audit["jpegs"][sample_id]

    page = (out / "audit.html").read_text(encoding="utf-8")
    cards = re.findall(
        r'<div class="card (\w+)"><img src="gallery/([^"]+)\.jpg" alt=""><div><b>#(\d+)</b>.*?<code>([^<]+)</code>',
        page,
    )
    # one card per gallery image, in rank order, each naming the sample its image shows
    assert [(v, image, int(r), code) for v, image, r, code in cards] == [
        (row["verdict"], row["sample_id"], row["rank"], row["sample_id"]) for row in shown.iter_rows(named=True)
    ]
    assert page.count('src="gallery/') == len(files) and "no image" not in page
