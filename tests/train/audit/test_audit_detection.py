"""What the audit finds on a planted case, and the gallery it shows of it.

The session fixture ``audited_runs`` (conftest.py) trains a tiny real run on 32 synthetic images
whose labels at four known positions (``FLIPPED``: samples 0, 5, 10 and 15) are moved to the next
class. Its audit is scored against those four with ``train.audit.score.score_audit``, the code
behind ``train audit --score``, ``make demo``'s figures and ``bench/noise_bench.py``. The run is
deterministic (seed 0, one CPU thread, no data-loading randomness outside the seed), so the
figures are exact: two runs in a row gave the same flags. The run itself is a weak judge (3
epochs, validation accuracy 0.25 on 8 samples), so the figures pin the mechanism, not its quality.

The audit is given the run's images as a real shard (``shards.writer.ShardWriter`` and
``samples.parquet``: the part of a shards split the gallery reads), with ``predict=False``: the
eval-mode pass would need a whole ``shards build`` output, and the verdicts are the ones an audit
without shards gives (the dynamics' mean probabilities as the model's view).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl
import pytest
import torch
from PIL import Image

from common.contracts.shard_tables import SAMPLES, SAMPLES_FILE
from common.contracts.tar_layout import CLS, JPG, JSON
from shards.writer import ShardWriter
from train.audit.audit import AuditJob, run_audit
from train.audit.score import score_audit
from train.data.synthetic import synthetic_images


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
        {"sample_id": ids, "key": ids, "shard": tars, "label_id": labels, "decode_path": ["full"] * len(ids), "reason": [None] * len(ids)},
        schema=pl.Schema(SAMPLES),
    ).write_parquet(split_dir / SAMPLES_FILE)  # fmt: skip
    return jpegs


@pytest.fixture(scope="module")
def audit(audited_runs, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("audit_detection")
    x, y, ids = synthetic_images(32, num_classes=4, image_size=32, seed=1)  # the fixture's training images
    assert ids == audited_runs["ids"]
    noisy = pl.read_parquet(audited_runs["clean"] / "manifest.parquet").get_column("label").to_list()
    jpegs = write_split(base / "shards" / "train", ids, x, [["happy", "calm", "angry", "scared"].index(v) for v in noisy])
    out = base / "audit"
    suspects = run_audit(AuditJob(runs=[audited_runs["runs"][0]], manifest=audited_runs["clean"], out=out,
                                  shards=base / "shards", predict=False, gallery=48))  # fmt: skip
    return {"suspects": suspects, "out": out, "jpegs": jpegs}


def test_audit_finds_the_planted_flips_at_the_measured_precision_and_recall(audited_runs, audit):
    manifest = pl.read_parquet(audited_runs["clean"] / "manifest.parquet")
    planted = manifest.filter(pl.col("sample_id").is_in(audited_runs["flipped"])).select("image_path")
    scores = {r["signal"]: r for r in score_audit(audit["suspects"], planted).iter_rows(named=True)}

    verdict = scores["label_issue (the verdict)"]
    assert (verdict["flagged"], verdict["true_positives"]) == (9, 3)
    assert verdict["precision"] == 3 / 9 and verdict["recall"] == 3 / 4
    assert verdict["f1"] == pytest.approx(2 * (1 / 3) * (3 / 4) / (1 / 3 + 3 / 4))
    flagged = set(audit["suspects"].filter(pl.col("verdict") == "label_issue").get_column("sample_id"))
    assert set(audited_runs["flipped"]) - flagged == {"syn-1-0000010"}  # the one flip both views missed
    # the two views the verdict needs together, each flagging more than their agreement
    assert (scores["AUM at or below the cut-off"]["flagged"], scores["AUM at or below the cut-off"]["true_positives"]) == (10, 3)
    assert (scores["the model prefers another class"]["flagged"], scores["the model prefers another class"]["true_positives"]) == (11, 3)
    # no eval-mode pass: no neighbour view, so no verdict per video
    assert scores["the video's verdict"]["flagged"] == scores["neighbours prefer another class"]["flagged"] == 0


def test_gallery_shows_each_suspect_once_with_its_image(audit):
    out, suspects = audit["out"], audit["suspects"]
    shown = suspects.filter(pl.col("verdict") != "ok").sort("rank")
    assert shown.height == 12  # every suspect: fewer than the gallery's 48

    files = sorted(p.name for p in (out / "gallery").iterdir())
    assert files == sorted(f"{s}.jpg" for s in shown.get_column("sample_id"))
    for sample_id in shown.get_column("sample_id"):  # the shard's JPEG, byte for byte
        assert (out / "gallery" / f"{sample_id}.jpg").read_bytes() == audit["jpegs"][sample_id]

    page = (out / "audit.html").read_text(encoding="utf-8")
    cards = re.findall(r'<div class="card (\w+)"><img src="gallery/([^"]+)\.jpg" alt=""><div><b>#(\d+)</b>.*?<code>([^<]+)</code>', page)
    # one card per gallery image, in rank order, each naming the sample its image shows
    assert [(v, image, int(r), code) for v, image, r, code in cards] == [
        (row["verdict"], row["sample_id"], row["rank"], row["sample_id"]) for row in shown.iter_rows(named=True)
    ]
    assert page.count('src="gallery/') == len(files) and "no image" not in page
