import polars as pl

from pawpipe.train.audit.disagreement import disagreement


def test_owner_and_inspector():
    manifest = pl.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "label": ["공포", "공포", "공격성", "공포"],
            "owner_emotion": ["공포", "공격성", None, "공포"],
            "inspect_emotion": ["공포", "공포", "공격성", "공격성"],
        }
    )
    got = disagreement(manifest)
    assert got.rows() == [("a", False, None), ("b", True, "공격성"), ("c", None, None), ("d", True, "공격성")]


def test_a_source_with_one_label_gives_no_evidence():
    got = disagreement(pl.DataFrame({"sample_id": ["a"], "label": ["cat"]}))
    assert got.rows() == [("a", None, None)]
