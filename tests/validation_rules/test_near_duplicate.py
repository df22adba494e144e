"""Rule image.near_duplicate: perceptual hashes of real generated JPEGs, grouped by video and label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _near_frames import COPIES, DISTINCT, write_table

import pawpipe.validation_rules.perceptual as nd
from pawpipe.ingest.clean import clean
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.probe import probe_images
from pawpipe.validation_rules.engine import apply_rules
from pawpipe.validation_rules.ruleset import RuleSet

VIDEOS = 6


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, bool]], pl.DataFrame]:
    """Six videos of nine frames each (five near-copies of the first, three distinct frames), probed."""
    root = tmp_path_factory.mktemp("near")
    truth = write_table(root, videos=VIDEOS)
    probes = probe_images(root, list(truth), workers=1, quiet=True)
    return root, truth, probes


def records(probes: pl.DataFrame, *, label: str = "cat") -> pl.DataFrame:
    """Rule-engine input for the probed frames, in frame order, one video per group."""
    return probes.with_columns(
        source_file=pl.lit("boxes.csv"),
        record=pl.int_range(pl.len()).cast(pl.String),
        sample_id="s" + pl.col("image_path"),
        group_id=pl.col("image_path").str.slice(0, 3),
        split=pl.lit("train"),
        label=pl.lit(label),
        bbox_x=pl.lit(20.0),
        bbox_y=pl.lit(30.0),
        bbox_w=pl.lit(100.0),
        bbox_h=pl.lit(80.0),
        bbox_raw=pl.lit(None, pl.String),
        parse_error=pl.lit(None, pl.String),
        meta_width=pl.lit(None, pl.Int64),
        meta_height=pl.lit(None, pl.Int64),
    )


def rules(action: str = "warn", max_distance: int = 4) -> RuleSet:
    return RuleSet.from_dict({"image.near_duplicate": {"action": action, "max_distance": max_distance}})


def flagged(out, action: str) -> set[str]:
    if action == "drop":
        return set(out.rejected.get_column("image_path").to_list())
    return set(
        out.clean.filter(pl.col("warnings").list.contains("image.near_duplicate")).get_column("image_path").to_list()
    )


def kinds(paths: set[str], truth: dict[str, tuple[str, bool]]) -> dict[str, int]:
    got: dict[str, int] = {}
    for p in paths:
        got[truth[p][0]] = got.get(truth[p][0], 0) + 1
    return got


def test_every_probed_frame_has_a_hash(frames) -> None:
    _, truth, probes = frames
    assert probes.schema["dhash"] == pl.UInt64
    assert probes.height == len(truth) == VIDEOS * 9 and probes.get_column("dhash").null_count() == 0


def test_reencoded_brightened_and_shifted_copies_are_caught_and_distinct_frames_are_not(frames) -> None:
    _, truth, probes = frames
    caught = kinds(flagged(apply_rules(records(probes), rules()), "warn"), truth)
    # At the default distance 4: every re-encode, brightness change and 1-pixel shift in all six
    # videos; a 2-pixel shift in two of them; never a moved animal or another scene.
    assert caught == {"shift1": 6, "quality60": 6, "darker": 6, "brighter": 6, "shift2": 2}
    assert not set(caught) & set(DISTINCT)


@pytest.mark.parametrize("max_distance, tp, fp", [(2, 24, 0), (4, 26, 0), (8, 28, 1)])
def test_precision_and_recall_on_the_generated_set(frames, max_distance: int, tp: int, fp: int) -> None:
    _, truth, probes = frames
    caught = flagged(apply_rules(records(probes), rules(max_distance=max_distance)), "warn")
    copies = {p for p, (_, copy) in truth.items() if copy}
    assert len(copies) == VIDEOS * len(COPIES) == 30
    assert (len(caught & copies), len(caught - copies)) == (tp, fp)
    precision, recall = tp / (tp + fp), tp / len(copies)
    assert (round(precision, 3), round(recall, 3)) == {2: (1.0, 0.8), 4: (1.0, 0.867), 8: (0.966, 0.933)}[max_distance]


def test_drop_quarantines_with_the_kept_frame_and_distance(frames) -> None:
    _, truth, probes = frames
    out = apply_rules(records(probes), rules("drop"))
    assert out.clean.height + out.rejected.height == probes.height
    row = out.rejected.filter(pl.col("image_path") == "v00/frame_03_quality60.jpg").row(0, named=True)
    assert row["rule"] == ["image.near_duplicate"]
    assert row["detail"] == (
        "image.near_duplicate: image 'v00/frame_03_quality60.jpg' in group 'v00': expected a distinct frame, "
        "got perceptual-hash distance 0 (max 4) to kept sample 'sv00/frame_00_original.jpg'"
    )
    assert out.clean.get_column("warnings").list.len().sum() == 0


def test_only_frames_of_the_same_video_and_label_are_compared(frames) -> None:
    _, truth, probes = frames
    first = probes.filter(pl.col("image_path").str.ends_with("_original.jpg"))
    other_label = records(first.head(1), label="dog").with_columns(record=pl.lit("x"))
    other_video = records(first.head(1)).with_columns(group_id=pl.lit("elsewhere"), record=pl.lit("y"))
    out = apply_rules(pl.concat([records(first.head(1)), other_label, other_video]), rules("drop"))
    assert out.rejected.height == 0 and out.clean.height == 3


def test_a_frame_is_compared_with_kept_frames_only() -> None:
    # 0b111 is 3 bits from 0 but 1 bit from 0b11, which itself repeats 0: it is kept (no drift).
    hashes = np.array([0, 0b1, 0b11, 0b111, 0b1111, 0xFF, 0b1], dtype=np.uint64)
    keeper, dist = nd.near_duplicates(hashes, max_distance=2)
    assert keeper.tolist() == [-1, 0, 0, -1, 3, -1, 0] and dist.tolist() == [-1, 1, 2, -1, 1, -1, 1]


def test_blocks_give_the_same_answer_as_one_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 8, dtype=np.uint64)
    noise = np.uint64(1) << rng.integers(0, 64, 200).astype(np.uint64)
    hashes = base[rng.integers(0, 8, 200)] ^ noise
    whole = nd.near_duplicates(hashes, max_distance=3)
    monkeypatch.setattr(nd, "_BLOCK_CELLS", 500)  # 2 rows a block
    blocked = nd.near_duplicates(hashes, max_distance=3)
    assert whole[0].tolist() == blocked[0].tolist() and whole[1].tolist() == blocked[1].tolist()
    assert (whole[0] >= 0).sum() == 192  # 8 distinct scenes kept, every noisy copy caught


def test_ingest_clean_stores_the_hash_and_warns(frames, tmp_path: Path) -> None:
    root, truth, _ = frames
    result = clean(CleanConfig(root=root, out=tmp_path / "clean", workers=1, quiet=True, val_fraction=0.0))
    manifest = pl.read_parquet(tmp_path / "clean" / "manifest.parquet")
    assert manifest.height == len(truth) and manifest.schema["dhash"] == pl.UInt64
    warned = manifest.filter(pl.col("warnings").list.contains("image.near_duplicate")).height
    assert warned == 26 == result.report["warnings"]["image.near_duplicate"]
    near = result.report["near_duplicates"]
    assert near["train_samples"] == 54
    assert {d: v["near_duplicates"] for d, v in near["by_distance"].items()} == {"2": 24, "4": 26, "8": 29}
    assert near["by_distance"]["4"] == {"near_duplicates": 26, "epoch_share_saved": 0.4815, "classes": {"cat": 26}}
    page = (tmp_path / "clean" / "report.html").read_text(encoding="utf-8")
    assert "Near-duplicate training frames (same video and label, of 54)" in page and "48.1%" in page


def test_near_duplicates_are_judged_after_exact_duplicates() -> None:
    from pawpipe.validation_rules.registry import list_rules

    order = list_rules()
    assert order.index("image.duplicate") < order.index("image.near_duplicate") < order.index("label.suspect")
