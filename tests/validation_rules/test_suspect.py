"""``label.suspect``: a train audit fed back into ``ingest clean``: drop, relabel or warn, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pawpipe.common.contracts.ingest_tables import MANIFEST
from pawpipe.ingest.clean import clean
from pawpipe.ingest.config import CleanConfig


def _audit(folder: Path, manifest: pl.DataFrame, decisions: dict[str, str] | None = None) -> tuple[Path, list[str]]:
    """A hand-made audit of the training rows: rows 0-2 label issues, row 3 ambiguous with a high score, the rest ok."""
    train = manifest.filter(pl.col("split") == "train").sort("sample_id")
    n = train.height
    verdicts = ["label_issue"] * 3 + ["ambiguous"] + ["ok"] * (n - 4)
    other = {"행복/즐거움": "편안/안정"}
    suspects = train.select(
        "sample_id",
        "image_path",
        "label",
        suggested_label=pl.col("label").replace_strict(other, default="행복/즐거움"),
        verdict=pl.Series(verdicts),
        reason=pl.lit("AUM -1.5 at or below the cut-off -0.2"),
        suspect_score=pl.Series([0.99, 0.98, 0.97, 0.95] + [0.1] * (n - 4)),
    )
    folder.mkdir()
    suspects.write_parquet(folder / "suspects.parquet")
    if decisions:
        pl.DataFrame({"sample_id": list(decisions), "decision": list(decisions.values())}).write_parquet(
            folder / "decisions.parquet"
        )
    return folder, suspects.get_column("sample_id").to_list()


def _rules(folder: Path, text: str) -> Path:
    path = folder / "rules.toml"
    base = (Path(__file__).parents[2] / "validation_rules" / "default.toml").read_text(encoding="utf-8")
    path.write_text(base + text, encoding="utf-8")
    return path


def test_drop_quarantines_with_the_scores_and_a_rerun_gives_the_original_back(
    demo_raw: Path, demo_clean: Path, tmp_path: Path
):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    audit, ids = _audit(tmp_path / "audit", original, decisions=None)
    out = tmp_path / "dropped"
    result = clean(CleanConfig(root=demo_raw, out=out, workers=1, quiet=True, suspects=audit))
    report = result.report
    assert report["records_in"] == report["clean"] + report["quarantined"]
    gone = result.quarantine.filter(pl.col("rule").list.contains("label.suspect"))
    assert sorted(gone.get_column("sample_id").to_list()) == sorted(ids[:3])
    assert gone.get_column("detail").str.contains("label_issue, score 0.9").all()
    assert gone.get_column("detail").str.contains("AUM -1.5 at or below the cut-off -0.2").all()
    assert (
        result.manifest.height == original.height - 3
        and result.manifest.get_column("label_original").null_count() == result.manifest.height
    )

    again = tmp_path / "again"
    clean(CleanConfig(root=demo_raw, out=again, workers=1, quiet=True))
    assert (again / "manifest.parquet").read_bytes() == (demo_clean / "manifest.parquet").read_bytes()
    assert (again / "quarantine.parquet").read_bytes() == (demo_clean / "quarantine.parquet").read_bytes()


def test_relabel_keeps_the_row_and_records_the_repair(demo_raw: Path, demo_clean: Path, tmp_path: Path):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    # a reviewer rejects the first issue and accepts the ambiguous fourth; min_score is not set
    audit, ids = _audit(tmp_path / "audit", original, decisions=None)
    pl.DataFrame({"sample_id": [ids[0], ids[3]], "decision": ["reject", "accept"]}).write_parquet(
        audit / "decisions.parquet"
    )
    rules = _rules(tmp_path, '\n[rules."label.suspect"]\naction = "clip"\n')
    result = clean(
        CleanConfig(root=demo_raw, out=tmp_path / "relabelled", workers=1, quiet=True, suspects=audit, rules=rules)
    )
    m = result.manifest
    assert (
        m.height == original.height
        and result.quarantine.height == pl.read_parquet(demo_clean / "quarantine.parquet").height
    )
    changed = m.filter(pl.col("label_original").is_not_null()).sort("sample_id")
    assert changed.get_column("sample_id").to_list() == sorted([ids[1], ids[2], ids[3]])
    vocab = json.loads((demo_clean / "labels.json").read_text())["vocabulary"]
    for row in changed.iter_rows(named=True):
        assert row["label"] != row["label_original"] and row["label_id"] == vocab.index(row["label"])
        assert row["repairs"] == [
            f"label.suspect: label '{row['label_original']}' -> '{row['label']}' (AUM -1.5 at or below the cut-off "
            "-0.2)"
        ]
    assert m.columns == MANIFEST.names + [c for c in m.columns if c not in MANIFEST.names]


def test_warn_and_min_score(demo_raw: Path, demo_clean: Path, tmp_path: Path):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    audit, ids = _audit(tmp_path / "audit", original)
    rules = _rules(tmp_path, '\n[rules."label.suspect"]\naction = "warn"\nmin_score = 0.95\n')
    m = clean(
        CleanConfig(root=demo_raw, out=tmp_path / "warned", workers=1, quiet=True, suspects=audit, rules=rules)
    ).manifest
    warned = m.filter(pl.col("warnings").list.contains("label.suspect")).get_column("sample_id").sort().to_list()
    assert warned == sorted(ids[:4]) and m.height == original.height


def test_a_rule_set_naming_the_rule_without_an_audit_changes_nothing(demo_raw: Path, demo_clean: Path, tmp_path: Path):
    rules = _rules(tmp_path, '\n[rules."label.suspect"]\naction = "drop"\n')
    clean(CleanConfig(root=demo_raw, out=tmp_path / "plain", workers=1, quiet=True, rules=rules))
    assert (tmp_path / "plain" / "manifest.parquet").read_bytes() == (demo_clean / "manifest.parquet").read_bytes()


def test_a_missing_audit_is_one_line(demo_raw: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"suspects.parquet: expected a train audit's suspects.parquet"):
        clean(CleanConfig(root=demo_raw, out=tmp_path / "x", workers=1, quiet=True, suspects=tmp_path / "nothing"))


def _weak_judge(audit: Path) -> None:
    """The audit.json a chance-level run leaves: its model judged 168 validation samples no better than chance."""
    judge = {
        "run": "runs/x",
        "samples": 168,
        "accuracy": 0.1845,
        "chance": 0.1667,
        "chance_class": "행복/즐거움",
        "weak": True,
    }
    (audit / "audit.json").write_text(json.dumps({"judge": judge}), encoding="utf-8")


@pytest.mark.parametrize("action", ["drop", "clip"])
def test_a_weak_judge_is_refused_for_drop_and_relabel_unless_forced(
    demo_raw: Path, demo_clean: Path, tmp_path: Path, action: str
):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    audit, ids = _audit(tmp_path / "audit", original)
    _weak_judge(audit)
    rules = _rules(tmp_path, f'[rules."label.suspect"]\naction = "{action}"\n')
    what = "drop" if action == "drop" else "relabel"
    with pytest.raises(
        ValueError,
        match=rf"too weak to judge labels \(validation accuracy 0.184 over 168 samples, chance 0.167\); "
        rf"label.suspect will not {what} on its verdicts",
    ):
        clean(CleanConfig(root=demo_raw, out=tmp_path / "out", workers=1, quiet=True, suspects=audit, rules=rules))
    assert not (tmp_path / "out").exists()
    forced = _rules(tmp_path, f'[rules."label.suspect"]\naction = "{action}"\nforce = true\n')
    result = clean(
        CleanConfig(root=demo_raw, out=tmp_path / "out", workers=1, quiet=True, suspects=audit, rules=forced)
    )
    acted = result.quarantine if action == "drop" else result.manifest.filter(pl.col("label_original").is_not_null())
    assert sorted(acted.filter(pl.col("sample_id").is_in(ids[:3])).get_column("sample_id").to_list()) == sorted(ids[:3])


def test_a_weak_judge_may_still_warn(demo_raw: Path, demo_clean: Path, tmp_path: Path):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    audit, _ = _audit(tmp_path / "audit", original)
    _weak_judge(audit)
    rules = _rules(tmp_path, '[rules."label.suspect"]\naction = "warn"\n')
    result = clean(CleanConfig(root=demo_raw, out=tmp_path / "out", workers=1, quiet=True, suspects=audit, rules=rules))
    assert result.manifest.height == original.height


def test_a_weak_judge_reviewed_by_a_person_is_obeyed(demo_raw: Path, demo_clean: Path, tmp_path: Path):
    original = pl.read_parquet(demo_clean / "manifest.parquet")
    audit, ids = _audit(tmp_path / "audit", original)
    _weak_judge(audit)
    pl.DataFrame({"sample_id": ids[:1], "decision": ["accept"]}).write_parquet(
        audit / "decisions.parquet"
    )  # a person reviewed it
    result = clean(CleanConfig(root=demo_raw, out=tmp_path / "out", workers=1, quiet=True, suspects=audit))
    assert sorted(
        result.quarantine.filter(pl.col("rule").list.contains("label.suspect"))["sample_id"].to_list()
    ) == sorted(ids[:3])
