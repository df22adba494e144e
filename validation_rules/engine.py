"""Apply a rule set to a frame of records: clean rows, quarantined rows, repairs and warnings.

Every rule is one vectorised polars expression, so millions of rows take seconds. Rules
run in registry order; a clip rule rewrites the box columns for the rules after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from validation_rules.registry import Action
from validation_rules.ruleset import RuleSet


@dataclass(frozen=True)
class RuleOutcome:
    clean: pl.DataFrame  # rows that passed, with `repairs` and `warnings` list columns
    rejected: pl.DataFrame  # rows that failed, with `rule` (list of ids) and `detail`


def apply_rules(frame: pl.DataFrame, ruleset: RuleSet) -> RuleOutcome:
    """Evaluate ``ruleset`` on ``frame``; every input row is in exactly one of the two outputs."""
    parsed = pl.col("parse_error").is_null() if "parse_error" in frame.columns else pl.lit(True)
    frame = frame.with_columns(_ok=pl.lit(True))
    rejects, details, repairs, warnings = [], [], [], []
    for i, active in enumerate(ruleset.rules):
        rule, params = active.rule, active.params
        violation = rule.check(params).fill_null(False)
        if rule.id != "annotation.malformed":
            violation = violation & parsed
        viol, rej = f"_viol{i}", f"_rej{i}"
        frame = frame.with_columns(violation.alias(viol), rule.detail(params).fill_null(rule.description).alias(f"_detail{i}"))
        if active.action is Action.CLIP:
            repair = rule.repair(params)
            fix = pl.col(viol) & repair.fixable.fill_null(False)
            frame = frame.with_columns(
                *(pl.when(fix).then(expr).otherwise(pl.col(c)).alias(c) for c, expr in repair.columns.items()),
                pl.when(fix).then(repair.note).alias(f"_repair{i}"),
                (pl.col(viol) & ~fix).alias(rej),
            )
            repairs.append(pl.col(f"_repair{i}"))
        elif active.action is Action.WARN:
            frame = frame.with_columns(pl.lit(False).alias(rej))
            warnings.append(pl.when(pl.col(viol)).then(pl.lit(rule.id)))
        else:
            frame = frame.with_columns(pl.col(viol).alias(rej))
        frame = frame.with_columns(_ok=pl.col("_ok") & ~pl.col(rej))
        rejects.append(pl.when(pl.col(rej)).then(pl.lit(rule.id)))
        details.append(pl.when(pl.col(rej)).then(pl.format("{}: {}", pl.lit(rule.id), pl.col(f"_detail{i}"))))

    frame = frame.with_columns(
        _list(rejects).alias("rule"),
        _list(details).list.join(" | ").alias("detail"),
        _list(repairs).alias("repairs"),
        _list(warnings).alias("warnings"),
    )
    scratch = [c for c in frame.columns if c.startswith("_")]
    clean = frame.filter(pl.col("_ok")).drop(scratch + ["rule", "detail"])
    rejected = frame.filter(~pl.col("_ok")).drop(scratch)
    return RuleOutcome(clean=clean, rejected=rejected)


def _list(items: list[pl.Expr]) -> pl.Expr:
    if not items:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.concat_list(items).list.drop_nulls()
