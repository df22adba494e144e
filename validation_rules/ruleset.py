"""A rule set: which rules run, with which action and parameters, loaded from TOML.

    [rules."bbox.out_of_bounds"]
    action = "clip"
    max_clip_px = 16

Rules not named in the file do not run, except the ones without which a record could
reach the manifest unreadable (``REQUIRED``): they always run and always drop.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from validation_rules.registry import Action, Rule, RuleParams, get_rule, list_rules

DEFAULT_RULES = Path(__file__).with_name("default.toml")
REQUIRED = (
    "annotation.malformed", "path.outside_root", "image.missing", "image.unreadable",
    "bbox.invalid", "label.missing", "label.unknown",
)  # fmt: skip


@dataclass(frozen=True)
class ActiveRule:
    rule: Rule
    action: Action
    params: RuleParams


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[ActiveRule, ...]
    source: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> RuleSet:
        """Load a rule set TOML (``validation_rules/default.toml`` when ``path`` is None)."""
        path = Path(path) if path is not None else DEFAULT_RULES
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"rule set {path}: {exc}") from None
        return cls.from_dict(doc.get("rules", {}), source=str(path))

    @classmethod
    def from_dict(cls, table: dict[str, dict[str, Any]], *, source: str = "<dict>") -> RuleSet:
        for rule_id in table:
            get_rule(rule_id)  # unknown ids raise, listing the valid ones
        active = []
        for rule_id in list_rules():
            if rule_id not in table and rule_id not in REQUIRED:
                continue
            rule = get_rule(rule_id)
            options = dict(table.get(rule_id, {}))
            action = Action(options.pop("action", rule.default_action.value))
            if rule_id in REQUIRED and action is not Action.DROP:
                raise ValueError(f"rule set {source}: rule {rule_id!r} always drops, got action {action.value!r}")
            if action is Action.CLIP and rule.repair is None:
                raise ValueError(f"rule set {source}: rule {rule_id!r} cannot clip")
            try:
                params = rule.params(**options)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(
                    f"rule set {source}: [rules.\"{rule_id}\"] field {'.'.join(map(str, first['loc']))}: {first['msg']}"
                ) from None
            active.append(ActiveRule(rule, action, params))
        return cls(tuple(active), source)

    def with_params(self, rule_id: str, **values: Any) -> RuleSet:
        """A copy with some parameters of one rule replaced (e.g. the vocabulary, known only at run time)."""
        rules = tuple(
            ActiveRule(a.rule, a.action, a.params.model_copy(update=values)) if a.rule.id == rule_id else a
            for a in self.rules
        )
        return RuleSet(rules, self.source)

    def describe(self) -> list[dict[str, Any]]:
        """The resolved rule set as data, for run records and reports."""
        return [
            {"id": a.rule.id, "action": a.action.value, "description": a.rule.description, **a.params.model_dump(mode="json")}
            for a in self.rules
        ]
