"""The audit's judge of its own model: validation accuracy against chance, from the run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pawpipe.train.audit.judge import describe, judge_strength


def _run(folder: Path, *evals: tuple[float, dict[str, int]]) -> Path:
    folder.mkdir()
    lines = [{"event": "train", "step": 1, "loss": 1.0}]
    for step, (accuracy, support) in enumerate(evals, start=1):
        per_class = {name: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": n} for name, n in support.items()}
        lines.append(
            {
                "event": "eval",
                "step": step * 10,
                "count": sum(support.values()),
                "accuracy": accuracy,
                "per_class": per_class,
            }
        )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return folder


SIX = {name: 28 for name in ("행복/즐거움", "편안/안정", "불안/슬픔", "화남/불쾌", "공포", "공격성")}  # 168, chance 1/6


@pytest.mark.parametrize(
    ("correct", "weak"),
    [(28, True), (39, True), (40, False), (150, False)],  # bound: 28 + 2.326 * sqrt(168 / 6 * 5 / 6) = 39.24
)
def test_weak_means_not_above_the_largest_class_share_at_99_percent(tmp_path: Path, correct: int, weak: bool) -> None:
    run = _run(tmp_path / "run", (0.9, SIX), (correct / 168, SIX))  # the last evaluation counts
    judge = judge_strength(run)
    assert (judge["samples"], judge["chance"], judge["chance_class"], judge["weak"]) == (
        168,
        round(1 / 6, 6),
        "행복/즐거움",
        weak,
    )


def test_chance_is_the_largest_class_share(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", (0.6, {"cat": 60, "dog": 40}))  # always "cat" scores 0.6: no better than chance
    judge = judge_strength(run)
    assert (judge["chance"], judge["weak"]) == (0.6, True)
    assert (
        describe(judge)
        == "validation accuracy 0.600 over 100 samples is not above chance (0.600, always answering 'cat')"
    )


def test_a_run_without_evaluation_is_not_judged(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    assert judge_strength(run)["weak"] is None
