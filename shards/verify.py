"""``shards verify``: is a shards folder exactly what its manifest says it should be?

Per tar: size and sha256 against shards.parquet; members read from the tar headers; the
``.idx`` file equal to the index those members give; keys, ``.cls`` and ``.json`` against
samples.parquet and the manifest; the class histogram; then every image decoded by DALI on
the CPU through ``fn.readers.webdataset`` with that index (the reader and decoder training
uses). Per split: every clean manifest row in exactly one shard or in failed.parquet, and the
counts in dataset.json. Every mismatch names the split, tar and key. A pass is recorded, with each
file's size and mtime, in ``SHARDS/verified.json`` (``common.contracts.verified_file``), for the loaders to compare.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pawpipe.common.contracts.dataset_file import DATASET_FILE, DatasetFile
from pawpipe.common.contracts.ingest_tables import listed_splits
from pawpipe.common.contracts.shard_tables import (
    FAILED,
    FAILED_FILE,
    SAMPLES,
    SAMPLES_FILE,
    SHARDS,
    SHARDS_FILE,
    check_columns,
)
from pawpipe.common.contracts.tar_layout import CLS, JPG, JSON, MEMBERS, encode_label, index_path
from pawpipe.common.contracts.verified_file import VERIFIED_FILE, Stamp, forget_pass, record_pass, stamp
from pawpipe.common.progress import progress
from pawpipe.shards.assign import manifest_sha256, read_manifest
from pawpipe.shards.journal import read_build
from pawpipe.shards.roi import error_line
from pawpipe.shards.writer import Member, expected_index, scan_tar

DALI_BATCH = 32
_CLS, _JPG, _JSON = (MEMBERS.index(ext) for ext in (CLS, JPG, JSON))  # positions in a sample's members


@dataclass
class VerifyReport:
    errors: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    decoded: int = 0
    failed: int = 0
    files: dict[str, Stamp] = field(default_factory=dict)  # what was checked, stamped before it was read
    record: str = ""  # what became of SHARDS/verified.json

    def describe(self) -> str:
        verdict = "OK" if not self.errors else f"{len(self.errors)} mismatches"
        return (
            f"verify: {verdict}: {self.shards} shards, {self.samples} samples ({self.decoded} decoded with DALI), "
            f"{self.failed} in failed.parquet; {self.record}"
        )

    def stamp(self, out: Path, path: Path) -> None:
        self.files[path.relative_to(out).as_posix()] = stamp(path)


def verify(
    shards_dir: str | Path, *, manifest_dir: str | Path | None = None, decode: bool = True, quiet: bool = False
) -> VerifyReport:
    """Check everything; mismatches are collected (not raised) so one run lists them all. A pass is
    recorded in ``SHARDS/verified.json`` (``common.contracts.verified_file``: what the loaders compare with), a
    mismatch removes that record."""
    out = Path(shards_dir)
    report = _check(out, manifest_dir=manifest_dir, decode=decode, quiet=quiet)
    try:
        if report.errors:
            forget_pass(out)
            report.record = f"no {VERIFIED_FILE} (removed, if an earlier pass had left one)"
        else:
            record_pass(out, report.files, decoded=decode)
            report.record = f"recorded in {out / VERIFIED_FILE}"
    except OSError as exc:  # a read-only shards folder can still be verified
        report.record = f"not recorded: {exc.filename or out / VERIFIED_FILE}: {exc.strerror or exc}"
    return report


def _check(out: Path, *, manifest_dir: str | Path | None, decode: bool, quiet: bool) -> VerifyReport:
    report = VerifyReport()
    build = read_build(out)
    manifest_dir = Path(manifest_dir or build["manifest_dir"])
    if manifest_sha256(manifest_dir) != build["manifest_sha256"]:
        report.errors.append(f"{manifest_dir}/manifest.parquet: differs from the one the shards were built from")
    manifest = read_manifest(manifest_dir)
    splits = listed_splits(manifest.get_column("split").unique())
    try:
        for path in (
            out / DATASET_FILE,
            out / FAILED_FILE,
            *(out / s / t for s in splits for t in (SHARDS_FILE, SAMPLES_FILE)),
        ):
            report.stamp(out, path)
        dataset = DatasetFile.read(out / DATASET_FILE)
        failed = _read_table(out / FAILED_FILE, FAILED)
        tables = {
            s: (_read_table(out / s / SHARDS_FILE, SHARDS), _read_table(out / s / SAMPLES_FILE, SAMPLES))
            for s in splits
        }
    except (OSError, pl.exceptions.PolarsError) as exc:
        report.errors.append(
            f"{out}: not finalized ({' '.join(str(exc).split())[:200]}); run `shards build ... --finalize`"
        )
        return report
    except ValueError as exc:  # a file that breaks its contract (common.contracts)
        report.errors.append(str(exc))
        return report
    report.failed = failed.height
    bar = progress(sum(t[1].height for t in tables.values()), desc="shards verify", unit="img", disable=quiet)
    decoder = _DaliChecker() if decode else None
    for split, (shards, samples) in tables.items():
        left_out = samples.filter(pl.col("shard").is_null())  # a data-diet build's not_selected rows (shards.select)
        samples = samples.filter(pl.col("shard").is_not_null())
        truth = manifest.filter(pl.col("split") == split)
        labels = dict(zip(truth["sample_id"], truth["label_id"]))
        by_shard = {name: group for (name,), group in samples.group_by("shard", maintain_order=True)}
        for row in shards.iter_rows(named=True):
            rows = by_shard.pop(row["shard"], samples.clear())
            report.errors += _check_shard(out / split, row, rows, labels, decoder, report)
            report.shards += 1
            report.samples += rows.height
            bar.update(rows.height)
        for name in by_shard:
            report.errors.append(f"{split}/{name}: named in samples.parquet but not in shards.parquet")
        listed = set(shards["shard"])
        for stray in sorted(p.name for p in (out / split).glob("*.tar") if p.name not in listed):
            report.errors.append(f"{split}/{stray}: a tar that shards.parquet does not list")
        report.errors += _check_coverage(
            split, truth, samples, failed.filter(pl.col("split") == split), dataset, left_out
        )
    bar.close()
    return report


def _read_table(path: Path, schema: pa.Schema) -> pl.DataFrame:
    return check_columns(path, pl.read_parquet(path), schema)


def _check_shard(folder: Path, row: dict, rows: pl.DataFrame, labels: dict, decoder, report: VerifyReport) -> list[str]:
    where = f"{folder.name}/{row['shard']}"
    tar = folder / row["shard"]
    try:
        report.stamp(folder.parent, tar)
        size, digest = _sha256(tar)
    except OSError as exc:
        return [f"{where}: cannot read ({exc.strerror or exc})"]
    errors = []
    if size != row["bytes"] or digest != row["sha256"]:
        errors.append(
            f"{where}: {size} bytes sha256 {digest[:16]}..., expected {row['bytes']} bytes sha256 "
            f"{row['sha256'][:16]}..."
        )
    try:
        members = scan_tar(tar)
    except (OSError, tarfile.TarError, ValueError) as exc:
        return [*errors, f"{where}: not a readable tar ({exc})"]
    text, groups = expected_index(members)
    idx = index_path(tar)
    try:
        report.stamp(folder.parent, idx)
        got = idx.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{where}: index {idx.name} unreadable ({exc})")
        got = None
    if got is not None and got != text:
        bad = next((i for i, (a, b) in enumerate(zip(got.splitlines(), text.splitlines())) if a != b), None)
        errors.append(
            f"{where}: index {idx.name} does not match the tar (first difference at line {bad}, "
            f"{len(got.splitlines())} lines, expected {len(text.splitlines())})"
        )
    keys, ids, label_ids = rows["key"].to_list(), rows["sample_id"].to_list(), rows["label_id"].to_list()
    if len(groups) != len(keys) or len(groups) != row["samples"]:
        errors.append(
            f"{where}: {len(groups)} samples in the tar, expected {row['samples']} (shards.parquet) "
            f"and {len(keys)} (samples.parquet)"
        )
    histogram = Counter()
    with open(tar, "rb") as handle:
        for (key, group), want_key, sample_id, label_id in zip(groups, keys, ids, label_ids):
            errors += _check_sample(handle, f"{where}: key {key}", key, group, want_key, sample_id, label_id, labels)
            histogram[label_id] += 1
    if [histogram.get(i, 0) for i in range(len(row["classes"]))] != list(row["classes"]):
        errors.append(
            f"{where}: class histogram {row['classes']} in shards.parquet, tar holds {dict(sorted(histogram.items()))}"
        )
    if decoder is not None and groups and got == text:
        errors += decoder.check(tar, idx, where, groups, label_ids, report)
    return errors


def _check_sample(
    handle, where: str, key: str, group: list[Member], want_key: str, sample_id: str, label_id: int, labels: dict
) -> list[str]:
    if key != want_key:
        return [f"{where}: expected key {want_key} (sample {sample_id}) at this position, per samples.parquet"]
    exts = tuple(m.name[len(key) + 1 :] for m in group)
    if exts != MEMBERS:
        return [f"{where}: members {exts}, expected {MEMBERS}"]
    cls, meta = _read(handle, group[_CLS]), _read(handle, group[_JSON])
    errors = []
    truth = labels.get(sample_id)
    if truth is None:
        errors.append(f"{where}: sample {sample_id} is not a manifest row of this split")
    elif cls != encode_label(truth) or label_id != truth:
        errors.append(f"{where}: .cls {cls!r}, samples.parquet {label_id}, expected the manifest's label_id {truth}")
    try:
        doc = json.loads(meta)
        if doc.get("sample_id") != sample_id or doc.get("label_id") != truth:
            errors.append(
                f"{where}: .json names sample {doc.get('sample_id')!r} label {doc.get('label_id')}, "
                f"expected {sample_id!r} label {truth}"
            )
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        errors.append(f"{where}: .json unreadable ({exc})")
    return errors


class _DaliChecker:
    """Decode every image of a tar with DALI's webdataset reader (our index) and CPU decoder."""

    def check(
        self, tar: Path, idx: Path, where: str, groups: list, label_ids: list[int], report: VerifyReport
    ) -> list[str]:
        from nvidia.dali import fn, pipeline_def, types

        n = len(groups)
        batch = min(DALI_BATCH, n)

        @pipeline_def(batch_size=batch, num_threads=1, device_id=None, prefetch_queue_depth=1, exec_dynamic=True)
        def pipeline():
            jpg, cls = fn.readers.webdataset(
                paths=[str(tar)], index_paths=[str(idx)], ext=[JPG, CLS], missing_component_behavior="error"
            )
            return fn.decoders.image(jpg, device="cpu", output_type=types.RGB), cls

        errors = []
        try:
            pipe = pipeline()
            pipe.build()
        except RuntimeError as exc:
            return [f"{where}: DALI cannot open it with its index: {error_line(exc)}"]
        for start in range(0, n, batch):
            try:
                images, classes = pipe.run()
            except RuntimeError:
                return errors + self._pinpoint(tar, where, groups[start : start + batch])
            for i in range(min(batch, n - start)):
                key = groups[start + i][0]
                shape = np.asarray(images[i]).shape
                cls = bytes(np.asarray(classes[i]))
                if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1:
                    errors.append(f"{where}: key {key}: DALI decoded shape {shape}, expected H x W x 3")
                if cls != encode_label(label_ids[start + i]):
                    errors.append(f"{where}: key {key}: DALI read .cls {cls!r}, expected {label_ids[start + i]}")
                report.decoded += 1
        return errors

    @staticmethod
    def _pinpoint(tar: Path, where: str, groups: list) -> list[str]:
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1, exec_dynamic=True)
        def one():
            return fn.decoders.image(fn.external_source(name="jpg", dtype=types.UINT8, ndim=1), device="cpu")

        pipe = one()
        pipe.build()
        errors = []
        with open(tar, "rb") as handle:
            for key, group in groups:
                pipe.feed_input("jpg", [np.frombuffer(_read(handle, group[_JPG]), np.uint8)])
                try:
                    pipe.run()
                except RuntimeError as exc:
                    errors.append(f"{where}: key {key}: DALI cannot decode {group[_JPG].name}: {error_line(exc)}")
        return errors or [f"{where}: DALI failed on a batch from key {groups[0][0]}, but each image decodes alone"]


def _check_coverage(
    split: str,
    truth: pl.DataFrame,
    samples: pl.DataFrame,
    failed: pl.DataFrame,
    dataset: DatasetFile,
    left_out: pl.DataFrame,
) -> list[str]:
    errors = []
    placed = pl.concat(
        [
            samples.select("sample_id", where=pl.col("shard")),
            failed.select("sample_id", where=pl.lit("failed.parquet")),
            left_out.select("sample_id", where=pl.lit("not_selected")),
        ]
    )
    for sample_id, places in (
        placed.group_by("sample_id").agg("where").filter(pl.col("where").list.len() > 1).head(20).iter_rows()
    ):
        errors.append(f"{split}: sample {sample_id} is in more than one place: {places}")
    for sample_id, path in (
        truth.join(placed, on="sample_id", how="anti").select("sample_id", "image_path").head(20).iter_rows()
    ):
        errors.append(f"{split}: manifest sample {sample_id} ({path}) is in no shard and not in failed.parquet")
    for sample_id, where in placed.join(truth, on="sample_id", how="anti").head(20).iter_rows():
        errors.append(f"{split}: {where}: sample {sample_id} is not a manifest row of this split")
    recorded = dataset.counts.get(split)
    counts = recorded.model_dump() if recorded is not None else {}
    got = {"manifest": truth.height, "written": samples.height, "failed": failed.height}
    if left_out.height or "not_selected" in counts:
        got["not_selected"] = left_out.height
    if {k: counts.get(k) for k in got} != got:
        errors.append(f"{split}: dataset.json counts {counts}, the files give {got}")
    return errors


def _read(handle, member: Member) -> bytes:
    handle.seek(member.offset)
    return handle.read(member.size)


def _sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
