from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pawpipe.train.config import TrainConfig
from pawpipe.train.data.synthetic import TensorLoader, synthetic_images
from pawpipe.train.fit.checkpoint import save_checkpoint
from pawpipe.train.fit.evaluate import eval_checkpoint, predict, predict_checkpoint
from pawpipe.train.fit.model import build_model

VOCAB = ["a", "b", "c"]


def test_predictions_are_per_sample_and_sorted_by_sample_id():
    torch.manual_seed(0)
    model = build_model(3).eval()
    images, labels, _ = synthetic_images(10, num_classes=3, image_size=32, seed=3)
    ids = [f"s{n:02d}" for n in [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]]  # the loader's order is not sorted
    table = predict(
        model,
        TensorLoader(images, labels, ids, batch_size=4, train=False),
        vocabulary=VOCAB,
        device=torch.device("cpu"),
    )
    rows = table.to_pylist()
    assert [r["sample_id"] for r in rows] == sorted(ids)
    with torch.no_grad():
        for r in rows:
            i = ids.index(r["sample_id"])
            alone = torch.softmax(model(images[i : i + 1]), dim=1)[0]  # this image on its own
            assert r["probs"] == pytest.approx(alone.tolist(), abs=1e-5)
            assert r["pred_id"] == int(alone.argmax()) and r["pred"] == VOCAB[r["pred_id"]]
            assert r["label_id"] == int(labels[i]) and r["label"] == VOCAB[r["label_id"]]
            assert r["confidence"] == pytest.approx(max(r["probs"]), abs=1e-6)
            assert sum(r["probs"]) == pytest.approx(1.0, abs=1e-5)


def test_duplicate_samples_are_an_error():
    images, labels, _ = synthetic_images(4, num_classes=3, image_size=32)
    loader = TensorLoader(images, labels, ["x", "y", "x", "z"], batch_size=2, train=False)
    with pytest.raises(ValueError, match="'x' was yielded more than once"):
        predict(build_model(3).eval(), loader, vocabulary=VOCAB, device=torch.device("cpu"))


def test_predict_and_eval_from_a_checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    model = build_model(3)
    cfg = TrainConfig.model_validate({"compute": {"device": "cpu"}, "data": {"image_size": 32}})
    ckpt = save_checkpoint(
        tmp_path / "best.pt",
        {"model": model.state_dict(), "ema": None, "config": cfg.model_dump(mode="json"), "vocabulary": VOCAB},
    )
    images, labels, ids = synthetic_images(6, num_classes=3, image_size=32, seed=4)
    loader = TensorLoader(images, labels, ids, batch_size=4, train=False)
    out = tmp_path / "preds.parquet"
    predict_checkpoint(ckpt, tmp_path, out=out, device="cpu", loader=loader)
    written = pq.read_table(out)
    assert written.num_rows == 6 and written.column_names[:6] == [
        "sample_id",
        "image_path",
        "label_id",
        "label",
        "pred_id",
        "pred",
    ]
    assert written.column("image_path").to_pylist() == [None] * 6  # tensors in memory come from no image file
    metrics = eval_checkpoint(ckpt, tmp_path, device="cpu", loader=loader, class_weights=None)
    assert metrics["count"] == 6
    preds = written.column("pred_id").to_pylist()
    assert metrics["accuracy"] == pytest.approx(
        sum(p == y for p, y in zip(preds, written.column("label_id").to_pylist())) / 6
    )


def test_eval_normalises_inputs_as_the_model_was_trained_whatever_shards_it_reads(demo_clean: Path, tmp_path: Path):
    """A checkpoint carries the pixel mean/std it trained with; shards with other statistics in
    their dataset.json (a rebuilt or audited set) must not change what the model sees."""
    import json
    import shutil

    from pawpipe.shards.build import build
    from pawpipe.shards.config import ShardConfig
    from pawpipe.train.data.dataset import read_dataset_info
    from pawpipe.train.data.loader import LoaderSpec, open_loader

    shards = tmp_path / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=shards, size=64, max_samples=16, workers=1, quiet=True))
    other = tmp_path / "other"
    shutil.copytree(shards, other)
    doc = json.loads((other / "dataset.json").read_text())
    doc["pixel_stats"] = {"mean": [10.0, 20.0, 30.0], "std": [90.0, 80.0, 70.0]}
    (other / "dataset.json").write_text(json.dumps(doc))

    vocabulary = read_dataset_info(shards).vocabulary
    torch.manual_seed(0)
    model = build_model(len(vocabulary))
    cfg = TrainConfig.model_validate(
        {"compute": {"device": "cpu"}, "data": {"image_size": 32, "loader": "dali", "workers": 1}}
    )
    trained_with = read_dataset_info(shards)
    normalize = {"mean": list(trained_with.mean), "std": list(trained_with.std)}
    ckpt = save_checkpoint(
        tmp_path / "best.pt",
        {
            "model": model.state_dict(),
            "ema": None,
            "config": cfg.model_dump(mode="json"),
            "vocabulary": vocabulary,
            "normalize": normalize,
        },
    )
    same, moved = (eval_checkpoint(ckpt, s / "val", device="cpu") for s in (shards, other))
    assert same.pop("data") != moved.pop("data") and same == moved  # loss, accuracy, confusion: all equal
    # the mechanism that would otherwise change it: the other set's own statistics give other inputs
    first = lambda split: (  # noqa: E731
        next(
            iter(
                open_loader(
                    split,
                    LoaderSpec(train=False, batch_size=4, image_size=32, backend="dali", workers=1),
                    device="cpu",
                    seed=0,
                )
            )
        ).images
    )
    assert not torch.equal(first(shards / "val"), first(other / "val"))


def test_predict_names_each_samples_image_and_says_where_its_weights_came_from(
    demo_clean: Path, demo_shards: Path, tmp_path: Path, caplog
):
    """Each prediction carries the source image's path (the manifest's ``image_path``, as the shards
    recorded it); loading the checkpoint's weights is not logged as a random initialisation."""
    import logging

    import polars as pl

    from pawpipe.train.data.dataset import read_dataset_info

    shards = demo_shards
    vocabulary = read_dataset_info(shards).vocabulary
    cfg = TrainConfig.model_validate({"compute": {"device": "cpu"}, "data": {"image_size": 32, "workers": 1}})
    ckpt = save_checkpoint(
        tmp_path / "best.pt",
        {
            "model": build_model(len(vocabulary)).state_dict(),
            "ema": None,
            "config": cfg.model_dump(mode="json"),
            "vocabulary": vocabulary,
        },
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        table = predict_checkpoint(ckpt, shards / "val", out=tmp_path / "preds.parquet", device="cpu")
    manifest = pl.read_parquet(demo_clean / "manifest.parquet").filter(pl.col("split") == "val")
    written = pl.read_parquet(tmp_path / "preds.parquet")
    assert written.height == table.num_rows == 35
    assert written.select("sample_id", "image_path").sort("sample_id").rows() == (
        manifest.select("sample_id", "image_path").sort("sample_id").rows()
    )
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "random initialisation" in m]
    assert f"weights: {ckpt} (model)" in messages
