"""The rule registry: every validation rule under a stable dotted id.

A rule is a pure function from its parameters to a polars boolean expression that is
true where a record violates it, plus metadata: a one-line description, a default
action, a pydantic parameter model, an expression that explains a violation, and for
rules that can repair, the repaired columns. ``register_rule`` is the one place a rule's
defaults are set (its action, its parameters' defaults in the model, whether it is
required); ``default.toml`` only names the rules the default set runs.

    @register_rule("bbox.negative", "box starts left of or above the image", action="clip",
                   params=NegativeParams, detail=..., repair=...)
    def negative(p): return (pl.col("bbox_x") < 0) | (pl.col("bbox_y") < 0)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import polars as pl
from pydantic import BaseModel, ConfigDict


class Action(str, Enum):
    DROP = "drop"  # quarantine the record
    CLIP = "clip"  # repair it when the repair's tolerance allows, otherwise quarantine
    WARN = "warn"  # keep it, list the rule in the manifest's `warnings`


class RuleParams(BaseModel):
    """Base of every rule's parameters; unknown keys in a rule set are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Repair:
    """How a clip rule repairs: where it may (``fixable``), the new column values, and a note."""

    fixable: pl.Expr
    columns: dict[str, pl.Expr]
    note: pl.Expr


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    default_action: Action
    params: type[RuleParams]
    check: Callable[[RuleParams], pl.Expr]
    detail: Callable[[RuleParams], pl.Expr]
    repair: Callable[[RuleParams], Repair] | None = None
    # For rules across records: adds helper columns (prefixed "_") to the frame as it stands
    # before the rule, e.g. which group keeps a duplicated image. Pure: frame in, frame out.
    prepare: Callable[..., pl.DataFrame] | None = None
    # Rules that judge records which did not parse (a label file refused unopened, broken JSON);
    # every other rule sees parsed records only. Such a rule's action is always drop.
    on_unparsed: bool = False
    # When true, ``prepare`` is called as ``prepare(frame, params)``: the helper columns depend on
    # a parameter (the near-duplicate distance decides which frames are kept).
    prepare_takes_params: bool = False
    # Rules without which a record could reach the manifest unusable (unreadable, unparsed, no
    # box, no known label): they run in every rule set and always drop.
    required: bool = False


_REGISTRY: dict[str, Rule] = {}


def register_rule(
    rule_id: str,
    description: str,
    *,
    action: str,
    params: type[RuleParams] = RuleParams,
    detail: Callable[[RuleParams], pl.Expr],
    repair: Callable[[RuleParams], Repair] | None = None,
    prepare: Callable[..., pl.DataFrame] | None = None,
    on_unparsed: bool = False,
    prepare_takes_params: bool = False,
    required: bool = False,
) -> Callable[[Callable[[RuleParams], pl.Expr]], Callable[[RuleParams], pl.Expr]]:
    """Register ``check`` under ``rule_id``; registering an id twice raises."""

    def wrap(check: Callable[[RuleParams], pl.Expr]) -> Callable[[RuleParams], pl.Expr]:
        if rule_id in _REGISTRY:
            raise ValueError(f"rule id {rule_id!r} is already registered")
        if Action(action) is Action.CLIP and repair is None:
            raise ValueError(f"rule {rule_id!r}: a clip rule needs a repair")
        if (required or on_unparsed) and Action(action) is not Action.DROP:
            raise ValueError(
                f"rule {rule_id!r}: a required rule, or one on unparsed records, drops; got action {action!r}"
            )
        _REGISTRY[rule_id] = Rule(
            rule_id,
            description,
            Action(action),
            params,
            check,
            detail,
            repair,
            prepare,
            on_unparsed,
            prepare_takes_params,
            required,
        )
        return check

    return wrap


def get_rule(rule_id: str) -> Rule:
    """The rule registered under ``rule_id``; an unknown id raises and lists the valid ones."""
    _load_builtin_rules()
    try:
        return _REGISTRY[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}; valid ids: {', '.join(list_rules())}") from None


def list_rules() -> list[str]:
    """All registered rule ids in evaluation order: by module, in ``_BUILTIN_MODULES`` order, then as registered.

    The order never depends on which module some other code imported first (the ingest step
    imports ``validation_rules.suspect`` for its helpers long before the rules are listed).
    """
    _load_builtin_rules()
    rank = {f"{_PACKAGE}.{name}": i for i, name in enumerate(_BUILTIN_MODULES)}
    return sorted(_REGISTRY, key=lambda rule_id: rank.get(_REGISTRY[rule_id].check.__module__, len(rank)))


# The evaluation order: file-level failures, then image, label and box checks (boxes are clipped
# in sequence), then exact duplicates among the records still clean, near-duplicates among those
# (it compares the frames still kept), and last the audit's suspects (it judges what every other
# rule kept).
_PACKAGE = __name__.rpartition(".")[0]  # pawpipe.validation_rules, the rule modules' package
_BUILTIN_MODULES = ("annotation", "path", "image", "label", "bbox", "duplicate", "near_duplicate", "suspect")


def _load_builtin_rules() -> None:
    # Importing the rule modules registers them.
    for name in _BUILTIN_MODULES:
        importlib.import_module(f"{_PACKAGE}.{name}")
