"""The tar member layout: how a sample key becomes member names and back, the index beside a tar,
the ``.cls`` bytes."""

from __future__ import annotations

from pathlib import Path

from pawpipe.common.contracts.tar_layout import (
    INDEX_VERSION,
    MEMBERS,
    encode_label,
    index_entry,
    index_path,
    member_key,
    member_name,
)


def test_a_sample_is_three_members_named_by_its_key():
    assert MEMBERS == ("cls", "jpg", "json")
    names = [member_name("a1b2_c3", ext) for ext in MEMBERS]
    assert names == ["a1b2_c3.cls", "a1b2_c3.jpg", "a1b2_c3.json"]
    assert {member_key(name) for name in names} == {"a1b2_c3"}
    assert member_key("dir/x.tar.gz") == "dir/x"  # WebDataset's grouping: the file name up to its first dot


def test_the_index_lies_beside_its_tar():
    assert index_path(Path("out/train/shard-000007_1.tar")) == Path("out/train/shard-000007_1.idx")
    assert index_entry("jpg", 1536, 20480, "k.jpg") == "jpg 1536 20480 k.jpg"
    assert INDEX_VERSION == "v1.2"  # DALI's wds2idx format


def test_a_label_id_is_stored_as_ascii_digits():
    assert [encode_label(i) for i in (0, 7, 12)] == [b"0", b"7", b"12"]
