"""The ``ingest`` command: parse arguments, build a config, call one function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pawpipe.common import cli
from pawpipe.common.config import load_config
from pawpipe.common.executor import add_executor_arguments
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.demo import NOISE_UNITS
from pawpipe.ingest.sources import FORMAT_CHOICES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description="Validate annotations into Parquet manifests.")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("clean", help="raw annotations -> manifest.parquet + quarantine.parquet + report")
    c.add_argument("root", type=Path, help="dataset root (raw folders)")
    c.add_argument("--out", type=Path, required=True, help="output folder")
    c.add_argument("--config", type=Path, help="TOML with CleanConfig fields; flags override it")
    c.add_argument("--format", choices=FORMAT_CHOICES)
    c.add_argument("--label", help="aihub: inspect.emotion (default) | owner.emotion | action | species")
    c.add_argument("--annotations", help="coco/table: the annotation file under the root")
    c.add_argument("--labels", help="the vocabulary, comma-separated, in label-id order")
    c.add_argument("--rules", type=Path, help="rule set TOML (default validation_rules/default.toml)")
    c.add_argument(
        "--allow-root",
        dest="allow_roots",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder outside the root that symlinks under it may lead into (frames on another disk); repeatable",
    )
    c.add_argument(
        "--suspects",
        type=Path,
        metavar="AUDIT",
        help="a train audit folder: quarantine (or relabel, per the rule set) the labels it found wrong",
    )
    c.add_argument(
        "--group-by",
        metavar="RULE",
        help="which images are one video: auto (default: the source's groups, else a frame naming such as "
        "<video>_frame<N>) | folder | stem:REGEX | column:NAME | source | none",
    )
    c.add_argument(
        "--resplit-by-group",
        action="store_true",
        default=None,
        help="split train/val anew, grouped and stratified, even where the data has its own split folders",
    )
    c.add_argument("--val-fraction", type=float, help="validation share when the dataset has no split (0.1)")
    c.add_argument("--seed", type=int, help="seed of the grouped split (0)")
    c.add_argument("--workers", type=int, help="processes for parsing and image checks (all cores)")
    add_executor_arguments(c)
    c.add_argument("--max-quarantine-fraction", type=float, help="abort above this quarantined share (0.5)")
    c.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    c.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace an --out folder another pawpipe tool wrote (never a folder of other files)",
    )

    d = sub.add_parser("demo-data", help="write the demo dataset (AI Hub layout, with injected faults)")
    d.add_argument("out", type=Path)
    d.add_argument("--videos", type=int, default=36, help="videos to generate (36)")
    d.add_argument("--frames", type=int, default=8, help="frames per video (8)")
    d.add_argument("--seed", type=int, default=0, help="seed of the generator (0)")
    d.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="share of training frames whose shape shows another class than the label (planted_flips.csv)",
    )
    d.add_argument(
        "--noise-unit",
        choices=NOISE_UNITS,
        default="frame",
        help="draw --label-noise per frame (default) or per video (every frame of a flipped video)",
    )
    d.add_argument("--val-videos", type=int, default=6, help="the last videos that form the validation split (6)")
    d.add_argument(
        "--pair-colours",
        action="store_true",
        help="both classes of a look-alike pair in one colour: only the outline tells them apart (harder)",
    )

    k = sub.add_parser("demo-check", help="compare a cleaning run with the faults the demo injected")
    k.add_argument("root", type=Path, help="the demo dataset (demo-data's folder)")
    k.add_argument("out", type=Path, help="the `ingest clean` output folder of that dataset")

    r = sub.add_parser("rules", help="list the registered validation rules, and which a rule set makes active")
    r.add_argument("--rules", type=Path, help="a rule set TOML, merged over validation_rules/default.toml")
    return cli.finish_parser(parser, examples=EXAMPLES)


EXAMPLES = """\
  ingest demo-data demo/raw
  ingest clean demo/raw --out demo/clean
  ingest clean data/coco --format coco --out data/clean --rules my_rules.toml
  ingest rules --rules my_rules.toml          # which rules run, with which action"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return cli.run("ingest", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.command == "clean":
        from pawpipe.ingest.clean import CleanAborted, clean

        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        if args.labels is not None:
            overrides["labels"] = tuple(s.strip() for s in args.labels.split(","))
        config = load_config(args.config, overrides, CleanConfig)
        try:
            result = clean(config)
        except CleanAborted as exc:
            print(f"ingest: error: {exc}", file=sys.stderr)
            return cli.ABORTED
        _print_summary(result.report, config.out)
        return 0
    if args.command == "demo-data":
        from pawpipe.ingest.demo.data import generate

        expected = generate(
            args.out,
            videos=args.videos,
            frames=args.frames,
            seed=args.seed,
            label_noise=args.label_noise,
            val_videos=args.val_videos,
            noise_unit=args.noise_unit,
            pair_colours=args.pair_colours,
        )
        print(
            f"demo dataset: {args.out} ({expected['counts']['videos']} videos, "
            f"{len(expected['quarantined'])} injected faults, {len(expected['kept_oddities'])} valid oddities)"
        )
        return 0
    if args.command == "demo-check":
        from pawpipe.ingest.demo.check import check, format_table

        results = check(args.root, args.out)
        print(format_table(results))
        return 0 if all(r["ok"] for r in results) else 1
    if args.command == "rules":
        from pawpipe.validation_rules import RuleSet, get_rule, list_rules

        active = {a.rule.id: a.action.value for a in RuleSet.load(args.rules).rules}
        for rule_id in list_rules():
            rule = get_rule(rule_id)
            print(f"{rule_id:<26} {active.get(rule_id, 'off'):<5} {rule.description}")
        return 0
    raise AssertionError(args.command)


def _print_summary(report: dict, out: Path) -> None:
    import json

    from pawpipe.ingest import report as report_mod
    from pawpipe.ingest.report import what_was_read

    rules = json.loads((out / "clean_config.json").read_text(encoding="utf-8"))["rule_set"]
    print(f"rules ({rules['source']}): " + ", ".join(f"{r['id']} {r['action']}" for r in rules["rules"]))
    print(
        f"records in {report['records_in']}: clean {report['clean']}, quarantined {report['quarantined']}, "
        f"orphan images {report['orphan_images']}"
    )
    for rule, n in report["rules"].items():
        if n:
            print(f"  {rule:<22} {n}{report_mod.RULE_HINTS.get(rule, '')}")
    for left_out in report["source_notes"].get("categories_left_out") or []:
        print(f"ingest: warning: category {left_out} is no class: left out of labels.json", file=sys.stderr)
    print(f"read {report['format']}: {what_was_read(report['source_notes'])}")
    others = (report["source_notes"].get("detected") or {}).get("also_looks_like") or []
    if others:
        print(
            f"ingest: warning: {report['root']} also looks like {', '.join(others)}; took {report['format']} "
            f"(the first in the order {', '.join(FORMAT_CHOICES[1:])}): pass --format (and --annotations) to choose",
            file=sys.stderr,
        )
    grouping = report["grouping"]
    print(f"grouped by {grouping['rule']}: {grouping['images']} images in {grouping['groups']} groups")
    if grouping["warning"]:
        print(f"ingest: warning: {grouping['warning']}", file=sys.stderr)
    leaked = report["groups_in_both_splits"]
    if leaked:
        print(
            f"ingest: warning: the data's own split puts {len(leaked)} groups in more than one split "
            f"({', '.join(leaked[:3])}{' ...' if len(leaked) > 3 else ''}): frames of one video in train and "
            "validation; --resplit-by-group splits them by group (see report.html)",
            file=sys.stderr,
        )
    for split, info in report["splits"].items():
        print(f"  {split}: {info['samples']} samples, {info['groups']} groups")
        if not info["samples"]:
            print(
                f"ingest: warning: split {split} is empty (no clean {split} samples); see report.html", file=sys.stderr
            )
    print(f"wrote {out}/manifest.parquet, quarantine.parquet, labels.json, report.json, report.html")


if __name__ == "__main__":
    sys.exit(main())
