"""``train eval``'s table lines up with Korean class names: columns by terminal width, not characters."""

import re

import torch

from pawpipe.common.textwidth import columns
from pawpipe.train.fit.metrics import format_metrics, metrics_from_confusion

NAMES = ["행복/즐거움", "편안/안정", "당황/놀람", "분노/짜증", "불안/걱정", "상처/슬픔"]


def column_ends(line: str) -> list[int]:
    """The terminal column where each whitespace-separated cell of ``line`` ends."""
    return [columns(line[: m.end()]) for m in re.finditer(r"\S+", line)]


def table(vocabulary: list[str]) -> list[str]:
    k = len(vocabulary)
    confusion = torch.eye(k, dtype=torch.int64) * 5 + 1
    metrics = metrics_from_confusion(confusion, loss_sum=3.0, weight_total=10.0, nll_sum=4.0, vocabulary=vocabulary)
    lines = format_metrics(metrics).splitlines()
    return lines[1 : 2 + k]  # the header and one row per class


def test_eval_table_columns_start_at_the_same_terminal_column_with_korean_names() -> None:
    rows = table(NAMES)
    assert [r.split()[0] for r in rows] == ["class", *NAMES]
    ends = {tuple(column_ends(r)[1:]) for r in rows}  # right-aligned numbers: each column ends at one terminal column
    assert ends == {(34, 42, 50, 59)}
    assert {columns(r[: r.index(r.split()[1])]) for r in rows[1:]} == {28}  # every precision value starts at one column


def test_a_name_wider_than_the_column_widens_it_for_every_row() -> None:
    long = "행복/즐거움/편안/안정/당황/놀람"  # 31 terminal columns
    rows = table([long, "calm"])
    assert {tuple(column_ends(r)[1:]) for r in rows} == {(41, 49, 57, 66)}


def test_queue_table_lines_up_with_korean_run_names() -> None:
    from pawpipe.train.daemon.daemon import format_queue

    row = {
        "state": "pending",
        "epochs": None,
        "step": None,
        "accuracy": None,
        "best": None,
        "when": "12:00",
        "note": "",
    }
    lines = format_queue([{**row, "name": "행복-실험"}, {**row, "name": "calm"}]).splitlines()
    assert {columns(line[: line.index("pending" if "pending" in line else "state")]) for line in lines} == {11}
