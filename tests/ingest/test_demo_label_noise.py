"""``ingest demo-data --label-noise``: planted label flips, recorded beside the data, nothing else changed."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ingest.demo_data import LOOK_ALIKE, generate
from ingest.sources.aihub import EMOTIONS


def test_flips_are_planted_in_training_frames_only_and_recorded(demo_raw: Path, tmp_path: Path):
    noisy = tmp_path / "noisy"
    generate(noisy, videos=12, frames=6, seed=0, label_noise=0.3)
    flips = pl.read_csv(noisy / "planted_flips.csv")
    assert flips.height > 0 and flips.get_column("image_path").str.starts_with("Training/").all()
    assert (flips.get_column("given_label") != flips.get_column("true_label")).all()
    look = flips.filter(pl.col("kind") == "lookalike")
    assert all(EMOTIONS[LOOK_ALIKE[EMOTIONS.index(g)]] == t for g, t in look.select("given_label", "true_label").iter_rows())
    assert set(flips.get_column("kind")) <= {"lookalike", "symmetric"}
    flipped = set(flips.get_column("image_path"))
    files = sorted(p.relative_to(demo_raw).as_posix() for p in demo_raw.rglob("*") if p.is_file() and not p.is_symlink())
    assert sorted(p.relative_to(noisy).as_posix() for p in noisy.rglob("*") if p.is_file() and not p.is_symlink()) == sorted(
        files + ["planted_flips.csv"])
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
