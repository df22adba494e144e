"""Every registered rule: a record that passes it and a record that fails it."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pawpipe.validation_rules.engine import apply_rules
from pawpipe.validation_rules.registry import Action, RuleParams, get_rule, list_rules, register_rule
from pawpipe.validation_rules.ruleset import RuleSet

GOOD = {
    "source_file": "a.json",
    "record": "1",
    "image_path": "img/1.jpg",
    "group_id": "g1",
    "split": "train",
    "label": "cat",
    "bbox_x": 10.0,
    "bbox_y": 10.0,
    "bbox_w": 50.0,
    "bbox_h": 40.0,
    "bbox_raw": None,
    "meta_width": 100,
    "meta_height": 80,
    "parse_error": None,
    "parse_rule": None,
    "status": "ok",
    "error": None,
    "width": 100,
    "height": 80,
    "content_hash": "h1",
}

# rule id -> (overrides that make GOOD fail it, expected quarantine?)
FAILING = {
    "annotation.malformed": {"parse_error": "a.json: JSON does not parse: Expecting value: line 1 column 1"},
    "annotation.too_large": {
        "parse_error": "a.json: expected a label file of at most 100 bytes, got 101",
        "parse_rule": "annotation.too_large",
    },
    "annotation.field_too_long": {"group_id": "g" * 5000},
    "path.not_regular": {"status": "not_regular", "error": "a FIFO"},
    "path.bad_name": {
        "parse_error": "a\\xff.json: the file name is not valid UTF-8; rename it",
        "parse_rule": "path.bad_name",
    },
    "image.too_large": {"status": "too_large", "error": "5000x5000 pixels", "width": 5000, "height": 5000},
    "path.outside_root": {"status": "outside_root", "error": "a path that leaves the root"},
    "image.missing": {"status": "missing", "error": "no such file"},
    "image.unreadable": {"status": "unreadable", "error": "OSError: image file is truncated"},
    "image.size_mismatch": {"meta_width": 80, "meta_height": 100},
    "label.missing": {"label": None},
    "label.unknown": {"label": "giraffe"},
    "bbox.invalid": {"bbox_w": math.nan, "bbox_raw": '{"width": NaN}'},
    "bbox.negative": {"bbox_x": -50.0},
    "bbox.out_of_bounds": {"bbox_w": 200.0},
    "bbox.empty": {"bbox_h": 0.0},
    "label.suspect": {
        "suspect_verdict": "label_issue",
        "suspect_score": 0.9,
        "suspect_label": "dog",
        "suspect_reason": "AUM -2",
    },
}
ALL_RULES = RuleSet.from_dict({rule: {} for rule in list_rules()}).with_params(
    "label.unknown", vocabulary=("cat", "dog")
)


def frame(*rows: dict) -> pl.DataFrame:
    text = {c: pl.String for c in ("bbox_raw", "parse_error", "parse_rule", "error", "label")}
    return pl.DataFrame(
        list(rows), schema_overrides={**text, **{c: pl.Float64 for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")}}
    )


def test_every_registered_rule_has_a_case() -> None:
    assert set(list_rules()) == set(FAILING) | {
        "image.duplicate",
        "annotation.duplicate",
        "image.near_duplicate",
    }  # across records: own tests


@pytest.mark.parametrize("rule_id", list_rules())
def test_rule_passes_good_record(rule_id: str) -> None:
    out = apply_rules(frame(GOOD), ALL_RULES)
    assert out.rejected.height == 0 and out.clean.height == 1
    assert out.clean.row(0, named=True)["warnings"] == []


@pytest.mark.parametrize("rule_id", sorted(FAILING))
def test_rule_fails_bad_record(rule_id: str) -> None:
    out = apply_rules(frame({**GOOD, **FAILING[rule_id]}), ALL_RULES)
    if get_rule(rule_id).default_action is Action.WARN:
        assert out.clean.row(0, named=True)["warnings"] == [rule_id]
        return
    assert out.clean.height == 0
    row = out.rejected.row(0, named=True)
    assert row["rule"] == [rule_id]
    assert row["detail"].startswith(f"{rule_id}: ")


def test_duplicate_keeps_training_copy() -> None:
    val = {**GOOD, "record": "2", "image_path": "img/2.jpg", "group_id": "g0", "split": "val"}
    same_group = {**GOOD, "record": "3", "bbox_x": 20.0}  # same image, same group: two boxes, not a duplicate
    out = apply_rules(frame(GOOD, val, same_group), ALL_RULES)
    assert out.rejected.get_column("record").to_list() == ["2"]
    assert out.rejected.get_column("rule").to_list() == [["image.duplicate"]]
    assert "group 'g1'" in out.rejected.get_column("detail")[0]


def test_duplicate_keeps_the_copy_of_the_earlier_split_train_val_test() -> None:
    # Group ids that sort the other way round: the split decides, then the group.
    test = {**GOOD, "record": "2", "image_path": "img/2.jpg", "group_id": "a0", "split": "test"}
    val = {**GOOD, "record": "3", "image_path": "img/3.jpg", "group_id": "b0", "split": "val"}
    out = apply_rules(frame(GOOD, test, val), ALL_RULES)
    assert out.clean.get_column("record").to_list() == ["1"]
    assert out.rejected.select("record", "rule").sort("record").rows() == [
        ("2", ["image.duplicate"]),
        ("3", ["image.duplicate"]),
    ]
    out = apply_rules(frame(test, {**val, "group_id": "z9"}), ALL_RULES)
    assert out.clean.get_column("split").to_list() == ["val"]
    assert out.rejected.select("record", "split").rows() == [("2", "test")]
    assert "got the same bytes as group 'z9'" in out.rejected.get_column("detail")[0]


def test_exact_repeat_of_a_record_in_one_file_is_a_duplicate() -> None:
    other_file = {**GOOD, "source_file": "b.json"}
    other_box = {**GOOD, "record": "3", "bbox_x": 20.0}
    out = apply_rules(frame(GOOD, {**GOOD, "record": "2"}, other_file, other_box), ALL_RULES)
    assert out.rejected.select("record", "rule").rows() == [("2", ["annotation.duplicate"])]
    assert "got a repeat of record '1'" in out.rejected.get_column("detail")[0]


def test_clip_repairs_within_tolerance_and_records_it() -> None:
    # x=-5 is clipped to 0 (w 195), which still overshoots the right edge by 95 px: quarantined.
    out = apply_rules(frame({**GOOD, "bbox_x": -5.0, "bbox_w": 200.0}), ALL_RULES)
    assert out.clean.height == 0 and out.rejected.row(0, named=True)["rule"] == ["bbox.out_of_bounds"]
    rows = frame({**GOOD, "bbox_x": -5.0, "bbox_w": 60.0, "bbox_y": 45.0})
    got = apply_rules(rows, ALL_RULES).clean.row(0, named=True)
    assert (got["bbox_x"], got["bbox_w"], got["bbox_h"]) == (0.0, 55.0, 35.0)
    assert [r.split(":")[0] for r in got["repairs"]] == ["bbox.negative", "bbox.out_of_bounds"]


def test_a_record_failing_several_rules_lists_all() -> None:
    out = apply_rules(frame({**GOOD, "label": "giraffe", "bbox_x": -90.0, "status": "missing"}), ALL_RULES)
    assert out.rejected.row(0, named=True)["rule"] == ["image.missing", "label.unknown", "bbox.negative"]


def test_malformed_record_is_not_also_blamed_for_its_empty_fields() -> None:
    out = apply_rules(frame({**GOOD, "parse_error": "x", "label": None, "bbox_x": None}), ALL_RULES)
    assert out.rejected.row(0, named=True)["rule"] == ["annotation.malformed"]


def test_registering_an_id_twice_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_rule("bbox.negative", "again", action="drop", detail=lambda p: pl.lit(""))(lambda p: pl.lit(False))


def test_unknown_rule_id_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="valid ids: .*bbox.negative"):
        get_rule("bbox.sideways")


def test_ruleset_rejects_unknown_parameter(tmp_path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[rules."bbox.empty"]\nmin_sise = 3\n')
    with pytest.raises(ValueError, match=r'rules.toml: \[rules."bbox.empty"\] field min_sise'):
        RuleSet.load(path)


def test_required_rules_cannot_be_weakened() -> None:
    with pytest.raises(ValueError, match="always drops"):
        RuleSet.from_dict({"image.unreadable": {"action": "warn"}})
    minimal = RuleSet.from_dict({})
    assert "image.unreadable" in [a.rule.id for a in minimal.rules]
    assert "bbox.negative" not in [a.rule.id for a in minimal.rules]


def test_rule_params_are_pydantic_and_strict() -> None:
    assert issubclass(get_rule("bbox.empty").params, RuleParams)
    with pytest.raises(ValueError):
        RuleSet.from_dict({"bbox.empty": {"min_size": -1}})
