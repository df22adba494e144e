"""The ``shards`` command: parse arguments, build a config, call one function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pawpipe.common import cli
from pawpipe.common.executor import add_executor_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shards", description="Clean manifest -> shuffled WebDataset shards for DALI."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="write the shards of an `ingest clean` output folder")
    b.add_argument("manifest_dir", type=Path, help="folder with manifest.parquet, labels.json, clean_config.json")
    b.add_argument("--out", type=Path, required=True, help="shards folder")
    b.add_argument("--config", type=Path, help="TOML with ShardConfig fields; flags override it")
    b.add_argument("--root", type=Path, help="dataset root (default: 'root' in clean_config.json)")
    b.add_argument("--crop", choices=["bbox", "full"], help="cut the annotated box (default) or keep the frame")
    b.add_argument("--margin", type=float, help="box margin on each side, fraction of the box size (0.1)")
    b.add_argument("--size", type=int, help="shorter side of the stored image (256)")
    b.add_argument("--max-upscale", type=float, help="largest upscaling of a small crop (1.0: never)")
    b.add_argument("--quality", type=int, help="JPEG quality (90)")
    b.add_argument("--max-samples", type=int, help="samples per shard (3000)")
    b.add_argument("--max-bytes", type=int, help="bytes per tar (256 MiB); splits a shard into parts")
    b.add_argument("--seed", type=int, help="seed of the global shuffle (0)")
    b.add_argument("--workers", type=int, help="worker processes (all cores)")
    add_executor_arguments(b)
    b.add_argument("--num-partitions", type=int, help="K copies of this job share the work (1)")
    b.add_argument("--partition", type=int, help="which copy this is, 0..K-1 (0)")
    b.add_argument("--finalize", action="store_true", default=None, help="only write the split-level files")
    b.add_argument(
        "--retry-failed", action="store_true", default=None, help="redo finished shards that have failed samples"
    )
    b.add_argument("--max-failed-fraction", type=float, help="abort above this failed share (0.05)")
    b.add_argument("--quiet", action="store_true", default=None, help="no progress bar")
    b.add_argument(
        "--select", type=Path, metavar="SCORES", help="data diet: `train scores` output ranking the training samples"
    )
    b.add_argument("--keep", type=float, help="data diet: share of each class's training samples to keep, e.g. 0.5")
    b.add_argument(
        "--by",
        choices=["el2n", "forgetting", "random"],
        help="data diet: rank by (el2n with --select, else random: with near-copies last, de-duplication)",
    )
    b.add_argument(
        "--keep-per-class-min", type=int, help="data diet: keep at least this many samples of each class (1)"
    )
    b.add_argument(
        "--near-duplicates-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="data diet: rank frames ingest flagged image.near_duplicate after the others (default: yes; "
        "--by random --no-near-duplicates-last is plain random)",
    )

    v = sub.add_parser("verify", help="check a shards folder: checksums, indexes, DALI decode, manifest coverage")
    v.add_argument("shards", type=Path, help="the shards folder (`shards build --out`)")
    v.add_argument("--manifest-dir", type=Path, help="default: the one recorded in build_config.json")
    v.add_argument("--no-decode", action="store_true", help="skip decoding every image with DALI")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    return cli.finish_parser(parser, examples=EXAMPLES)


EXAMPLES = """\
  shards build demo/clean --out demo/shards          # demo/clean: made by `make demo` (ingest clean)
  shards build CLEAN --out SHARDS --num-partitions 4 --partition 0   # one of 4 machines
  shards build CLEAN --out SHARDS --finalize                         # when all 4 are done
  shards verify demo/shards"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return cli.run("shards", lambda: _run(args), resumable=args.command == "build")


def _run(args: argparse.Namespace) -> int:
    if args.command == "build":
        from pawpipe.shards.build import BuildAborted, build
        from pawpipe.shards.config import load_shard_config

        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        config = load_shard_config(args.config, overrides)
        try:
            summary = build(config)
        except BuildAborted as exc:
            print(f"shards: error: {exc}", file=sys.stderr)
            return cli.ABORTED
        _print_build(summary)
        return 0
    if args.command == "verify":
        from pawpipe.shards.verify import verify

        report = verify(args.shards, manifest_dir=args.manifest_dir, decode=not args.no_decode, quiet=args.quiet)
        for line in report.errors[:200]:
            print(f"MISMATCH {line}")
        if len(report.errors) > 200:
            print(f"... and {len(report.errors) - 200} more")
        print(report.describe())
        return 1 if report.errors else 0
    raise AssertionError(args.command)


def _print_build(s) -> None:
    from pawpipe.common.contracts.dataset_file import DATASET_FILE
    from pawpipe.common.contracts.shard_tables import FAILED_FILE, NOT_SELECTED, SAMPLES_FILE, SHARDS_FILE

    if s.partition != "finalize":
        print(f"partition {s.partition}: {s.planned} planned shards, {s.built} built, {s.skipped} already finished")
        print(
            f"  {s.samples} samples written, {s.failed} failed, {s.bytes / 2**20:.1f} MiB, "
            f"{s.seconds:.1f} s, {s.rate:.1f} samples/s"
        )
        if s.paths:
            print("  decode paths: " + ", ".join(f"{k} {v}" for k, v in sorted(s.paths.items())))
        for reason, n in s.reasons.most_common():
            print(f"  failed {reason:<22} {n}")
    if s.finalized:
        for split, c in s.finalized.counts.items():
            print(
                f"  {split}: {c.written} of {c.manifest} samples in {c.shards} shards "
                f"({c.bytes / 2**20:.1f} MiB), {c.failed} in {FAILED_FILE}"
            )
        if s.finalized.selection:
            sel = s.finalized.selection
            print(
                f"  selection: {sel.selected} of {sel.train} training samples by {sel.method} (keep {sel.keep}), "
                f"{sel.not_selected} in train/{SAMPLES_FILE} as {NOT_SELECTED}"
            )
        stats = s.finalized.pixel_stats
        print(f"  train mean {stats.mean} std {stats.std} (0-255)")
        print(f"wrote {s.out}/{DATASET_FILE}, {FAILED_FILE}, <split>/{SHARDS_FILE}, <split>/{SAMPLES_FILE}")
    elif s.partition != "finalize":
        print("not finalized: when every partition is done, run `shards build ... --finalize`")


if __name__ == "__main__":
    sys.exit(main())
