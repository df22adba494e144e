"""Tars are byte-reproducible, split by max_bytes, and their index is the one DALI's wds2idx
writes and DALI's webdataset reader reads."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawpipe.common.contracts.tar_layout import INDEX_VERSION, MEMBERS, index_entry, index_path, member_key, member_name
from pawpipe.shards.writer import ShardWriter, expected_index, scan_tar


def _samples(n: int) -> list[tuple[str, dict[str, bytes]]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24 + i, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        meta = json.dumps({"sample_id": f"k{i:03d}"}).encode()
        out.append((f"k{i:03d}", {"cls": str(i % 3).encode(), "jpg": buf.getvalue(), "json": meta}))
    return out


def _write(folder: Path, samples, max_bytes: int = 1 << 30):
    writer = ShardWriter(folder, "shard-000004", max_bytes=max_bytes)
    for key, members in samples:
        writer.add(key, members)
    return writer.close()


def test_same_samples_same_bytes_and_fixed_metadata(tmp_path: Path):
    samples = _samples(6)
    (a,) = _write(tmp_path / "a", samples)
    (b,) = _write(tmp_path / "b", samples)
    assert a.shard == "shard-000004.tar" and a.samples == 6 and a.keys == [k for k, _ in samples]
    for name in ("shard-000004.tar", "shard-000004.idx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with tarfile.open(tmp_path / "a" / a.shard) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos[:3]] == ["k000.cls", "k000.jpg", "k000.json"]
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) for i in infos} == {(0, 0, 0, "", "", 0o444)}
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left


def test_tar_and_index_follow_the_layout_contract(tmp_path: Path):
    samples = _samples(3)
    (part,) = _write(tmp_path, samples)
    members = scan_tar(tmp_path / part.shard)
    assert [m.name for m in members] == [member_name(key, ext) for key, _ in samples for ext in MEMBERS]
    assert [member_key(m.name) for m in members[::3]] == part.keys
    lines = index_path(tmp_path / part.shard).read_text(encoding="ascii").splitlines()
    assert lines[0] == f"{INDEX_VERSION} 3"
    assert len(lines) == 4 and lines[1] == " ".join(
        index_entry(ext, m.offset, m.size, m.name) for ext, m in zip(MEMBERS, members)
    )


def test_index_is_what_wds2idx_writes(tmp_path: Path):
    wds2idx = pytest.importorskip("wds2idx")
    (part,) = _write(tmp_path, _samples(5))
    tar = tmp_path / part.shard
    theirs = tmp_path / "theirs.idx"
    creator = wds2idx.IndexCreator(str(tar), str(theirs), verbose=False)
    creator.create_index()
    creator.close()
    assert index_path(tar).read_text() == theirs.read_text()
    assert expected_index(scan_tar(tar))[0] == theirs.read_text()


def test_max_bytes_splits_into_parts(tmp_path: Path):
    samples = _samples(9)
    parts = _write(tmp_path, samples, max_bytes=20480)
    assert [p.shard for p in parts][:3] == ["shard-000004.tar", "shard-000004_1.tar", "shard-000004_2.tar"]
    assert sum(p.samples for p in parts) == 9
    assert sum((p.keys for p in parts), []) == [k for k, _ in samples]  # order kept across parts
    for p in parts:
        size = (tmp_path / p.shard).stat().st_size
        assert size == p.bytes and (size <= 20480 or p.samples == 1)
    tiny = _write(tmp_path / "tiny", samples[:2], max_bytes=1)  # one sample per part, never zero
    assert [p.samples for p in tiny] == [1, 1]


def test_dali_webdataset_reader_reads_our_index(tmp_path: Path):
    from nvidia.dali import fn, pipeline_def, types

    samples = _samples(7)
    (part,) = _write(tmp_path, samples)
    tar = tmp_path / part.shard

    @pipeline_def(batch_size=7, num_threads=1, device_id=None)
    def pipe():
        jpg, cls, meta = fn.readers.webdataset(
            paths=[str(tar)],
            index_paths=[str(index_path(tar))],
            ext=["jpg", "cls", "json"],
            missing_component_behavior="error",
        )
        return fn.decoders.image(jpg, device="cpu", output_type=types.RGB), cls, meta

    p = pipe()
    p.build()
    images, classes, metas = p.run()
    for i, (key, members) in enumerate(samples):
        assert bytes(np.asarray(classes[i])) == members["cls"]
        assert json.loads(bytes(np.asarray(metas[i])))["sample_id"] == key
        assert np.asarray(images[i]).shape == (24 + i, 32, 3)
