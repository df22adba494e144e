"""``status.json``'s contract: written in the order fields were set, read back as written; a bad
field is one line naming the file and the field; a writer cannot invent fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pawpipe.common.contracts.status_file import STATES, check_fields, epochs_done, read_status_file, write_status_file

DOC = {
    "pid": 42,
    "state": "training",
    "run_dir": "runs/a",
    "started": "2025-01-31T12:00:00+0900",
    "epochs": 3,
    "world_size": 1,
    "error": None,
    "epoch": 1,
    "batch": 5,
    "batches": 20,
    "step": 25,
    "images_per_s": 61.5,
    "epoch_eta_s": 30.0,
    "run_eta_s": None,
    "lr": 0.001,
    "last_metrics": {"count": 8, "accuracy": 0.5},
    "best": {"metric": "accuracy", "value": 0.5, "epoch": 0, "step": 20},
    "last_checkpoint": {
        "path": "runs/a/checkpoints/last.pt",
        "time": "2025-01-31T12:01:00+0900",
        "epoch": 1,
        "batch": 5,
        "step": 25,
    },
    "stopped_by": None,
    "updated": "2025-01-31T12:01:05+0900",
}


def test_written_then_read_is_the_document_in_its_order(tmp_path: Path):
    path = tmp_path / "status.json"
    doc = {"updated": DOC["updated"], **{k: v for k, v in DOC.items() if k != "updated"}}  # any order: the writer's
    write_status_file(path, doc)
    assert json.loads(path.read_text(encoding="utf-8")) == doc
    back = read_status_file(path)
    assert list(back) == list(doc) and back == doc
    assert epochs_done(back) == 1.25


def test_a_reader_lets_fields_of_another_version_pass(tmp_path: Path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"state": "finished", "epoch": 3, "note": "from a newer trainer"}))
    assert read_status_file(path) == {"state": "finished", "epoch": 3, "note": "from a newer trainer"}


def test_a_writer_cannot_invent_a_field_or_a_state(tmp_path: Path):
    with pytest.raises(ValueError, match=r"status.json: unknown field\(s\) \['lr_now'\]"):
        check_fields(["lr", "lr_now"])
    with pytest.raises(ValueError) as caught:
        write_status_file(tmp_path / "status.json", {"pid": 1, "note": "x"})
    assert str(caught.value) == f"{tmp_path / 'status.json'}: note: unknown field"
    assert not (tmp_path / "status.json").exists()
    assert STATES == ("starting", "training", "evaluating", "stopped", "failed", "finished")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            {"state": "flying"},
            "state: expected 'starting', 'training', 'evaluating', 'stopped', 'failed' or 'finished', got 'flying'",
        ),
        ({"epoch": "x"}, "epoch: expected a valid integer, got 'x'"),
        ({"best": {"value": "high"}}, "best.value: expected a valid number, got 'high'"),
        (
            {"last_checkpoint": {"path": "p", "epoch": 0, "batch": 0}},
            "last_checkpoint.step: expected a value, got none",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_field(tmp_path: Path, doc: dict, problem: str):
    path = tmp_path / "status.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as caught:
        read_status_file(path)
    assert str(caught.value) == f"{path}: {problem}"
