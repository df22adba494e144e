"""Apply a rule set to a frame of records: clean rows, quarantined rows, repairs and warnings.

Every rule is one vectorised polars expression and the whole chain is one lazy query, so
millions of rows take seconds. Rules run in registry order; a clip rule rewrites the box
columns for the rules after it, and never touches a row an earlier rule rejected. Messages
are formatted for the rejected rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pawpipe.validation_rules.registry import Action
from pawpipe.validation_rules.ruleset import RuleSet


@dataclass(frozen=True)
class RuleOutcome:
    clean: pl.DataFrame  # rows that passed, with `repairs` and `warnings` list columns
    rejected: pl.DataFrame  # rows that failed, with `rule` (list of ids) and `detail`


def apply_rules(frame: pl.DataFrame, ruleset: RuleSet) -> RuleOutcome:
    """Evaluate ``ruleset`` on ``frame``; every input row is in exactly one of the two outputs."""
    if "parse_rule" not in frame.columns:  # set by the label-file gate; frames built elsewhere lack it
        frame = frame.with_columns(parse_rule=pl.lit(None, dtype=pl.String))
    parsed = pl.col("parse_error").is_null() if "parse_error" in frame.columns else pl.lit(True)
    lf = frame.lazy().with_columns(_ok=pl.lit(True))
    repairs, warnings = [], []
    for i, active in enumerate(ruleset.rules):
        rule, params = active.rule, active.params
        violation = rule.check(params).fill_null(False)
        if not rule.on_unparsed:
            violation = violation & parsed
        if rule.prepare is not None:
            collected = lf.collect(engine="in-memory")
            lf = (rule.prepare(collected, params) if rule.prepare_takes_params else rule.prepare(collected)).lazy()
        lf = lf.with_columns(violation.alias(f"_viol{i}"))
        if active.action is Action.CLIP:
            repair = rule.repair(params)
            fix = pl.col(f"_viol{i}") & repair.fixable.fill_null(False) & pl.col("_ok")
            before = {c: pl.col(c).alias(f"_before{i}_{c}") for c in repair.columns}
            lf = lf.with_columns(fix.alias(f"_fix{i}"), *before.values()).with_columns(
                *(pl.when(pl.col(f"_fix{i}")).then(e).otherwise(pl.col(c)).alias(c) for c, e in repair.columns.items()),
                (pl.col(f"_viol{i}") & ~pl.col(f"_fix{i}")).alias(f"_rej{i}"),
            )
            repairs.append((i, repair))
        elif active.action is Action.WARN:
            lf = lf.with_columns(pl.lit(False).alias(f"_rej{i}"))
            warnings.append(pl.when(pl.col(f"_viol{i}")).then(pl.lit(rule.id)))
        else:
            lf = lf.with_columns(pl.col(f"_viol{i}").alias(f"_rej{i}"))
        lf = lf.with_columns(_ok=pl.col("_ok") & ~pl.col(f"_rej{i}"))
    frame = lf.collect(engine="in-memory")  # a long chain of small column ops: faster than streaming here

    scratch = [c for c in frame.columns if c.startswith("_")]
    # Filter only the columns each side still needs: the frame carries a few scratch columns per rule.
    clean_needs = {"_ok"} | {c for c in scratch if c.startswith(("_fix", "_before"))}
    clean_needs |= {f"_viol{i}" for i, a in enumerate(ruleset.rules) if a.action is Action.WARN}
    # The rejected side keeps the flags and what the rules' `prepare` added (their messages read it).
    rejected_needs = {c for c in scratch if not c.startswith(("_viol", "_fix", "_before"))}
    clean = frame.drop([c for c in scratch if c not in clean_needs]).filter(pl.col("_ok"))
    clean = clean.with_columns(
        _list([_note(i, r, clean) for i, r in repairs]).alias("repairs"), _list(warnings).alias("warnings")
    )
    rejected = frame.drop([c for c in scratch if c not in rejected_needs]).filter(~pl.col("_ok"))
    rules = [pl.when(pl.col(f"_rej{i}")).then(pl.lit(a.rule.id)) for i, a in enumerate(ruleset.rules)]
    details = [
        pl.when(pl.col(f"_rej{i}")).then(
            pl.format("{}: {}", pl.lit(a.rule.id), a.rule.detail(a.params).fill_null(a.rule.description))
        )
        for i, a in enumerate(ruleset.rules)
    ]
    rejected = rejected.with_columns(
        _list(rules).alias("rule"), pl.concat_str(details, separator=" | ", ignore_nulls=True).alias("detail")
    )
    return RuleOutcome(
        clean=clean.drop([c for c in scratch if c in clean.columns]),
        rejected=rejected.drop([c for c in scratch if c in rejected.columns]),
    )


def _note(i: int, repair, clean: pl.DataFrame) -> pl.Expr:
    """The repair note of rule ``i``, written with the values the rule saw, for repaired rows only."""
    fixed = clean.get_column(f"_fix{i}")
    if not fixed.any():
        return pl.lit(None, dtype=pl.String)
    seen = clean.filter(fixed).select(
        pl.col(f"_before{i}_{c}").alias(c) if f"_before{i}_{c}" in clean.columns else pl.col(c) for c in clean.columns
    )
    notes = pl.Series(f"_note{i}", [None] * clean.height, dtype=pl.String).scatter(
        fixed.arg_true(), seen.select(repair.note).to_series()
    )
    return pl.lit(notes)


_SEP = "\x1f"  # never in a rule id or message


def _list(items: list[pl.Expr]) -> pl.Expr:
    """The non-null items as a list per row (concat_list + drop_nulls is far slower on millions of rows)."""
    empty = pl.lit([], dtype=pl.List(pl.String))
    if not items:
        return empty
    joined = pl.concat_str(items, separator=_SEP, ignore_nulls=True)
    return pl.when(joined.is_null() | (joined == "")).then(empty).otherwise(joined.str.split(_SEP))
