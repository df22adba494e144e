"""The default rule set is the registry's: ``default.toml`` names rules, ``register_rule`` sets their defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl
import pytest

from pawpipe.validation_rules import Action, RuleSet, get_rule, list_rules, register_rule
from pawpipe.validation_rules.ruleset import DEFAULT_RULES

NAMED = tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))["rules"]
REQUIRED = [rule_id for rule_id in list_rules() if get_rule(rule_id).required]


def test_default_toml_sets_no_value() -> None:
    """An action or parameter written in default.toml would be a second copy of the registry's default."""
    set_here = {rule_id: sorted(options) for rule_id, options in NAMED.items() if options}
    assert set_here == {}, (
        f"default.toml sets {set_here}: give the default in register_rule (validation_rules/) instead"
    )


def test_default_toml_names_registered_rules_and_every_required_one() -> None:
    assert [rule_id for rule_id in NAMED if rule_id not in list_rules()] == []
    assert [rule_id for rule_id in REQUIRED if rule_id not in NAMED] == []


def test_the_default_rule_set_runs_the_registered_defaults() -> None:
    active = [(a.rule.id, a.action, a.params) for a in RuleSet.load().rules]
    expected = [
        (r, get_rule(r).default_action, get_rule(r).params()) for r in list_rules() if r in NAMED or r in REQUIRED
    ]
    assert active == expected


def test_required_rules_drop_by_default() -> None:
    assert REQUIRED == [
        "annotation.malformed",
        "path.outside_root",
        "path.not_regular",
        "path.bad_name",
        "image.missing",
        "image.unreadable",
        "label.missing",
        "label.unknown",
        "bbox.invalid",
    ]
    assert {get_rule(rule_id).default_action for rule_id in REQUIRED} == {Action.DROP}


@pytest.mark.parametrize("rule_id", list_rules())
def test_only_required_rules_refuse_to_be_switched_off(rule_id: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f'[rules."{rule_id}"]\nenabled = false\n', encoding="utf-8")
    if rule_id in REQUIRED:
        with pytest.raises(ValueError, match=f"rule '{rule_id}' always runs"):
            RuleSet.load(path)
    else:
        assert rule_id not in RuleSet.load(path).ids()


def test_a_required_rule_is_registered_with_drop() -> None:
    with pytest.raises(ValueError, match="a required rule, or one on unparsed records, drops; got action 'warn'"):
        register_rule(
            "test.required_warn", "never registered", action="warn", detail=lambda p: pl.lit(""), required=True
        )(lambda p: pl.lit(False))
    assert "test.required_warn" not in list_rules()
