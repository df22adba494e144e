"""A verdict per video: the neighbour view asks only other videos, and whole planted wrong videos are
the ones confident learning over the groups flags, ranked first."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pawpipe.train.audit.groups import GROUPS, judge_groups
from pawpipe.train.audit.neighbours import neighbour_probs

VOCAB = ["happy", "calm", "angry"]


def test_a_video_never_votes_for_itself() -> None:
    # two videos of identical frames, labelled differently: each frame's one neighbour video is the other
    emb = np.ones((6, 4), dtype=np.float32)
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = neighbour_probs(emb, labels, groups, num_classes=2, k=3)
    np.testing.assert_allclose(probs, [[0.5 / 2, 1.5 / 2]] * 3 + [[1.5 / 2, 0.5 / 2]] * 3)  # 1 vote, + 1/2 each


def test_one_video_has_one_vote_however_many_frames_it_has() -> None:
    # the query's video q; video a: five frames identical to the query, labelled 0; videos b, c: one frame
    # each, a little further, labelled 1. Frame by frame, a would fill every place; video by video it is outvoted.
    emb = np.array([[1, 0]] + [[1, 0]] * 5 + [[1, 0.2], [1, 0.3]], dtype=np.float32)
    groups = np.array(["q", "a", "a", "a", "a", "a", "b", "c"])
    labels = np.array([-1, 0, 0, 0, 0, 0, 1, 1])
    probs = neighbour_probs(emb, labels, groups, num_classes=2, k=3)
    np.testing.assert_allclose(probs[0], [1.5 / 4, 2.5 / 4])


def test_unlabelled_rows_give_no_vote_and_chunks_agree() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    labels[:5] = -1
    groups = np.arange(50) // 5
    probs = neighbour_probs(emb, labels, groups, num_classes=3, k=4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # by hand: each other group's labelled row most like row i; the 4 most alike groups vote their row's label
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = x @ x.T
    for i in range(50):
        best = {}
        for j in np.flatnonzero((groups != groups[i]) & (labels >= 0)):
            if groups[j] not in best or sim[i, j] > sim[i, best[groups[j]]]:
                best[groups[j]] = j
        # a row asks min(4, its label's videos - 1) of them: a video counts for its most common label
        modes = [
            np.bincount(labels[(groups == v) & (labels >= 0)], minlength=3).argmax() for v in range(1, 10)
        ]  # 0: unlabelled
        asks = 4 if labels[i] < 0 else max(1, min(4, modes.count(labels[i]) - 1))
        top = sorted(best.values(), key=lambda j: -sim[i, j])[:asks]
        expected = (np.bincount(labels[top], minlength=3) + 1 / 3) / (asks + 1)
        np.testing.assert_allclose(probs[i], expected, rtol=1e-6)


def test_a_small_class_is_not_outvoted_by_a_nearby_one() -> None:
    # six classes of four videos, every label right, every frame on its class's point; class 1 lies next to
    # class 0. Ten neighbours would be 3 of class 0 and the 4 of class 1 next: class 0's frames would see class 1.
    # A frame asks its label's other videos (3) at most, so each sees its own class.
    points = np.eye(6, dtype=np.float32)
    points[1] = [1, 0.2, 0, 0, 0, 0]
    labels = np.repeat(np.arange(6), 4 * 2)  # 4 videos of 2 frames per class
    groups = np.arange(len(labels)) // 2
    probs = neighbour_probs(points[labels], labels, groups, num_classes=6)
    np.testing.assert_array_equal(probs.argmax(axis=1), labels)
    np.testing.assert_allclose(probs[labels == 0, 0], (3 + 1 / 6) / 4)


def _videos(
    seed: int, *, videos: int = 30, frames: int = 6, planted: tuple[int, ...] = (2, 13, 25)
) -> tuple[pl.DataFrame, np.ndarray]:
    """Frames as embeddings near their true class's centre (videos spread around it); ``planted`` videos carry
    the next class's label on every frame."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(VOCAB), 16)) * 4
    rows, emb = [], []
    for v in range(videos):
        true = v % len(VOCAB)
        given = (true + 1) % len(VOCAB) if v in planted else true
        middle = centres[true] + rng.normal(size=16)
        for f in range(frames):
            emb.append(middle + 0.3 * rng.normal(size=16))
            rows.append(
                {
                    "sample_id": f"s{v:02d}_{f}",
                    "group_id": f"video{v:02d}",
                    "label": VOCAB[given],
                    "label_id": given,
                    "aum": 1.0,
                    "model_label": VOCAB[given],
                    "annotators_disagree": False,
                    "other_label": None,
                }
            )
    return pl.DataFrame(rows), np.asarray(emb, dtype=np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_planted_videos_are_the_label_issues_and_ranked_first(seed: int) -> None:
    frames, emb = _videos(seed)
    probs = neighbour_probs(
        emb, frames.get_column("label_id").to_numpy(), frames.get_column("group_id").to_numpy(), num_classes=3
    )
    groups = judge_groups(frames, probs, VOCAB)
    assert groups.columns == list(GROUPS) and groups.height == 30
    assert groups.head(3).get_column("group_id").sort().to_list() == ["video02", "video13", "video25"]
    assert groups.filter(pl.col("group_verdict") == "label_issue").get_column("group_id").sort().to_list() == [
        "video02",
        "video13",
        "video25",
    ]
    flagged = groups.head(3).select("group_id", "label", "group_suggested_label").sort("group_id").rows()
    # true class of video v is v % 3, the planted label the next class (13 and 25: two wrong calm videos, one vote each)
    assert flagged == [("video02", "happy", "angry"), ("video13", "angry", "calm"), ("video25", "angry", "calm")]
    assert groups.get_column("frames").unique().to_list() == [6]
    assert groups.get_column("group_rank").to_list() == list(range(1, 31))


def test_annotator_disagreement_raises_a_video_but_never_decides_alone() -> None:
    frames, emb = _videos(0)
    frames = frames.with_columns(
        annotators_disagree=pl.col("group_id").is_in(["video05", "video13"]), other_label=pl.lit("scared")
    )
    probs = neighbour_probs(
        emb, frames.get_column("label_id").to_numpy(), frames.get_column("group_id").to_numpy(), num_classes=3
    )
    groups = judge_groups(frames, probs, VOCAB)
    verdicts = dict(groups.select("group_id", "group_verdict").iter_rows())
    assert verdicts["video05"] == "ambiguous" and verdicts["video13"] == "label_issue"
    assert groups.get_column("group_id").to_list()[0] == "video13"  # first among the label issues
    assert groups.filter(pl.col("group_verdict") == "ambiguous").get_column("group_id").to_list()[0] == "video05"


def test_groups_of_one_image_get_no_group_verdict() -> None:
    frames, emb = _videos(0, frames=1)
    probs = neighbour_probs(
        emb, frames.get_column("label_id").to_numpy(), frames.get_column("group_id").to_numpy(), num_classes=3
    )
    assert judge_groups(frames, probs, VOCAB).is_empty()


def test_chunks_give_the_same_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    import pawpipe.train.audit.neighbours as neighbours

    frames, emb = _videos(1)
    args = (emb, frames.get_column("label_id").to_numpy(), frames.get_column("group_id").to_numpy())
    whole = neighbour_probs(*args, num_classes=3)
    monkeypatch.setattr(neighbours, "_CHUNK_ELEMENTS", 7 * len(emb))  # 7 rows a chunk: 26 chunks, the last one short
    np.testing.assert_array_equal(neighbours.neighbour_probs(*args, num_classes=3), whole)


def test_a_group_labelled_frame_by_frame_has_no_video_verdict() -> None:
    frames, emb = _videos(0)
    mixed = pl.col("sample_id") == "s04_0"  # one frame of video04 labelled otherwise: labels per frame, not per video
    frames = frames.with_columns(label_id=pl.when(mixed).then((pl.col("label_id") + 1) % 3).otherwise("label_id"))
    frames = frames.with_columns(label=pl.col("label_id").replace_strict(dict(enumerate(VOCAB))))
    probs = neighbour_probs(
        emb, frames.get_column("label_id").to_numpy(), frames.get_column("group_id").to_numpy(), num_classes=3
    )
    groups = judge_groups(frames, probs, VOCAB)
    assert groups.height == 29 and "video04" not in groups.get_column("group_id").to_list()


def test_a_video_whose_frames_mostly_agree_is_not_a_label_issue() -> None:
    # six videos of four frames, two per class; every clean frame sees its label at 0.5. video0 (happy): two
    # frames see angry for certain, two see happy: its mean leans to angry (confident learning flags it), but
    # only half its frames see another class, so it is not a wrong video, only doubtful
    labels = [0, 0, 1, 1, 2, 2]
    rows, probs = [], []
    for v, label in enumerate(labels):
        for f in range(4):
            rows.append(
                {
                    "sample_id": f"s{v}_{f}",
                    "group_id": f"video{v}",
                    "label": VOCAB[label],
                    "label_id": label,
                    "aum": 1.0,
                    "model_label": VOCAB[label],
                    "annotators_disagree": False,
                    "other_label": None,
                }
            )
            p = np.full(3, 0.25)
            p[label] = 0.5
            probs.append([0.0, 0.0, 1.0] if v == 0 and f < 2 else p)
    groups = judge_groups(pl.DataFrame(rows), np.asarray(probs), VOCAB)
    row = groups.filter(pl.col("group_id") == "video0").row(0, named=True)
    assert row["group_cl_issue"] and row["other_share"] == 0.5
    assert row["group_verdict"] == "ambiguous" and row["group_rank"] == 1
    assert groups.filter(pl.col("group_verdict") == "label_issue").is_empty()
