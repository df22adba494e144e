"""``dataset.json``'s contract: what is written is read back the same, to the byte; a bad file is
one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pawpipe.common.contracts.dataset_file import (
    ClassSelection,
    DatasetFile,
    ImageSpec,
    PixelStats,
    SelectionSummary,
    SplitCounts,
    find_dataset_file,
)
from pawpipe.common.contracts.labels_file import ClassWeights


def _doc(**kw) -> DatasetFile:
    return DatasetFile(
        format=1,
        label_field="emotion",
        labels=["a", "b"],
        num_classes=2,
        class_weights=ClassWeights(
            balanced=[0.75, 1.5], effective_number=[0.8, 1.2], effective_number_beta=0.9, computed_on="train"
        ),
        counts={
            "train": SplitCounts(manifest=4, written=3, failed=1, shards=1, bytes=10240, per_class=[2, 1]),
            "val": SplitCounts(manifest=1, written=1, failed=0, shards=1, bytes=10240, per_class=[0, 1]),
        },
        image=ImageSpec(
            encoding="JPEG", size=96, size_is="the shorter side", max_upscale=1.0, crop="bbox", margin=0.1, quality=90
        ),
        pixel_stats=PixelStats(
            computed_on="train", scale="0-255 (uint8 RGB)", pixels=9, mean=[1.5, 2.0, 3.0], std=[0.5, 0.5, 0.25]
        ),
        seed=0,
        shards={"train": ["shard-000000.tar"], "val": ["shard-000000.tar"]},
        fingerprint="f00d",
        **kw,
    )


def test_written_then_read_is_the_same_document_and_the_same_bytes(tmp_path: Path):
    doc = _doc()
    path = doc.write(tmp_path)
    assert path == tmp_path / "dataset.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert list(raw) == [
        "format",
        "label_field",
        "labels",
        "num_classes",
        "class_weights",
        "counts",
        "image",
        "pixel_stats",
        "seed",
        "shards",
        "fingerprint",
    ]
    assert list(raw["counts"]["train"]) == [
        "manifest",
        "written",
        "failed",
        "shards",
        "bytes",
        "per_class",
    ]  # no not_selected
    back = DatasetFile.read(path)
    assert back == doc
    assert back.write(tmp_path / "again").read_bytes() == path.read_bytes()


def test_a_data_diet_build_writes_its_selection_and_not_selected(tmp_path: Path):
    selection = SelectionSummary(
        method="el2n",
        keep=0.5,
        keep_per_class_min=1,
        near_duplicates_last=True,
        near_duplicates=0,
        near_duplicates_selected=0,
        scores=None,
        scores_sha256=None,
        train=4,
        selected=2,
        not_selected=2,
        per_class={
            "a": ClassSelection(train=3, selected=1, unscored=0),
            "b": ClassSelection(train=1, selected=1, unscored=0),
        },
    )
    doc = _doc(selection=selection)
    doc.counts["train"] = doc.counts["train"].model_copy(update={"not_selected": 2})
    raw = json.loads(doc.write(tmp_path).read_text(encoding="utf-8"))
    assert raw["selection"]["scores"] is None and raw["selection"]["per_class"]["a"] == {
        "train": 3,
        "selected": 1,
        "unscored": 0,
    }
    assert raw["counts"]["train"]["not_selected"] == 2 and "not_selected" not in raw["counts"]["val"]
    assert DatasetFile.read(tmp_path / "dataset.json") == doc


def test_a_hand_made_file_needs_only_labels_and_may_carry_other_fields(tmp_path: Path):
    (tmp_path / "dataset.json").write_text('{"labels": ["a"], "counts": {"train": {"written": 5}}, "notes": "mine"}')
    doc = DatasetFile.read(tmp_path / "dataset.json")
    assert (doc.labels, doc.counts["train"].model_dump(), doc.image, doc.class_weights) == (
        ["a"],
        {"written": 5},
        None,
        None,
    )


def test_a_writer_cannot_set_an_undeclared_field():
    with pytest.raises(ValidationError, match="label_names"):
        DatasetFile(labels=["a"], label_names=["a"])


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"counts": {}}, "labels: expected a value, got none"),
        ({"labels": "ab"}, "labels: expected a valid list, got 'ab'"),
        (
            {"labels": ["a"], "counts": {"train": {"per_class": [1, "x"]}}},
            "counts.train.per_class.1: expected a valid integer, got 'x'",
        ),
        ({"labels": ["a"], "image": {"size": 1.5}}, "image.size: expected a valid integer, got 1.5"),
        ({"labels": ["a"], "pixel_stats": {"mean": [1, 2, 3]}}, "pixel_stats.std: expected a value, got none"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_field(tmp_path: Path, doc: dict, problem: str):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as caught:
        DatasetFile.read(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_a_file_that_is_not_json_is_one_line(tmp_path: Path):
    path = tmp_path / "dataset.json"
    path.write_text('{"labels": ')
    with pytest.raises(ValueError) as caught:
        DatasetFile.read(path)
    assert (
        str(caught.value)
        == f"{path}: cannot read the shards' dataset description: Expecting value: line 1 column 12 (char 11)"
    )


def test_found_from_the_shards_root_or_a_split_folder(tmp_path: Path):
    _doc().write(tmp_path)
    (tmp_path / "val").mkdir()
    assert find_dataset_file(tmp_path) == find_dataset_file(tmp_path / "val") == tmp_path / "dataset.json"
    with pytest.raises(FileNotFoundError, match="expected dataset.json here or in the parent folder"):
        find_dataset_file(tmp_path / "val" / "deeper")
