"""``ingest demo-data --label-noise``: planted label flips, recorded beside the data, nothing else changed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pawpipe.ingest.demo.data import COLOURS, FRAME_FAULTS, FRAME_SIZES, LOOK_ALIKE, draw_frame, generate, plan_videos
from pawpipe.ingest.sources.aihub import EMOTIONS


def test_flips_are_planted_in_training_frames_only_and_recorded(demo_raw: Path, tmp_path: Path):
    noisy = tmp_path / "noisy"
    generate(noisy, videos=12, frames=6, seed=0, label_noise=0.3)
    flips = pl.read_csv(noisy / "planted_flips.csv")
    assert flips.height > 0 and flips.get_column("image_path").str.starts_with("Training/").all()
    assert (flips.get_column("given_label") != flips.get_column("true_label")).all()
    look = flips.filter(pl.col("kind") == "lookalike")
    assert all(
        EMOTIONS[LOOK_ALIKE[EMOTIONS.index(g)]] == t for g, t in look.select("given_label", "true_label").iter_rows()
    )
    assert set(flips.get_column("kind")) <= {"lookalike", "symmetric"}
    flipped = set(flips.get_column("image_path"))
    files = sorted(
        p.relative_to(demo_raw).as_posix() for p in demo_raw.rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert sorted(
        p.relative_to(noisy).as_posix() for p in noisy.rglob("*") if p.is_file() and not p.is_symlink()
    ) == sorted(files + ["planted_flips.csv"])
    for rel in files:  # the same dataset but the flipped frames (the flips draw from their own generator)
        same = (noisy / rel).read_bytes() == (demo_raw / rel).read_bytes()
        assert same != (rel in flipped), rel


def test_val_videos_sets_the_size_of_the_validation_split(tmp_path: Path):
    generate(tmp_path / "raw", videos=18, frames=3, seed=0, val_videos=9)
    labels = lambda split: sorted(p.name for p in (tmp_path / "raw" / split).rglob("*.json"))  # noqa: E731
    assert len(labels("Validation")) == 9
    assert sorted(int(n.split("-")[-1].split(".")[0]) for n in labels("Validation")) == list(range(9, 18))
    try:
        generate(tmp_path / "bad", videos=12, frames=3, val_videos=7)
    except ValueError as exc:
        assert str(exc) == "--val-videos: expected 1..6 (one training video per class left), got 7"
    else:
        raise AssertionError("val_videos=7 of 12 accepted")


def test_noise_unit_video_flips_every_clean_frame_of_a_drawn_video(tmp_path: Path):
    expected = generate(
        tmp_path / "raw", videos=24, frames=5, seed=0, label_noise=0.3, val_videos=6, noise_unit="video"
    )
    frame_faults = {name for name, _ in FRAME_FAULTS}
    faulted = Counter(
        e["source_file"]
        for key in ("quarantined", "repaired", "kept_oddities")
        for e in expected[key]
        if e["fault"] in frame_faults
    )
    flips = pl.read_csv(tmp_path / "raw" / "planted_flips.csv")
    assert flips.get_column("image_path").str.starts_with("Training/").all()
    per_video = flips.group_by("source_file").agg(pl.col("true_label").n_unique(), pl.col("kind").n_unique(), pl.len())
    assert per_video.height > 0
    assert per_video.get_column("true_label").to_list() == [1] * per_video.height  # one true class per video
    assert per_video.get_column("kind").to_list() == [1] * per_video.height
    for source_file, n in per_video.select(
        "source_file", "len"
    ).iter_rows():  # every frame of the video that carries no fault
        doc = json.loads((tmp_path / "raw" / source_file).read_text(encoding="utf-8"))
        assert n == len(doc["annotations"]) - faulted[source_file], source_file
    with pytest.raises(ValueError, match=r"^--noise-unit: expected one of frame, video, got 'scene'$"):
        generate(tmp_path / "bad", videos=12, frames=3, label_noise=0.1, noise_unit="scene")


def test_a_videos_backdrop_and_frame_size_say_nothing_about_its_class():
    # Cycled with the video number, photo v % 9 and class v % 6 shared the factor 3: each photo showed
    # two classes only, and a model learned the class from the backdrop (flipped frames' given label too).
    plans = [p for p in plan_videos(540, val_videos=6, seed=0, photos=9) if "video_fault" not in p]
    classes = lambda key: {value: {p["cls"] for p in plans if p[key] == value} for value in {p[key] for p in plans}}  # noqa: E731
    assert sorted(classes("photo")) == list(range(9))
    assert all(seen == set(range(len(EMOTIONS))) for seen in classes("photo").values())
    assert sorted(classes("size")) == sorted(FRAME_SIZES)
    assert all(seen == set(range(len(EMOTIONS))) for seen in classes("size").values())
    assert [p["cls"] for p in plans] == [v % len(EMOTIONS) for v in range(540)]


def _shape_colours(cls: int, *, pair_colours: bool) -> set[tuple[int, int, int]]:
    """The colours painted over a black photo by ``draw_frame`` for class ``cls``."""
    img = draw_frame(
        np.zeros((64, 64, 3), np.uint8),
        (64, 64),
        (8, 8, 48, 48),
        cls,
        np.random.default_rng(0),
        pair_colours=pair_colours,
    )
    return {c for c in map(tuple, np.asarray(img).reshape(-1, 3).tolist()) if c != (0, 0, 0)}


def test_pair_colours_paint_both_classes_of_a_look_alike_pair_in_one_colour():
    for cls, other in LOOK_ALIKE.items():
        assert _shape_colours(cls, pair_colours=False) == {COLOURS[cls]}
        assert _shape_colours(cls, pair_colours=True) == {COLOURS[min(cls, other)]}
    assert len({COLOURS[min(c, o)] for c, o in LOOK_ALIKE.items()}) == 3


def test_demo_data_pair_colours_flag_writes_what_generate_writes(tmp_path: Path):
    from pawpipe.ingest.cli import main

    assert main(["demo-data", str(tmp_path / "cli"), "--videos", "12", "--frames", "2", "--pair-colours"]) == 0
    generate(tmp_path / "api", videos=12, frames=2, seed=0, val_videos=6, pair_colours=True)
    generate(tmp_path / "plain", videos=12, frames=2, seed=0, val_videos=6)
    files = lambda root: {  # noqa: E731
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jpg") if not p.is_symlink()
    }
    assert files(tmp_path / "cli") == files(tmp_path / "api")
    assert files(tmp_path / "cli") != files(tmp_path / "plain")  # classes 3-5 painted in their pair's colour
