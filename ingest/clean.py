"""``ingest clean``: raw annotations -> clean manifest + quarantine + labels + report.

Every input record ends in exactly one of ``manifest.parquet`` or ``quarantine.parquet``
(checked before anything is written). Outputs are written atomically; a rerun on the same
input and config writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from pawpipe.common.atomic import staged_folder, write_json, write_parquet
from pawpipe.common.contracts.ingest_tables import CORE_SPLITS, MANIFEST, ORPHANS, QUARANTINE, conform, empty
from pawpipe.common.contracts.labels_file import build_labels
from pawpipe.common.executor import ExecutorOptions, open_executor, use_executor
from pawpipe.common.folders import check_target
from pawpipe.common.lock import FolderLock
from pawpipe.ingest import report as report_mod
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.grouping import GroupBy, apply_grouping
from pawpipe.ingest.probe import probe_images
from pawpipe.ingest.report_page import write_html
from pawpipe.ingest.sources import AUTO, SourceOptions, get_source
from pawpipe.ingest.sources import parse as parse_source
from pawpipe.ingest.split import assign_splits, groups_in_both_splits
from pawpipe.validation_rules import RuleSet, apply_rules, join_suspects, suspect_rules

TOOL = "ingest clean"


class CleanAborted(RuntimeError):
    """The quarantined share passed ``max_quarantine_fraction``: the manifest was not written."""


@dataclass(frozen=True)
class CleanResult:
    manifest: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict


def clean(config: CleanConfig) -> CleanResult:
    """Run the whole cleaning step for ``config`` and write its outputs under ``config.out``."""
    with open_executor(config) as executor, use_executor(executor):  # parsing and probing run on it
        return _clean(config)


def _clean(config: CleanConfig) -> CleanResult:
    root = config.root.resolve()
    if not root.is_dir():
        raise ValueError(f"{config.root}: expected a dataset folder, got {'a file' if root.exists() else 'nothing'}")
    check_target(config.out.resolve(), TOOL, overwrite=config.overwrite)
    if not config.overwrite:
        _check_same_config(config, root)
    rules = RuleSet.load(config.rules)  # before parsing: the size limits apply while files are read
    options = SourceOptions(
        label=config.label,
        annotations=config.annotations,
        workers=config.workers,
        quiet=config.quiet,
        max_file_bytes=rules.param("annotation.too_large", "max_bytes"),
        allow_roots=tuple(map(str, config.allow_roots)),
    )
    fmt, parsed = parse_source(root, config.format, options)

    grouping = apply_grouping(parsed.records, GroupBy.parse(config.group_by))
    records = grouping.frame.with_columns(sample_id=_sample_ids(grouping.frame))
    paths = records.get_column("image_path").drop_nulls().unique(maintain_order=True).to_list()
    max_pixels = rules.param("image.too_large", "max_pixels")
    probes = probe_images(
        root, paths, workers=config.workers, quiet=config.quiet, max_pixels=max_pixels, allowed=options.allow_roots
    )
    frame = get_source(fmt).post_probe(records.join(probes, on="image_path", how="left", maintain_order="left"))

    vocabulary = config.labels or parsed.vocabulary or _infer_vocabulary(frame)
    ruleset = rules.with_params("label.unknown", vocabulary=tuple(vocabulary))
    ruleset = suspect_rules(ruleset, config.suspects)
    if config.resplit_by_group:  # the data's own train/val folders give way; its held-out test stays
        frame = frame.with_columns(
            split=pl.when(pl.col("split").is_in(CORE_SPLITS)).then(None).otherwise(pl.col("split"))
        )
    frame = assign_splits(frame, val_fraction=config.val_fraction, seed=config.seed)
    if config.suspects is not None:
        frame = join_suspects(frame, config.suspects)
    outcome = apply_rules(frame, ruleset)

    extra = [c for c in parsed.extra_columns if c not in MANIFEST.names] + (
        ["label_original"] if config.suspects else []
    )
    label_ids = {name: i for i, name in enumerate(vocabulary)}
    manifest = conform(
        outcome.clean.with_columns(
            label_id=pl.col("label").replace_strict(label_ids, default=None, return_dtype=pl.Int64)
        ),
        MANIFEST,
        extra=extra,
    ).sort("split", "group_id", "image_path", "sample_id")
    quarantine = conform(outcome.rejected, QUARANTINE).sort("source_file", "record", "sample_id", nulls_last=True)
    _check_accounting(records.height, manifest.height, quarantine.height)

    labels = build_labels(manifest, tuple(vocabulary), label_field=config.label, beta=config.effective_number_beta)
    orphans = parsed.orphans if parsed.orphans is not None else empty(ORPHANS)
    resolved = _resolved_config(config, root, fmt, ruleset, vocabulary)
    report = report_mod.build_report(
        fmt=fmt,
        parsed=parsed,
        frame=frame,
        manifest=manifest,
        quarantine=quarantine,
        orphans=orphans,
        leaked_groups=groups_in_both_splits(manifest),
        grouping=grouping.summary(),
        config=resolved,
    )

    out = config.out.resolve()
    refused = _abort_reason(config, fmt, parsed.notes, report, records_in=records.height, clean=manifest.height)
    with (
        FolderLock(out.parent, name=f".{out.name}.lock", busy=f"written by `{TOOL}`", names=out),
        staged_folder(out, tool=TOOL) as stage,
    ):
        write_parquet(stage / "quarantine.parquet", quarantine)
        write_parquet(stage / "orphans.parquet", orphans)
        write_json(stage / "report.json", report)
        write_json(stage / "clean_config.json", resolved)
        write_html(stage / "report.html", report)
        if refused is None:  # an aborted run's set has no manifest, so nothing downstream takes it for a clean one
            write_json(stage / "labels.json", labels)
            write_parquet(stage / "manifest.parquet", manifest)
    if refused is not None:
        raise CleanAborted(f"{root}: {refused}; manifest not written, see {out / 'report.html'}")
    return CleanResult(manifest=manifest, quarantine=quarantine, report=report)


def _abort_reason(
    config: CleanConfig, fmt: str, notes: dict, report: dict, *, records_in: int, clean: int
) -> str | None:
    """Why the manifest must not be written, or None: an empty manifest is never a success, whatever the
    threshold, and a quarantined share above ``max_quarantine_fraction`` stops the run."""
    top = ", ".join(
        f"{rule} {n}{report_mod.RULE_HINTS.get(rule, '')}"
        for rule, n in sorted(report["rules"].items(), key=lambda kv: -kv[1])[:3]
        if n
    )
    quarantined = records_in - clean
    share = quarantined / max(records_in, 1)
    if not records_in:
        return f"no annotation records found (read {fmt}: {report_mod.what_was_read(notes)})"
    if not clean:
        return f"all {records_in} records quarantined ({top})"
    if share > config.max_quarantine_fraction:
        return (
            f"{quarantined} of {records_in} records quarantined ({share:.0%}: {top}), above "
            f"max_quarantine_fraction {config.max_quarantine_fraction:.0%}"
        )
    return None


# Fields that change how the work runs, not what it produces: a rerun may change them freely.
_HOW_IT_RUNS = {"out", "workers", "quiet", "overwrite", *ExecutorOptions.model_fields}


def _check_same_config(config: CleanConfig, root: Path) -> None:
    """Refuse to replace an earlier output made from another input or config (``--overwrite`` allows it)."""
    recorded_path = config.out / "clean_config.json"
    if not (config.out / "manifest.parquet").exists():
        return  # an aborted run's output (a report, no manifest): rerunning with other options is the fix it asked for
    try:
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no earlier output to protect (or one a person made)
    now = {**config.model_dump(mode="json"), "root": str(root)}
    skip = _HOW_IT_RUNS | {"labels"} | ({"format"} if config.format == AUTO else set())  # recorded: the resolved ones
    changed = sorted(k for k in now if k not in skip and k in recorded and recorded[k] != now[k])
    if config.labels is not None and recorded.get("labels") != list(config.labels):
        changed.append("labels")
    if changed:
        first = changed[0]
        raise ValueError(
            f"{config.out}: an `ingest clean` output of another config ({', '.join(changed)} differ: {first} was "
            f"{recorded[first]!r}, now {now.get(first)!r}); pass --overwrite to replace it, or choose another --out"
        )


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
