"""The ``ingest`` command: parse arguments, build a config, call one function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest.config import CleanConfig, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description="Validate annotations into Parquet manifests.")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("clean", help="raw annotations -> manifest.parquet + quarantine.parquet + report")
    c.add_argument("root", type=Path, help="dataset root (raw folders)")
    c.add_argument("--out", type=Path, required=True, help="output folder")
    c.add_argument("--config", type=Path, help="TOML with CleanConfig fields; flags override it")
    c.add_argument("--format", choices=["auto", "aihub", "coco", "voc", "yolo", "table"])
    c.add_argument("--label", help="aihub: inspect.emotion (default) | owner.emotion | action | species")
    c.add_argument("--annotations", help="coco/table: the annotation file under the root")
    c.add_argument("--labels", help="the vocabulary, comma-separated, in label-id order")
    c.add_argument("--rules", type=Path, help="rule set TOML (default validation_rules/default.toml)")
    c.add_argument("--val-fraction", type=float, help="validation share when the dataset has no split (0.1)")
    c.add_argument("--seed", type=int, help="seed of the grouped split (0)")
    c.add_argument("--workers", type=int, help="processes for parsing and image checks (all cores)")
    c.add_argument("--max-quarantine-fraction", type=float, help="abort above this quarantined share (0.5)")
    c.add_argument("--quiet", action="store_true", default=None, help="no progress bars")

    d = sub.add_parser("demo-data", help="write the demo dataset (AI Hub layout, with injected faults)")
    d.add_argument("out", type=Path)
    d.add_argument("--videos", type=int, default=36)
    d.add_argument("--frames", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)

    k = sub.add_parser("demo-check", help="compare a cleaning run with the faults the demo injected")
    k.add_argument("root", type=Path)
    k.add_argument("out", type=Path)

    sub.add_parser("rules", help="list the registered validation rules")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ValueError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "clean":
        from ingest.clean import CleanAborted, clean

        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        if args.labels is not None:
            overrides["labels"] = tuple(s.strip() for s in args.labels.split(","))
        config = load_config(args.config, overrides, CleanConfig)
        try:
            result = clean(config)
        except CleanAborted as exc:
            print(f"ingest: error: {exc}", file=sys.stderr)
            return 3
        _print_summary(result.report, config.out)
        return 0
    if args.command == "demo-data":
        from ingest.demo_data import generate

        expected = generate(args.out, videos=args.videos, frames=args.frames, seed=args.seed)
        print(f"demo dataset: {args.out} ({expected['counts']['videos']} videos, "
              f"{len(expected['quarantined'])} injected faults, {len(expected['kept_oddities'])} valid oddities)")  # fmt: skip
        return 0
    if args.command == "demo-check":
        from ingest.demo_check import check, format_table

        results = check(args.root, args.out)
        print(format_table(results))
        return 0 if all(r["ok"] for r in results) else 1
    if args.command == "rules":
        from validation_rules.registry import get_rule, list_rules

        for rule_id in list_rules():
            rule = get_rule(rule_id)
            print(f"{rule_id:<22} {rule.default_action.value:<5} {rule.description}")
        return 0
    raise AssertionError(args.command)


def _print_summary(report: dict, out: Path) -> None:
    print(f"records in {report['records_in']}: clean {report['clean']}, quarantined {report['quarantined']}, "
          f"orphan images {report['orphan_images']}")  # fmt: skip
    for rule, n in report["rules"].items():
        if n:
            print(f"  {rule:<22} {n}")
    for split, info in report["splits"].items():
        print(f"  {split}: {info['samples']} samples, {info['groups']} groups")
    print(f"wrote {out}/manifest.parquet, quarantine.parquet, labels.json, report.json, report.html")


if __name__ == "__main__":
    sys.exit(main())
