"""``label.suspect``: a label that ``train audit`` found wrong (and a person did not clear).

The audit folder (``suspects.parquet``, and ``decisions.parquet`` once someone reviewed it) is
joined onto the records by ``sample_id`` before the rules run (``join_suspects``: the one place
that reads it, so the rule itself stays pure). A record is suspect when a reviewer accepted it,
or when nobody rejected it and its verdict is ``label_issue`` (the audit's learned cut-off), its
**video's** verdict (``group_verdict``: every frame of a wrong video together) is, or its
``suspect_score`` reaches ``min_score``. A frame suspect through its video takes the video's
suggested label. Actions:

* ``drop``: quarantined, with the verdict, scores and reason in ``detail``;
* ``clip`` (relabel): kept with the suggested label; the old one goes to ``label_original`` and a
  ``repairs`` entry says what changed;
* ``warn``: kept, listed in ``warnings``.

    [rules."label.suspect"]
    action = "clip"      # relabel
    min_score = 0.9      # optional: also act on high combined scores the verdict left ambiguous
    force = true         # drop or relabel even on an audit whose model was too weak to judge (refused otherwise)
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pawpipe.validation_rules.registry import Repair, RuleParams, get_rule, register_rule
from pawpipe.validation_rules.ruleset import ActiveRule, RuleSet

RULE_ID = "label.suspect"
COLUMNS = (
    "suspect_verdict",
    "suspect_score",
    "suspect_label",
    "suspect_reason",
    "suspect_decision",
    "suspect_group_verdict",
    "suspect_group_label",
    "label_original",
)


class SuspectParams(RuleParams):
    min_score: float | None = None  # also flag samples whose combined suspect_score is at least this
    verdicts: tuple[str, ...] = ("label_issue",)
    groups: bool = True  # act on the video's verdict (group_verdict) as well as the frame's
    force: bool = False  # drop or relabel even when the audit found its model too weak to judge (audit.json "judge")


def read_suspects(audit: str | Path) -> pl.DataFrame:
    """The audit's verdicts (and reviewers' decisions) per sample, as the columns the rule reads."""
    audit = Path(audit)
    path = audit / "suspects.parquet"
    try:
        suspects = pl.read_parquet(path, columns=["sample_id", "verdict", "suspect_score", "suggested_label", "reason"])
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path}: expected a train audit's suspects.parquet: {exc}") from None
    names = pl.read_parquet_schema(path)
    grouped = [
        c for c in ("group_verdict", "group_suggested_label") if c in names
    ]  # audits before group verdicts lack them
    if grouped:
        suspects = suspects.hstack(pl.read_parquet(path, columns=grouped))
    suspects = suspects.rename(
        {"verdict": "suspect_verdict", "suggested_label": "suspect_label", "reason": "suspect_reason"}
    )
    suspects = suspects.rename(
        {"group_verdict": "suspect_group_verdict", "group_suggested_label": "suspect_group_label"}, strict=False
    )
    decisions = audit / "decisions.parquet"
    if decisions.is_file():
        chosen = pl.read_parquet(decisions, columns=["sample_id", "decision"]).rename({"decision": "suspect_decision"})
        return suspects.join(chosen, on="sample_id", how="left")
    return suspects.with_columns(suspect_decision=pl.lit(None, pl.String))


def join_suspects(frame: pl.DataFrame, audit: str | Path) -> pl.DataFrame:
    """``frame`` with the suspect columns (null for samples the audit did not see) and ``label_original``."""
    return frame.join(read_suspects(audit), on="sample_id", how="left", maintain_order="left").with_columns(
        label_original=pl.lit(None, pl.String)
    )


def suspect_rules(ruleset: RuleSet, audit: str | Path | None) -> RuleSet:
    """With an audit: ``ruleset`` plus ``label.suspect`` (its registered defaults) unless it names
    the rule already. Without one: ``ruleset`` less the rule, so a rerun gives the manifest as before."""
    named = any(a.rule.id == RULE_ID for a in ruleset.rules)
    if audit is None:
        return RuleSet(tuple(a for a in ruleset.rules if a.rule.id != RULE_ID), ruleset.source) if named else ruleset
    if not named:
        rule = get_rule(RULE_ID)
        ruleset = RuleSet((*ruleset.rules, ActiveRule(rule, rule.default_action, rule.params())), ruleset.source)
    active = next(a for a in ruleset.rules if a.rule.id == RULE_ID)
    if active.action.value in ("drop", "clip") and not active.params.force:
        _refuse_a_weak_judge(Path(audit), active.action.value)
    return ruleset


def _refuse_a_weak_judge(audit: Path, action: str) -> None:
    """Raise when the audit says its model was too weak to judge labels (``train.audit.judge``) and no
    person reviewed its verdicts (``decisions.parquet``: a reviewer's accept and reject are the judgement then)."""
    if (audit / "decisions.parquet").is_file():
        return
    try:
        judge = json.loads((audit / "audit.json").read_text(encoding="utf-8")).get("judge") or {}
    except (OSError, ValueError):
        return  # an audit folder without audit.json (made by hand): nothing says its judge was weak
    if judge.get("weak"):
        what = "drop" if action == "drop" else "relabel"
        raise ValueError(
            f"{audit}: the audited model is too weak to judge labels (validation accuracy {judge['accuracy']:.3f} over "
            f"{judge['samples']} samples, chance {judge['chance']:.3f}); label.suspect will not {what} on its "
            "verdicts: train a stronger model and audit again, review the verdicts (train audit --review), "
            "or set force = true "
            f'under [rules."{RULE_ID}"]'
        )


def _columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Null suspect columns where the records were not joined with an audit (nothing is suspect then)."""
    types = {"suspect_score": pl.Float64}
    return frame.with_columns(pl.lit(None, types.get(c, pl.String)).alias(c) for c in COLUMNS if c not in frame.columns)


def _by_video(p: SuspectParams) -> pl.Expr:
    """Suspect through its video only: the frame's own verdict would not flag it, the video's does."""
    if not p.groups:
        return pl.lit(False)
    video = pl.col("suspect_group_verdict").is_in(list(p.verdicts)).fill_null(False)
    return video & ~pl.col("suspect_verdict").is_in(list(p.verdicts)).fill_null(False)


def _label(p: SuspectParams) -> pl.Expr:
    """The suggested label: the video's where the frame is suspect through its video."""
    return pl.when(_by_video(p)).then(pl.col("suspect_group_label")).otherwise(pl.col("suspect_label"))


def _detail(p: SuspectParams) -> pl.Expr:
    return pl.format(
        "field 'label': expected a label the audit does not doubt, got '{}' ({}{}, score {}, suggested '{}'): {}",
        pl.col("label"),
        pl.when(_by_video(p))
        .then(pl.format("video {}: label_issue", pl.col("group_id")))
        .otherwise(pl.col("suspect_verdict")),
        pl.when(pl.col("suspect_decision") == "accept").then(pl.lit(", accepted by a reviewer")).otherwise(pl.lit("")),
        pl.col("suspect_score").round(3),
        _label(p),
        pl.col("suspect_reason"),
    )


def _relabel(p: SuspectParams) -> Repair:
    return Repair(
        fixable=_label(p).is_not_null() & (_label(p) != pl.col("label")),
        columns={"label": _label(p), "label_original": pl.col("label")},
        note=pl.format("label.suspect: label '{}' -> '{}' ({})", pl.col("label"), _label(p), pl.col("suspect_reason")),
    )


@register_rule(
    RULE_ID,
    "train audit found the label wrong (and no reviewer cleared it)",
    action="drop",
    params=SuspectParams,
    detail=_detail,
    repair=_relabel,
    prepare=_columns,
)
def suspect(p: SuspectParams) -> pl.Expr:
    flagged = pl.col("suspect_verdict").is_in(list(p.verdicts))
    if p.groups:
        flagged = flagged | pl.col("suspect_group_verdict").is_in(list(p.verdicts)).fill_null(False)
    if p.min_score is not None:
        flagged = flagged | (pl.col("suspect_score") >= p.min_score)
    decision = pl.col("suspect_decision")
    return (decision == "accept") | (decision.is_null() & flagged)
