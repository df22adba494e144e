"""A rule set: which rules run, with which action and parameters, loaded from TOML.

    [rules."bbox.out_of_bounds"]
    max_clip_px = 4          # merged over the default: the action stays "clip"

    [rules."image.duplicate"]
    enabled = false          # or: action = "off"

``default.toml`` names the rules the default set runs; their actions and parameters are the
registry's defaults (``register_rule``). A user's file is merged over it rule by rule, so naming
one rule changes that rule only. The rules registered ``required`` (without them a record could
reach the manifest unusable) always run and always drop.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pawpipe.validation_rules.registry import Action, Rule, RuleParams, get_rule, list_rules

DEFAULT_RULES = Path(__file__).with_name("default.toml")
OFF = "off"


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
        """``validation_rules/default.toml``, with the rule set TOML at ``path`` (if any) merged over it."""
        table = _read(DEFAULT_RULES)
        if path is None:
            return cls.from_dict(table, source=str(DEFAULT_RULES))
        for rule_id, options in _read(Path(path)).items():
            if not isinstance(options, dict):
                raise ValueError(f'rule set {path}: [rules."{rule_id}"]: expected a table, got {options!r}')
            try:
                rule = get_rule(rule_id)
            except KeyError as exc:
                raise ValueError(f"rule set {path}: {exc.args[0]}") from None
            options = dict(options)
            enabled = options.pop("enabled", True)
            if enabled is False or options.get("action") == OFF:
                if rule.required:
                    raise ValueError(f"rule set {path}: rule {rule_id!r} always runs (a record failing it is unusable)")
                table.pop(rule_id, None)
            elif enabled is not True:
                raise ValueError(
                    f'rule set {path}: [rules."{rule_id}"] field enabled: expected true or false, got {enabled!r}'
                )
            else:
                table[rule_id] = {**table.get(rule_id, {}), **options}
        return cls.from_dict(table, source=f"{DEFAULT_RULES} + {path}")

    @classmethod
    def from_dict(cls, table: dict[str, dict[str, Any]], *, source: str = "<dict>") -> RuleSet:
        for rule_id in table:
            try:
                get_rule(rule_id)  # unknown ids raise, listing the valid ones
            except KeyError as exc:
                raise ValueError(f"rule set {source}: {exc.args[0]}") from None
        active = []
        for rule_id in list_rules():
            rule = get_rule(rule_id)
            if rule_id not in table and not rule.required:
                continue
            options = dict(table.get(rule_id, {}))
            try:
                action = Action(options.pop("action", rule.default_action.value))
            except ValueError:
                raise ValueError(
                    f'rule set {source}: [rules."{rule_id}"] field action: expected one of drop, clip, warn, off'
                ) from None
            if (rule.required or rule.on_unparsed) and action is not Action.DROP:
                raise ValueError(f"rule set {source}: rule {rule_id!r} always drops, got action {action.value!r}")
            if action is Action.CLIP and rule.repair is None:
                raise ValueError(f"rule set {source}: rule {rule_id!r} cannot clip")
            try:
                params = rule.params(**options)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(
                    f'rule set {source}: [rules."{rule_id}"] field {".".join(map(str, first["loc"]))}: {first["msg"]}'
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

    def ids(self) -> list[str]:
        """The active rule ids, in evaluation order."""
        return [a.rule.id for a in self.rules]

    def param(self, rule_id: str, name: str) -> Any:
        """A parameter of an active rule, or None when the rule is not active."""
        for a in self.rules:
            if a.rule.id == rule_id:
                return getattr(a.params, name)
        return None

    def describe(self) -> list[dict[str, Any]]:
        """The resolved rule set as data, for run records and reports."""
        return [
            {
                "id": a.rule.id,
                "action": a.action.value,
                "description": a.rule.description,
                **a.params.model_dump(mode="json"),
            }
            for a in self.rules
        ]


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"rule set {path}: {exc}") from None
    rules = doc.get("rules", {})
    if not isinstance(rules, dict):
        raise ValueError(f'rule set {path}: expected [rules."<id>"] tables, got rules = {rules!r}')
    return rules
