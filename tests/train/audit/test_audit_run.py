import json
from pathlib import Path

import polars as pl
import pytest
import torch

from pawpipe.train.audit.audit import SUSPECTS, AuditJob, review, run_audit
from pawpipe.train.audit.aum import aum, threshold_cutoff
from pawpipe.train.cli import main
from pawpipe.train.data.synthetic import TensorLoader, synthetic_images
from pawpipe.train.data.threshold import ThresholdLoader, threshold_fraction
from pawpipe.train.fit.dynamics import read_dynamics


def test_threshold_loader_moves_exactly_the_hashed_subset():
    x, y, ids = synthetic_images(40, num_classes=4, image_size=8, seed=3)
    loader = ThresholdLoader(TensorLoader(x, y, ids, batch_size=8, train=False), extra_class=4, subset=1, seed=0)
    batches = list(loader)
    got = dict(
        zip([s for b in batches for s in b.sample_ids], torch.cat([b.labels for b in batches]).tolist(), strict=True)
    )
    moved = dict(zip(ids, threshold_fraction(pl.Series(ids), num_classes=4, subset=1, seed=0).to_list(), strict=True))
    assert 0 < sum(moved.values()) < 40
    assert got == {s: 4 if moved[s] else int(label) for s, label in zip(ids, y.tolist(), strict=True)}


def test_audit_of_an_ordinary_and_a_threshold_run(audited_runs, tmp_path: Path):
    plain, threshold = audited_runs["runs"]
    dyn = read_dynamics(threshold / "dynamics")
    in_extra = set(dyn.filter(pl.col("label_id") == 4).get_column("sample_id").to_list())
    expected = threshold_fraction(pl.Series(audited_runs["ids"]), num_classes=4, subset=0, seed=0)
    assert in_extra == {s for s, m in zip(audited_runs["ids"], expected.to_list(), strict=True) if m}

    out = tmp_path / "audit"
    suspects = run_audit(AuditJob(runs=[plain, threshold], manifest=audited_runs["clean"], out=out))
    assert suspects.columns == list(SUSPECTS) and suspects.height == 32
    assert suspects.get_column("rank").to_list() == list(range(1, 33))
    assert set(suspects.get_column("verdict")) <= {"label_issue", "ambiguous", "ok"}
    assert (
        suspects.filter(pl.col("verdict") == "ok").select((pl.col("label") == pl.col("suggested_label")).all()).item()
    )
    assert pl.read_parquet(out / "suspects.parquet").equals(suspects)
    summary = json.loads((out / "audit.json").read_text())
    assert summary["threshold_runs"] == [str(threshold)]
    assert summary["aum_cutoff"] == pytest.approx(threshold_cutoff(aum(dyn), extra_class=4))
    assert len(summary["confident_learning"]["noise_matrix"]) == 4
    last = [e for e in map(json.loads, (plain / "metrics.jsonl").read_text().splitlines()) if e["event"] == "eval"][-1]
    correct = round(
        last["accuracy"] * 8
    )  # 8 validation samples, at most 3 of a class: weak up to 3 + 2.326 * sqrt(8 * 0.375 * 0.625)
    assert max(c["support"] for c in last["per_class"].values()) == 3
    assert {k: summary["judge"][k] for k in ("run", "samples", "accuracy", "chance", "weak")} == {
        "run": str(plain),
        "samples": 8,
        "accuracy": last["accuracy"],
        "chance": 0.375,
        "weak": correct <= 6,
    }
    page = (out / "audit.html").read_text()
    for png in ("noise_matrix.png", "noise_rates.png", "signals.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png in page
    assert (
        "no image" in page or suspects.filter(pl.col("verdict") != "ok").is_empty()
    )  # no shards: cards without images


def test_review_records_decisions(audited_runs, tmp_path: Path):
    out = tmp_path / "audit"
    assert (
        main(["audit", str(audited_runs["runs"][0]), "--manifest", str(audited_runs["clean"]), "--out", str(out)]) == 0
    )
    a, b, c = audited_runs["ids"][:3]
    assert main(["audit", "--review", str(out), "--accept", a, b, "--reject", c]) == 0
    review(out, reject=[b])  # a later decision replaces the earlier one
    got = pl.read_parquet(out / "decisions.parquet")
    assert got.select("sample_id", "decision").rows() == sorted([(a, "accept"), (b, "reject"), (c, "reject")])
    with pytest.raises(ValueError, match="no sample ids"):
        review(out, accept=["nope"])
    assert main(["audit", "--review", str(out), "--accept", "nope"]) == 2


def test_review_sheet_round_trip(audited_runs, tmp_path: Path):
    from pawpipe.train.audit.audit import SHEET, read_review_sheet

    out = tmp_path / "audit"
    suspects = run_audit(AuditJob(runs=[audited_runs["runs"][0]], manifest=audited_runs["clean"], out=out))
    sheet = pl.read_csv(out / "review.csv", schema_overrides={"sample_id": pl.String, "decision": pl.String})
    assert tuple(sheet.columns) == SHEET
    doubted = suspects.filter(pl.col("verdict") != "ok")
    assert sheet.get_column("sample_id").to_list() == doubted.get_column("sample_id").to_list()  # most suspect first
    assert sheet.get_column("decision").is_null().all()
    ids = sheet.get_column("sample_id").to_list()
    assert len(ids) >= 3, "the fixture's flips must leave at least three doubted samples"
    filled = sheet.with_columns(
        decision=pl.Series([" Accept", "reject", None] + [None] * (len(ids) - 3), dtype=pl.String)
    )
    filled.write_csv(tmp_path / "filled.csv")
    assert read_review_sheet(tmp_path / "filled.csv") == ([ids[0]], [ids[1]], [], [])
    assert main(["audit", "--review", str(out), "--decisions", str(tmp_path / "filled.csv")]) == 0
    assert pl.read_parquet(out / "decisions.parquet").select("sample_id", "decision").rows() == sorted(
        [(ids[0], "accept"), (ids[1], "reject")]
    )
    filled.with_columns(decision=pl.Series(["accept", "maybe"] + [None] * (len(ids) - 2), dtype=pl.String)).write_csv(
        tmp_path / "bad.csv"
    )
    with pytest.raises(ValueError) as err:
        read_review_sheet(tmp_path / "bad.csv")
    assert (
        str(err.value)
        == f"{tmp_path / 'bad.csv'}: line 3: decision: expected accept, reject or blank, got 'maybe' (sample {ids[1]})"
    )
    assert main(["audit", "--review", str(out), "--decisions", str(tmp_path / "bad.csv")]) == 2


def test_score_against_planted_flips(tmp_path: Path, capsys):
    from pawpipe.train.audit.score import score_audit

    suspects = pl.DataFrame(
        {
            "image_path": ["a", "b", "c", "d", "e"],
            "verdict": ["label_issue", "label_issue", "ambiguous", "ok", "ok"],
            "aum": [-1.0, 0.5, -2.0, 3.0, 2.0],
            "aum_cutoff": [0.0] * 5,
            "cl_issue": [True, False, False, False, None],
            "never_learned": [False] * 5,
            "annotators_disagree": [None] * 5,
            "label": ["x"] * 5,
            "model_label": ["y", "x", "y", "y", "x"],
            "group_verdict": [None, "ok", "label_issue", "label_issue", None],
            "neighbour_label": ["y", "y", "y", "x", None],
        },
        schema_overrides={"annotators_disagree": pl.Boolean, "group_verdict": pl.String},
    )
    planted = pl.DataFrame({"image_path": ["a", "c", "e"]})
    got = {
        r["signal"]: (r["flagged"], r["true_positives"], r["precision"], r["recall"])
        for r in score_audit(suspects, planted).iter_rows(named=True)
    }
    assert got["label_issue (the verdict)"] == (2, 1, 0.5, pytest.approx(1 / 3))
    assert got["label_issue or ambiguous"] == (3, 2, pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert got["AUM at or below the cut-off"] == (2, 2, 1.0, pytest.approx(2 / 3))
    assert got["annotators disagree"] == (0, 0, 0.0, 0.0)
    assert got["the video's verdict"] == (2, 1, 0.5, pytest.approx(1 / 3))
    assert got["label_issue of frame or video"] == (4, 2, 0.5, pytest.approx(2 / 3))
    assert got["neighbours prefer another class"] == (3, 2, pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert got["the model prefers another class"] == (3, 2, pytest.approx(2 / 3), pytest.approx(2 / 3))
    (tmp_path / "audit").mkdir()
    suspects.write_parquet(tmp_path / "audit" / "suspects.parquet")
    planted.write_csv(tmp_path / "planted.csv")
    assert main(["audit", "--score", str(tmp_path / "audit"), "--planted", str(tmp_path / "planted.csv")]) == 0
    assert "(3 planted flips)" in capsys.readouterr().out


def test_audit_of_a_manifest_the_run_never_saw_is_refused(audited_runs, tmp_path: Path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    manifest = pl.read_parquet(audited_runs["clean"] / "manifest.parquet")
    manifest.with_columns(sample_id=pl.lit("x") + pl.col("sample_id")).write_parquet(other / "manifest.parquet")
    argv = ["audit", str(audited_runs["runs"][0]), "--manifest", str(other), "--out", str(tmp_path / "audit")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"train audit: error: {other}: none of its 32 'train' sample ids is among the 32 samples "
        f"{audited_runs['runs'][0]} trained on; expected the clean manifest the run's shards were built from"
    ]
    assert not (tmp_path / "audit" / "suspects.parquet").exists()
