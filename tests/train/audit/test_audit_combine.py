import polars as pl

from pawpipe.train.audit.combine import combine


def test_verdicts_reasons_and_rank():
    """label_issue: the model doubting and the AUM at or below its cut-off; one signal alone or weaker evidence:
    ambiguous."""
    signals = pl.DataFrame(
        {
            "sample_id": ["both", "aum_only", "ok", "disagree", "two_views"],
            "label": ["a", "a", "b", "b", "a"],
            "model_label": ["b", "a", "b", "b", "c"],
            "suggested_label": ["b", "b", "a", "a", "c"],
            "other_label": [None, None, None, "a", None],
            "aum": [-2.0, -1.0, 3.0, 2.0, -0.6],
            "aum_cutoff": [-0.5] * 5,
            "cl_issue": [True, False, False, False, False],
            "self_confidence": [0.1, 0.4, 0.9, 0.8, 0.3],
            "forgetting_score": [3.0, 1.0, 0.0, 0.0, 1.0],
            "never_learned": [False, False, False, False, False],
            "annotators_disagree": [None, None, False, True, None],
        }
    )
    got = combine(signals)
    assert got.select("sample_id", "rank", "verdict").rows() == [
        ("both", 1, "label_issue"),
        ("two_views", 2, "label_issue"),
        ("aum_only", 3, "ambiguous"),
        ("disagree", 4, "ambiguous"),
        ("ok", 5, "ok"),
    ]
    reasons = dict(got.select("sample_id", "reason").rows())
    assert (
        reasons["both"] == "AUM -2.0 at or below the cut-off -0.5; confident learning: p(given) 0.1 with b more likely"
    )
    assert reasons["two_views"] == "AUM -0.6 at or below the cut-off -0.5; the model's most probable class is c"
    assert reasons["aum_only"] == "AUM -1.0 at or below the cut-off -0.5"
    assert reasons["disagree"] == "annotators disagree (b vs a)" and reasons["ok"] == "no signal flags it"


def test_the_model_doubting_alone_is_a_label_issue_only_out_of_sample():
    """A view out of sample (out-of-fold, or a later run that never trained on the sample) was never
    fitted to the label: alone it decides. A view of a run that fitted it (eval mode) needs the AUM
    to agree; without it, or with confident learning alone, ambiguous. The column decides per row."""
    signals = pl.DataFrame(
        {
            "sample_id": ["doubt", "cl"],
            "label": ["a", "a"],
            "model_label": ["b", "a"],
            "suggested_label": ["b", "c"],
            "other_label": [None, None],
            "aum": [0.5, 0.5],
            "aum_cutoff": [-0.5, -0.5],
            "cl_issue": [False, True],
            "self_confidence": [0.4, 0.45],
            "forgetting_score": [1.0, 1.0],
            "never_learned": [False, False],
            "annotators_disagree": [None, None],
        },
        schema_overrides={"other_label": pl.String, "annotators_disagree": pl.Boolean},
    )
    fitted = {r["sample_id"]: (r["verdict"], r["reason"]) for r in combine(signals).iter_rows(named=True)}
    assert fitted == {
        "doubt": ("ambiguous", "the model's most probable class is b"),
        "cl": ("ambiguous", "confident learning: p(given) 0.45 with c more likely"),
    }
    assert combine(signals.with_columns(out_of_sample=pl.lit(False))).drop("out_of_sample").equals(combine(signals))
    held_out = {
        r["sample_id"]: r["verdict"]
        for r in combine(signals.with_columns(out_of_sample=pl.lit(True))).iter_rows(named=True)
    }
    assert held_out == {"doubt": "label_issue", "cl": "label_issue"}
    mixed = combine(signals.with_columns(out_of_sample=pl.Series([True, None])))
    assert dict(mixed.select("sample_id", "verdict").rows()) == {"doubt": "label_issue", "cl": "ambiguous"}
