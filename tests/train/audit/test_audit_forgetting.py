import polars as pl

from pawpipe.train.audit.forgetting import forgetting


def test_forgetting_events_by_hand():
    rows = []
    for epoch, (a, b, c) in enumerate([(1, 0, 1), (0, 0, 1), (1, 0, 1), (0, 0, 1)]):
        rows += [("a", epoch, 0, 0 if a else 1, True), ("b", epoch, 1, 0, True), ("c", epoch, 2, 2 if c else 0, True)]
    rows.append(("c", 1, 2, 0, False))  # a skipped update's row does not count as a forgetting
    dyn = pl.DataFrame(rows, schema=["sample_id", "epoch", "label_id", "pred_id", "finite"], orient="row")
    got = forgetting(dyn)
    assert got.rows() == [
        ("a", 2, False, 4, 2.0),  # right, wrong, right, wrong: forgotten twice
        ("b", 0, True, 4, 5.0),  # never learned: epochs + 1, above any count
        ("c", 0, False, 4, 0.0),
    ]
    assert got.columns == ["sample_id", "forgetting_events", "never_learned", "epochs", "forgetting_score"]
