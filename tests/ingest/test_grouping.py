"""The video is the unit in every layout: ``ingest.grouping`` rules, and real YOLO / COCO datasets of
video frames cleaned end to end, whose frames of one video never land in two splits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _fixtures_formats import coco_doc, write_json
from PIL import Image

from pawpipe.ingest.clean import clean
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.grouping import GroupBy, apply_grouping

CLASSES = ("cat", "dog", "bird")


def _records(paths: list[str], labels: list[str] | None = None, **extra: list) -> pl.DataFrame:
    labels = labels or [CLASSES[i % len(CLASSES)] for i in range(len(paths))]
    return pl.DataFrame({"image_path": paths, "group_id": paths, "label": labels, **extra})


@pytest.mark.parametrize(
    ("rule", "paths", "groups"),
    [
        (
            "auto",
            ["images/train/v1_frame0001.jpg", "images/val/v1_frame0002.jpg", "images/val/v2_frame1.jpg"],
            ["images/v1", "images/v1", "images/v2"],
        ),
        ("auto", ["train/v1/0001.jpg", "valid/v1/0002.png", "train/v2/0001.jpg"], ["v1", "v1", "v2"]),
        ("auto", ["img/clipA_17.jpg", "img/clipA_18.jpg", "img/clipB_1.jpg"], ["img/clipA", "img/clipA", "img/clipB"]),
        (
            "auto",
            ["train/images/v2_frame3_jpg.rf.0a9fbc.jpg", "train/images/v3_frame3_jpg.rf.9c.jpg"],
            ["images/v2", "images/v3"],
        ),  # Roboflow's export suffix
        ("folder", ["cat/v1/a.jpg", "dog/v1/b.jpg", "x.jpg"], ["cat/v1", "dog/v1", "x.jpg"]),
        ("stem:^(cam\\d+)", ["cam1-morning.jpg", "cam1-night.jpg", "other.jpg"], ["cam1", "cam1", "other.jpg"]),
        ("stem:^cam\\d", ["cam1-a.jpg", "cam2-b.jpg"], ["cam1", "cam2"]),  # no capture group: the whole match
        ("none", ["v1_frame1.jpg", "v1_frame2.jpg"], ["v1_frame1.jpg", "v1_frame2.jpg"]),
    ],
)
def test_rules_give_these_groups(rule: str, paths: list[str], groups: list[str]) -> None:
    # one class: "auto" takes a naming that gives at least two groups
    grouped = apply_grouping(_records(paths, ["cat"] * len(paths)), GroupBy.parse(rule))
    assert grouped.frame.get_column("group_id").to_list() == groups
    assert grouped.groups == len(set(groups))


def test_column_rule_and_source_groups() -> None:
    frame = _records(["a.jpg", "b.jpg", "c.jpg"], subject=["s1", "s1", None])
    assert apply_grouping(frame, GroupBy.parse("column:subject")).frame.get_column("group_id").to_list() == [
        "s1",
        "s1",
        "c.jpg",
    ]
    with pytest.raises(ValueError, match="column:owner: expected a column of the annotations"):
        apply_grouping(frame, GroupBy.parse("column:owner"))
    sourced = frame.with_columns(group_id=pl.Series(["videoA", "videoA", "videoB"]))
    for rule in ("auto", "source"):  # a source's own groups win over any naming
        grouped = apply_grouping(sourced, GroupBy.parse(rule))
        assert grouped.frame.get_column("group_id").to_list() == ["videoA", "videoA", "videoB"]
        assert grouped.rule == "the source's own groups"


def test_auto_sets_aside_a_naming_too_coarse_to_split_by() -> None:
    voc = [f"JPEGImages/{year}_{i:06d}.jpg" for year in range(2008, 2013) for i in range(12)]  # Pascal VOC ids
    grouped = apply_grouping(_records(voc, [f"c{i % 20}" for i in range(len(voc))]), GroupBy.parse("auto"))
    assert grouped.groups == len(voc)
    assert grouped.warning.startswith(
        "image names look like video frames (<video>_<N>) but would make 5 groups for 20 classes"
    )


def test_auto_warns_when_only_some_names_look_like_frames() -> None:
    paths = [f"v{v}_frame{f}.jpg" for v in range(6) for f in range(3)] + ["a.jpg", "b.jpg", "c.jpg"]
    grouped = apply_grouping(_records(paths), GroupBy.parse("auto"))
    assert grouped.groups == len(paths)
    assert grouped.warning.startswith("86% of the image names look like video frames, not all")
    assert apply_grouping(_records(["a.jpg", "b.jpg"]), GroupBy.parse("auto")).warning is None


@pytest.mark.parametrize("text", ["video", "stem:", "stem:(", "column:", "folder:x"])
def test_unknown_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--group-by"):
        GroupBy.parse(text)


# -- real datasets of video frames ---------------------------------------------------------------------------
def _frame(video: int, index: int, path: Path) -> None:
    """A real JPEG: the video's own random scene, moved one pixel per frame (consecutive frames look alike)."""
    scene = np.random.default_rng(video).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(scene).resize((80, 80), Image.Resampling.BILINEAR))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(big[index : index + 48, index : index + 64]).save(path, quality=90)


def _yolo_videos(root: Path, videos: int, frames: int, *, split_of=None) -> None:
    """Ultralytics YOLO layout, ``video012_frame0005.jpg``; ``split_of(video, frame)`` picks a split folder
    (or none)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES)))
    for v in range(videos):
        for f in range(frames):
            split = split_of(v, f) if split_of else None
            sub = f"{split}/" if split else ""
            name = f"video{v:03d}_frame{f:04d}"
            _frame(v, f, root / "images" / f"{sub}{name}.jpg")
            label = root / "labels" / f"{sub}{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{v % len(CLASSES)} 0.5 0.5 0.5 0.5\n")


def _splits_per_group(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "manifest.parquet").group_by("group_id").agg(pl.col("split").n_unique().alias("k"))


def test_yolo_frames_of_a_video_never_straddle_splits(tmp_path: Path) -> None:
    _yolo_videos(tmp_path / "raw", 24, 10)
    result = clean(CleanConfig(root=tmp_path / "raw", out=tmp_path / "clean", val_fraction=0.25, quiet=True))
    manifest = result.manifest
    assert manifest.height == 240
    assert result.report["grouping"] == {
        "rule": "frame naming <video>_frame<N>",
        "images": 240,
        "groups": 24,
        "warning": None,
    }
    per_group = _splits_per_group(tmp_path / "clean")
    assert per_group.height == 24 and per_group.get_column("k").max() == 1
    assert set(manifest.get_column("split")) == {"train", "val"}
    assert result.report["groups_in_both_splits"] == []
    # each class has validation videos: stratified by class
    assert manifest.filter(pl.col("split") == "val").get_column("label").n_unique() == len(CLASSES)
    # the near-duplicate rule now compares frames within a video: one-pixel moves of one scene are found
    assert result.report["near_duplicates"]["by_distance"]["8"]["near_duplicates"] > 0
    # --group-by none gives back the old behaviour, frames of one video in both splits
    leaky = clean(
        CleanConfig(root=tmp_path / "raw", out=tmp_path / "none", val_fraction=0.25, group_by="none", quiet=True)
    )
    by_video = leaky.manifest.with_columns(video=pl.col("image_path").str.extract(r"(video\d+)")).group_by("video")
    assert by_video.agg(pl.col("split").n_unique().alias("k")).get_column("k").max() == 2


def test_data_split_folders_that_cut_videos_are_listed_and_resplit(tmp_path: Path) -> None:
    # Roboflow-like: frames sorted into train/valid by frame, not by video
    _yolo_videos(tmp_path / "raw", 12, 6, split_of=lambda v, f: "valid" if f == 5 and v % 2 == 0 else "train")
    result = clean(CleanConfig(root=tmp_path / "raw", out=tmp_path / "clean", quiet=True))
    leaked = [f"images/video{v:03d}" for v in range(0, 12, 2)]
    assert result.report["groups_in_both_splits"] == leaked
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "pawpipe.ingest",
            "clean",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "cli"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "grouped by frame naming <video>_frame<N>: 72 images in 12 groups" in cli.stdout
    assert (
        "the data's own split puts 6 groups in more than one split (images/video000, images/video002, images/video004 "
        "...)" in cli.stderr
    )
    assert "groups in both splits" in (tmp_path / "cli" / "report.html").read_text(encoding="utf-8")

    resplit = clean(
        CleanConfig(
            root=tmp_path / "raw", out=tmp_path / "resplit", resplit_by_group=True, val_fraction=0.25, quiet=True
        )
    )
    assert resplit.report["groups_in_both_splits"] == []
    assert _splits_per_group(tmp_path / "resplit").get_column("k").max() == 1
    assert resplit.manifest.height == 72
    assert resplit.manifest.filter(pl.col("split") == "val").get_column("label").n_unique() == len(CLASSES)


def test_coco_video_id_is_the_group(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    categories = {1: "cat", 2: "dog"}
    for split, frames in (("train", range(0, 4)), ("val", range(4, 6))):
        images, annotations = [], []
        for v in range(4):
            for f in frames:
                image_id = v * 10 + f
                name = f"clip{v}-{f}.jpg"  # a naming no rule knows: only video_id says these are one video
                _frame(v, f, root / f"{split}2017" / name)
                images.append({"id": image_id, "file_name": name, "width": 64, "height": 48, "video_id": v + 1})
                annotations.append(
                    {"id": image_id, "image_id": image_id, "category_id": 1 + v % 2, "bbox": [4, 4, 20, 20]}
                )
        doc = coco_doc([], annotations, categories)
        doc["images"] = images
        doc["videos"] = [{"id": v + 1, "name": f"clip{v}"} for v in range(3)]  # the fourth has no name
        write_json(root / "annotations" / f"instances_{split}2017.json", doc)
    result = clean(CleanConfig(root=root, out=tmp_path / "clean", quiet=True))
    groups = dict(result.manifest.select("image_path", "group_id").iter_rows())
    assert groups["train2017/clip0-0.jpg"] == groups["val2017/clip0-5.jpg"] == "clip0"
    assert groups["train2017/clip3-1.jpg"] == "annotations/instances_train2017.json#video4"
    assert groups["val2017/clip3-4.jpg"] == "annotations/instances_val2017.json#video4"
    assert result.report["grouping"]["rule"] == "the source's own groups"
    assert result.report["groups_in_both_splits"] == ["clip0", "clip1", "clip2"]
    resplit = clean(CleanConfig(root=root, out=tmp_path / "resplit", resplit_by_group=True, quiet=True))
    assert resplit.report["groups_in_both_splits"] == []
    assert json.loads((tmp_path / "resplit" / "clean_config.json").read_text())["resplit_by_group"] is True


def _audit_of(clean_dir: Path, out: Path, flagged_video: str, suggested: str) -> None:
    """An audit folder as `train audit` writes it, whose only verdict is one whole video's (every frame ok alone)."""
    train = pl.read_parquet(clean_dir / "manifest.parquet").filter(pl.col("split") == "train")
    video = pl.col("group_id") == flagged_video
    out.mkdir()
    train.select(
        "sample_id",
        "group_id",
        "label",
        verdict=pl.lit("ok"),
        suspect_score=pl.lit(0.5),
        suggested_label="label",
        reason=pl.lit("no signal flags it"),
        group_verdict=pl.when(video).then(pl.lit("label_issue")).otherwise(pl.lit("ok")),
        group_suggested_label=pl.when(video).then(pl.lit(suggested)).otherwise("label"),
    ).write_parquet(out / "suspects.parquet")


def test_a_wrong_video_is_dropped_or_relabelled_frame_by_frame(tmp_path: Path) -> None:
    _yolo_videos(tmp_path / "raw", 12, 5)
    first = clean(CleanConfig(root=tmp_path / "raw", out=tmp_path / "clean", val_fraction=0.25, quiet=True))
    video = first.manifest.filter(pl.col("split") == "train").get_column("group_id")[0]
    frames = first.manifest.filter(pl.col("group_id") == video)
    given = frames.get_column("label")[0]
    suggested = next(c for c in CLASSES if c != given)
    _audit_of(tmp_path / "clean", tmp_path / "audit", video, suggested)

    dropped = clean(
        CleanConfig(
            root=tmp_path / "raw", out=tmp_path / "dropped", val_fraction=0.25, suspects=tmp_path / "audit", quiet=True
        )
    )
    quarantined = dropped.quarantine.filter(pl.col("rule").list.contains("label.suspect"))
    assert sorted(quarantined.get_column("sample_id")) == sorted(frames.get_column("sample_id"))
    assert quarantined.get_column("detail").str.contains(f"video {video}: label_issue").all()
    assert dropped.manifest.height + dropped.quarantine.height == dropped.report["records_in"] == 60

    rules = tmp_path / "relabel.toml"
    rules.write_text('[rules."label.suspect"]\naction = "clip"\n')
    relabelled = clean(
        CleanConfig(
            root=tmp_path / "raw",
            out=tmp_path / "relabelled",
            val_fraction=0.25,
            suspects=tmp_path / "audit",
            rules=rules,
            quiet=True,
        )
    )
    moved = relabelled.manifest.filter(pl.col("label_original").is_not_null())
    assert sorted(moved.get_column("sample_id")) == sorted(frames.get_column("sample_id"))
    assert set(moved.get_column("label")) == {suggested} and set(moved.get_column("label_original")) == {given}

    rules.write_text('[rules."label.suspect"]\naction = "drop"\ngroups = false\n')  # the frame verdicts alone: nothing
    frames_only = clean(
        CleanConfig(
            root=tmp_path / "raw",
            out=tmp_path / "frames_only",
            val_fraction=0.25,
            suspects=tmp_path / "audit",
            rules=rules,
            quiet=True,
        )
    )
    assert frames_only.manifest.height == 60


def test_review_decides_whole_videos(tmp_path: Path) -> None:
    from pawpipe.train.audit.audit import read_review_sheet, review

    _yolo_videos(tmp_path / "raw", 12, 5)
    clean(CleanConfig(root=tmp_path / "raw", out=tmp_path / "clean", val_fraction=0.25, quiet=True))
    train = pl.read_parquet(tmp_path / "clean" / "manifest.parquet").filter(pl.col("split") == "train")
    a, b = train.get_column("group_id").unique().sort()[:2]
    _audit_of(tmp_path / "clean", tmp_path / "audit", a, "cat")
    one = train.filter(pl.col("group_id") == b).get_column("sample_id")[0]
    decisions = review(tmp_path / "audit", accept=[one], accept_groups=[a], reject_groups=[b])
    expected = [(s, "accept") for s in train.filter(pl.col("group_id") == a).get_column("sample_id")]
    expected += [
        (s, "accept" if s == one else "reject") for s in train.filter(pl.col("group_id") == b).get_column("sample_id")
    ]
    assert decisions.select("sample_id", "decision").rows() == sorted(
        expected
    )  # a frame named alone wins over its video
    with pytest.raises(ValueError, match=r"no groups \['nope'\]"):
        review(tmp_path / "audit", accept_groups=["nope"])
    sheet = tmp_path / "sheet.csv"
    pl.DataFrame(
        {"group_id": [a, b, b], "sample_id": [None, None, one], "decision": ["accept", "reject", "Accept"]}
    ).write_csv(sheet)
    assert read_review_sheet(sheet) == ([one], [], [a], [b])


def test_the_terminal_says_which_layout_and_files_were_read(tmp_path: Path) -> None:
    from _fixtures_formats import make_coco

    root = tmp_path / "raw"
    _yolo_videos(root, 6, 2)
    make_coco(root)  # a second dataset under the same folder: a COCO download beside the YOLO one
    cli = subprocess.run(
        [sys.executable, "-m", "pawpipe.ingest", "clean", str(root), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "read coco: annotations/instances_train2017.json, annotations/instances_val2017.json" in cli.stdout
    assert (
        f"ingest: warning: {root} also looks like yolo; took coco (the first in the order aihub, coco, voc, yolo, "
        "table)" in cli.stderr
    )
    chosen = subprocess.run(
        [
            sys.executable,
            "-m",
            "pawpipe.ingest",
            "clean",
            str(root),
            "--out",
            str(tmp_path / "yolo"),
            "--format",
            "yolo",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "read yolo: 12 label files, class names from data.yaml" in chosen.stdout
        and "also looks like" not in chosen.stderr
    )


def test_a_csv_that_is_no_annotation_table_is_not_taken_for_one(tmp_path: Path) -> None:
    from pawpipe.ingest.sources import table

    root = tmp_path / "raw"
    _yolo_videos(root, 6, 2)
    (root / "planted_flips.csv").write_text("image_path,given_label,true_label\na.jpg,cat,dog\n")  # beside the dataset
    assert not table.detect(root)
    cli = subprocess.run(
        [sys.executable, "-m", "pawpipe.ingest", "clean", str(root), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "read yolo: 12 label files" in cli.stdout and "also looks like" not in cli.stderr
    (root / "planted_flips.csv").write_text("image_path,label,x,y,w,h\na.jpg,cat,1,1,2,2\n")  # now it is one
    assert table.detect(root)
