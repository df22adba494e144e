"""Data-diet builds: a per-class share of the training samples chosen by score, the rest accounted for."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _fixtures_shards import SMALL, tree_bytes

from pawpipe.shards.build import build
from pawpipe.shards.cli import main
from pawpipe.shards.config import ShardConfig
from pawpipe.shards.select import choose
from pawpipe.shards.verify import verify

TRAIN = pl.DataFrame({"sample_id": [f"s{i}" for i in range(10)], "label_id": [0] * 6 + [1] * 3 + [2]})
SCORES = pl.DataFrame(
    {
        "sample_id": [f"s{i}" for i in range(10)],
        "el2n": [0.1, 0.9, 0.5, 0.7, 0.2, None, 0.3, 0.8, 0.1, 0.4],  # s5 unscored for EL2N
        "forgetting_score": [0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0, 0.0],
    }
)


def chosen(**kw) -> list[str]:
    out = choose(TRAIN, kw.pop("scores", SCORES), **kw)
    return out.filter(pl.col("selected")).get_column("sample_id").to_list()


def test_el2n_keeps_the_hardest_share_of_each_class_and_the_unscored() -> None:
    # class 0 (6): s5 (no score) then s1 0.9, s3 0.7; class 1 (3): round(1.5) = 2: s7, s6; class 2 (1): s9
    assert chosen(method="el2n", keep=0.5) == ["s1", "s3", "s5", "s6", "s7", "s9"]


def test_forgetting_ranks_by_forgetting_then_el2n() -> None:
    # class 0: s2 (2 events), s4 (1), then the zeros by EL2N: s5 (none: kept first) ...; class 1: s8 (4), s7 (0.8 > 0.3)
    assert chosen(method="forgetting", keep=0.5) == ["s2", "s4", "s5", "s7", "s8", "s9"]


def test_near_duplicates_rank_after_the_other_frames_of_their_class() -> None:
    # class 0: s1 and s3 (its hardest) are near-copies, so s5 (unscored), s2 (0.5), s4 (0.2) come first; class 1: s7 too
    flagged = TRAIN.with_columns(near_duplicate=pl.col("sample_id").is_in(["s1", "s3", "s7"]))
    keep = {"method": "el2n", "keep": 0.5}
    assert choose(flagged, SCORES, **keep).filter(pl.col("selected"))["sample_id"].to_list() == [
        "s2",
        "s4",
        "s5",
        "s6",
        "s8",
        "s9",
    ]
    alone = (
        choose(flagged, SCORES, **keep, near_duplicates_last=False).filter(pl.col("selected"))["sample_id"].to_list()
    )
    assert alone == chosen(**keep) == ["s1", "s3", "s5", "s6", "s7", "s9"]
    plain = choose(flagged, None, method="random", keep=0.5, seed=3, near_duplicates_last=False).filter(
        pl.col("selected")
    )["sample_id"]
    assert plain.to_list() == chosen(
        method="random", keep=0.5, scores=None, seed=3
    )  # the naive baseline, asked for, stays naive


def test_no_class_vanishes_and_the_minimum_holds() -> None:
    assert chosen(method="el2n", keep=0.1) == ["s5", "s7", "s9"]  # round(0.6) = 1, round(0.3) -> 1, round(0.1) -> 1
    assert chosen(method="el2n", keep=0.1, keep_per_class_min=3) == ["s1", "s3", "s5", "s6", "s7", "s8", "s9"]


def test_random_is_seeded_stratified_and_order_free() -> None:
    a = chosen(method="random", keep=0.5, scores=None, seed=3)
    assert a == chosen(method="random", keep=0.5, scores=None, seed=3)
    assert (
        a
        == choose(TRAIN.reverse(), None, method="random", keep=0.5, seed=3)
        .filter(pl.col("selected"))["sample_id"]
        .to_list()
    )
    assert chosen(method="random", keep=0.5, scores=None, seed=4) != a
    classes = TRAIN.filter(pl.col("sample_id").is_in(a)).group_by("label_id").len().sort("label_id").rows()
    assert classes == [(0, 3), (1, 2), (2, 1)]


def test_scores_are_required_to_rank() -> None:
    with pytest.raises(ValueError, match="--by el2n: expected --select"):
        choose(TRAIN, None, method="el2n", keep=0.5)
    with pytest.raises(ValueError, match="keep: --by el2n ranks by scores"):
        ShardConfig(manifest_dir=Path("c"), out=Path("o"), keep=0.5, by="el2n")
    assert (
        ShardConfig(manifest_dir=Path("c"), out=Path("o"), keep=0.5).method() == "random"
    )  # without scores: de-duplication
    assert ShardConfig(manifest_dir=Path("c"), out=Path("o"), keep=0.5, select=Path("s.parquet")).method() == "el2n"
    with pytest.raises(ValueError, match="expected --keep SHARE with --select FILE"):
        ShardConfig(manifest_dir=Path("c"), out=Path("o"), select=Path("s.parquet"))


@pytest.fixture(scope="module")
def scores_file(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EL2N = position of the sample id among the training ids (so the highest ids are the hardest)."""
    manifest = pl.read_parquet(small_dataset / "manifest.parquet").filter(pl.col("split") == "train").sort("sample_id")
    path = tmp_path_factory.mktemp("scores") / "scores.parquet"
    manifest.select("sample_id", el2n=pl.int_range(pl.len()).cast(pl.Float64)).write_parquet(path)
    return path


def test_build_with_selection_accounts_for_every_sample(small_dataset: Path, scores_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "diet"
    summary = build(ShardConfig(manifest_dir=small_dataset, out=out, select=scores_file, keep=0.5, **SMALL))
    manifest = pl.read_parquet(small_dataset / "manifest.parquet")
    train = manifest.filter(pl.col("split") == "train")
    expect = choose(train, pl.read_parquet(scores_file), method="el2n", keep=0.5)
    dropped = set(expect.filter(~pl.col("selected")).get_column("sample_id"))
    samples = pl.read_parquet(out / "train" / "samples.parquet")
    assert set(samples.filter(pl.col("reason") == "not_selected").get_column("sample_id")) == dropped
    assert samples.filter(pl.col("reason") == "not_selected").get_column("shard").null_count() == len(dropped)
    assert set(samples.get_column("sample_id")) | set(
        pl.read_parquet(out / "failed.parquet").get_column("sample_id")
    ) >= set(train["sample_id"])
    val = pl.read_parquet(out / "val" / "samples.parquet")
    assert val.get_column("reason").null_count() == val.height  # validation stays whole
    dataset = json.loads((out / "dataset.json").read_text())
    sel = dataset["selection"]
    assert (sel["method"], sel["keep"], sel["train"], sel["not_selected"]) == ("el2n", 0.5, train.height, len(dropped))
    per_class = train.group_by("label").len().rows()
    assert {k: v["train"] for k, v in sel["per_class"].items()} == dict(per_class)
    assert {k: v["selected"] for k, v in sel["per_class"].items()} == {k: int(n * 0.5 + 0.5) for k, n in per_class}
    counts = dataset["counts"]["train"]
    assert counts["manifest"] == train.height and counts["not_selected"] == len(dropped)
    assert counts["written"] + counts["failed"] + counts["not_selected"] == train.height
    assert summary.finalized.selection.model_dump() == sel
    assert summary.finalized.write(tmp_path / "again").read_bytes() == (out / "dataset.json").read_bytes()
    assert (sel["near_duplicates_last"], sel["near_duplicates"]) == (True, 0)  # the fixture's manifest has no warnings
    assert verify(out, decode=False).errors == []


def test_selection_builds_are_deterministic_and_resume_only_the_same_selection(
    small_dataset: Path, scores_file: Path, tmp_path: Path
) -> None:
    config = {"manifest_dir": small_dataset, "select": scores_file, "keep": 0.5, "by": "random", **SMALL}
    first = build(ShardConfig(out=tmp_path / "a", **config))
    build(ShardConfig(out=tmp_path / "b", **{**config, "workers": 2}))
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    again = build(ShardConfig(out=tmp_path / "a", **config))
    assert (again.built, again.skipped) == (0, first.planned)
    with pytest.raises(ValueError, match="holds a build with other options"):
        build(ShardConfig(out=tmp_path / "a", **{**config, "keep": 0.6}))


def test_cli_builds_a_selection(
    small_dataset: Path, scores_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "build",
        str(small_dataset),
        "--out",
        str(tmp_path / "s"),
        "--size",
        "96",
        "--max-samples",
        "5",
        "--workers",
        "1",
        "--quiet",
    ]
    assert main([*argv, "--select", str(scores_file)]) == 2
    assert "expected --keep SHARE with --select FILE" in capsys.readouterr().err
    assert (
        main([*argv, "--select", str(scores_file), "--keep", "0.5", "--by", "el2n", "--keep-per-class-min", "2"]) == 0
    )
    assert "training samples by el2n (keep 0.5)" in capsys.readouterr().out


def test_random_with_near_duplicates_last_is_deduplication_alone() -> None:
    train = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(8)],
            "label_id": [0] * 8,
            "near_duplicate": [False, True, True, True, False, True, True, True],
        }
    )
    dedup = choose(train, None, method="random", keep=0.25)  # near-copies last: the default
    plain = choose(train, None, method="random", keep=0.25, near_duplicates_last=False)
    # Two of eight kept: de-duplication keeps exactly the two frames that are no near-copy; plain random is the
    # seeded draw, near-copies or not.
    assert dedup.filter(pl.col("selected"))["sample_id"].to_list() == ["s0", "s4"]
    assert plain.filter(pl.col("selected"))["sample_id"].to_list() == ["s0", "s6"]  # seed 0's draw: s6 is a near-copy
