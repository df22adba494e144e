"""``ingest clean``: raw annotations -> clean manifest + quarantine + labels + report.

Every input record ends in exactly one of ``manifest.parquet`` or ``quarantine.parquet``
(checked before anything is written). Outputs are written atomically; a rerun on the same
input and config writes the same bytes.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from ingest import report as report_mod
from ingest.atomic import sweep_temps, write_json, write_parquet
from ingest.config import CleanConfig
from ingest.labels import build_labels
from ingest.probe import probe_images
from ingest.schema import MANIFEST, ORPHANS, QUARANTINE, conform, empty
from ingest.sources import SourceOptions
from ingest.sources import parse as parse_source
from ingest.split import assign_splits, groups_in_both_splits
from validation_rules.engine import apply_rules
from validation_rules.ruleset import RuleSet


_OUTPUTS = ("manifest.parquet", "quarantine.parquet", "orphans.parquet", "labels.json", "report.json", "report.html", "clean_config.json")


class CleanAborted(RuntimeError):
    """The quarantined share passed ``max_quarantine_fraction``: the manifest was not written."""


@dataclass(frozen=True)
class CleanResult:
    manifest: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict


def clean(config: CleanConfig) -> CleanResult:
    """Run the whole cleaning step for ``config`` and write its outputs under ``config.out``."""
    root = config.root.resolve()
    if not root.is_dir():
        raise ValueError(f"{config.root}: expected a dataset folder, got {'a file' if root.exists() else 'nothing'}")
    options = SourceOptions(label=config.label, annotations=config.annotations, workers=config.workers, quiet=config.quiet)
    fmt, parsed = parse_source(root, config.format, options)

    records = parsed.records.with_columns(sample_id=_sample_ids(parsed.records))
    paths = records.get_column("image_path").drop_nulls().unique(maintain_order=True).to_list()
    probes = probe_images(root, paths, workers=config.workers, quiet=config.quiet)
    frame = records.join(probes, on="image_path", how="left", maintain_order="left")
    if parsed.notes.get("normalised_boxes"):
        from ingest.sources.yolo import to_pixels

        frame = to_pixels(frame)

    vocabulary = config.labels or parsed.vocabulary or _infer_vocabulary(frame)
    ruleset = RuleSet.load(config.rules).with_params("label.unknown", vocabulary=tuple(vocabulary))
    frame = assign_splits(frame, val_fraction=config.val_fraction, seed=config.seed)
    outcome = apply_rules(frame, ruleset)

    extra = [c for c in parsed.extra_columns if c not in MANIFEST.names]
    label_ids = {name: i for i, name in enumerate(vocabulary)}
    manifest = conform(
        outcome.clean.with_columns(label_id=pl.col("label").replace_strict(label_ids, default=None, return_dtype=pl.Int64)),
        MANIFEST,
        extra=extra,
    ).sort("split", "group_id", "image_path", "sample_id")
    quarantine = conform(outcome.rejected, QUARANTINE).sort("source_file", "record", "sample_id", nulls_last=True)
    _check_accounting(records.height, manifest.height, quarantine.height)

    labels = build_labels(manifest, tuple(vocabulary), label_field=config.label, beta=config.effective_number_beta)
    orphans = parsed.orphans if parsed.orphans is not None else empty(ORPHANS)
    resolved = _resolved_config(config, root, fmt, ruleset, vocabulary)
    report = report_mod.build_report(
        fmt=fmt, parsed=parsed, frame=frame, manifest=manifest, quarantine=quarantine, orphans=orphans,
        leaked_groups=groups_in_both_splits(manifest), config=resolved,
    )  # fmt: skip

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        sweep_temps(out / name)  # what a killed earlier run left half-written
    write_parquet(out / "quarantine.parquet", quarantine)
    write_parquet(out / "orphans.parquet", orphans)
    write_json(out / "report.json", report)
    write_json(out / "clean_config.json", resolved)
    report_mod.write_html(out / "report.html", report)
    share = quarantine.height / max(records.height, 1)
    if share > config.max_quarantine_fraction:
        (out / "manifest.parquet").unlink(missing_ok=True)
        raise CleanAborted(
            f"{root}: {quarantine.height} of {records.height} records quarantined ({share:.0%}), above "
            f"max_quarantine_fraction {config.max_quarantine_fraction:.0%}; manifest not written, see {out / 'report.html'}"
        )
    write_json(out / "labels.json", labels)
    write_parquet(out / "manifest.parquet", manifest)
    return CleanResult(manifest=manifest, quarantine=quarantine, report=report)


def _sample_ids(records: pl.DataFrame) -> pl.Series:
    """Stable ids: a hash of where the record came from (file, record, image), same on every rerun.

    A dirty file can name the same record twice (a reused COCO annotation id); the repeats get
    their occurrence number in the hash, so ids stay unique and still stable.
    """
    keys = [f"{s}\0{r}\0{p}" for s, r, p in records.select("source_file", "record", "image_path").iter_rows()]
    ids = [hashlib.blake2b(k.encode(), digest_size=8).hexdigest() for k in keys]
    if len(set(ids)) != len(ids):
        seen: dict[str, int] = {}
        for i, key in enumerate(keys):
            n = seen[key] = seen.get(key, 0) + 1
            if n > 1:
                ids[i] = hashlib.blake2b(f"{key}\0{n}".encode(), digest_size=8).hexdigest()
    return pl.Series("sample_id", ids, dtype=pl.String)


def _infer_vocabulary(frame: pl.DataFrame) -> tuple[str, ...]:
    labels = frame.get_column("label").drop_nulls().str.strip_chars()
    return tuple(sorted(set(labels.filter(labels != "").to_list())))


def _check_accounting(records_in: int, clean: int, quarantined: int) -> None:
    if records_in != clean + quarantined:
        raise RuntimeError(f"accounting: {records_in} records in, {clean} clean + {quarantined} quarantined")


def _resolved_config(config: CleanConfig, root: Path, fmt: str, ruleset: RuleSet, vocabulary) -> dict:
    return {
        **config.model_dump(mode="json"),
        "root": str(root),
        "format": fmt,
        "labels": list(vocabulary),
        "rule_set": {"source": ruleset.source, "rules": ruleset.describe()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in ("pawpipe", "polars", "pyarrow", "pillow", "pydantic")},
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
