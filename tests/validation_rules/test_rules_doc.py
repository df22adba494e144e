"""docs/ingest.md's rule table is the registry's: every registered rule, its default action, its description."""

from __future__ import annotations

import re
from pathlib import Path

from pawpipe.validation_rules.registry import get_rule, list_rules

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def test_the_documented_rule_table_matches_the_registry() -> None:
    rows = re.findall(r"^\| `([a-z_.]+)` \| (\w+) \| (.+) \|$", DOC.read_text(encoding="utf-8"), flags=re.M)
    registry = []
    for rule_id in list_rules():
        rule = get_rule(rule_id)
        registry.append((rule_id, getattr(rule.default_action, "value", rule.default_action), rule.description))
    assert rows == registry
