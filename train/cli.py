"""``train``: run, status, daemon, cancel, eval, predict, plan. Parses arguments, builds the config, calls one function.

train run --config train/demo.toml --out RUN_DIR [--data SHARDS] [--set optim.lr=1e-3] [--new]
train run --out RUN_DIR                          # resume RUN_DIR with its own config.json
train status RUN_DIR [--json] [--watch [SECONDS]] | train status --queue QUEUE [--json]
train submit QUEUE CONFIG.toml [--name NAME]     # checked, then queued for the daemon
train daemon --queue QUEUE [--once]
train cancel --queue QUEUE NAME
train eval --checkpoint RUN/checkpoints/best.pt --data SHARDS/val [--out metrics.json]
train predict --checkpoint RUN/checkpoints/best.pt --data SHARDS/val --out predictions.parquet
train plan --gpu-memory 12GiB --image-size 224 --amp [--effective-batch 64] [--lr-curve lr.svg]
train audit RUN_DIR [RUN_DIR2 ...] [--oof DIR/oof.parquet] --manifest CLEAN --out AUDIT
train audit --review AUDIT --accept ID ... --reject ID ...
train audit --review AUDIT --decisions AUDIT/review.csv        # the sheet, decision column filled in
train audit --score AUDIT --planted RAW/planted_flips.csv      # data with known noise (demo, bench)
train crossval --folds 4 --config train.toml --out DIR [--set data.image_size=112]   # DIR/oof.parquet
train scores RUN_DIR [RUN_DIR2 ...] --out scores.parquet [--el2n-epoch 1]   # EL2N, forgetting, AUM per sample
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from pawpipe.common import cli
from pawpipe.common.atomic import write_json
from pawpipe.common.contracts.ingest_tables import SPLITS
from pawpipe.common.contracts.status_file import STATUS_FILE
from pawpipe.train.config import ConfigError, TrainConfig, load_train_config
from pawpipe.train.data.dataset import shards_root, split_folder
from pawpipe.train.fit.logs import setup_logging

log = logging.getLogger("pawpipe.train")


DATA_HELP = "the `shards build` folder (with dataset.json) or one of its split folders"


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (or a run's config.json)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=1e-3 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description="EfficientNet-B0 trainer on pawpipe shards.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a model into a run directory; resumes it when it holds a checkpoint")
    _config_args(run)
    run.add_argument("--data", type=Path, help=DATA_HELP)
    run.add_argument(
        "--out",
        type=Path,
        help="the run directory (default: out_dir/run_name of the config); "
        "without --config, its config.json is the config",
    )
    run.add_argument("--name", help="run directory name under out_dir (run_name), when --out is not given")
    run.add_argument("--new", action="store_true", help="start over: move an existing run directory aside first")
    run.add_argument("--pretrained", type=Path, help="local backbone weights (.safetensors, .pt, .pth)")
    run.add_argument("--freeze-bn", action="store_true", default=None, help="keep backbone BatchNorm statistics fixed")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    run.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"])
    run.add_argument(
        "--resume",
        type=Path,
        help="start from another run's checkpoint (weights and position; this config); "
        "the run directory's own checkpoint takes precedence once it has one",
    )

    status = sub.add_parser("status", help="what a run (or a queue) is doing")
    status.add_argument("run_dir", type=Path, nargs="?", help="a run directory")
    status.add_argument("--queue", type=Path, help="a daemon's queue folder: every run as a table")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=5.0,
        metavar="SECONDS",
        help="print it again every SECONDS (5) until the run ends (Ctrl-C stops watching)",
    )

    submit = sub.add_parser("submit", help="check a run config and queue it for `train daemon --queue QUEUE`")
    submit.add_argument("queue", type=Path, help="the daemon's queue folder (made if missing)")
    submit.add_argument("config", type=Path, help="a run config TOML")
    submit.add_argument("--name", help="the run's name (default: the config file's stem); a name in use gets -2, -3...")

    daemon = sub.add_parser("daemon", help="train the configs queued in a folder, one after another")
    daemon.add_argument("--queue", type=Path, required=True, help="queue folder (pending/, running/, runs/, done/)")
    daemon.add_argument("--once", action="store_true", help="exit when nothing is left to run (default: wait for more)")
    daemon.add_argument("--poll-s", type=float, default=5.0, help="seconds between looks at pending/ (default 5)")
    daemon.add_argument(
        "--settle-s", type=float, default=2.0, help="leave files changed this recently for the next look (default 2)"
    )
    daemon.add_argument(
        "--max-restarts", type=int, default=2, help="times a crashed run is resumed before it is failed (default 2)"
    )

    cancel = sub.add_parser("cancel", help="cancel a pending or running queued run")
    cancel.add_argument("--queue", type=Path, required=True)
    cancel.add_argument("name", help="the run's name (its config file name without .toml)")

    for name, helptext in (
        ("eval", "whole-split metrics of a checkpoint"),
        ("predict", "per-sample predictions to Parquet"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--data", type=Path, required=True, help=DATA_HELP + "; the root means its --split")
        p.add_argument(
            "--split", choices=SPLITS, default="val", help="the split of a shards folder given as --data (val)"
        )
        p.add_argument(
            "--out", type=Path, required=name == "predict", help="output file (.json for eval, .parquet for predict)"
        )
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=int)
        p.add_argument(
            "--weights",
            choices=["auto", "ema", "model"],
            default="auto",
            help="auto: EMA weights when the run kept them",
        )

    plan = sub.add_parser("plan", help="memory per batch size for a GPU, and the learning-rate curve")
    _config_args(plan)
    plan.add_argument("--gpu-memory", default="12GiB", help="e.g. 12GiB (the users' RTX 3060)")
    plan.add_argument("--image-size", type=int, help="default: data.image_size of the config")
    plan.add_argument(
        "--amp",
        nargs="?",
        const="bf16",
        choices=["bf16", "fp16", "off"],
        help="precision to plan for (bare --amp: bf16); default: the config's (auto -> bf16)",
    )
    plan.add_argument(
        "--effective-batch", type=int, help="batch per optimizer step to reach (default: batch_size x accumulate)"
    )
    plan.add_argument("--headroom", type=float, default=0.10, help="fraction of GPU memory left free (default 0.10)")
    plan.add_argument(
        "--stored-size",
        type=int,
        help="side of the images in the shards (default: dataset.json, else 256/224 x image size)",
    )
    plan.add_argument("--cuda-context-mib", type=float)
    plan.add_argument("--workspace-mib", type=float)
    plan.add_argument("--dali-mib", type=float)
    plan.add_argument(
        "--measure",
        action="store_true",
        help="on a CUDA device: check the estimate with torch.cuda.max_memory_allocated",
    )
    plan.add_argument(
        "--json", action="store_true", help="print the plan as JSON instead of text (as `train status --json`)"
    )
    plan.add_argument("--out", type=Path, help="also write the plan as JSON to this file")
    plan.add_argument("--lr-curve", type=Path, help="write the learning-rate curve (.svg, or .csv)")
    plan.add_argument(
        "--steps-per-epoch", type=int, help="optimizer steps per epoch (default: from dataset.json counts)"
    )
    plan.add_argument("--skip-memory", action="store_true", help="only the learning-rate curve")

    audit = sub.add_parser("audit", help="find suspect labels from training runs; review them")
    audit.add_argument("runs", type=Path, nargs="*", help="run directories (an ordinary run, threshold-sample runs)")
    audit.add_argument("--manifest", type=Path, help="the clean folder (manifest.parquet) the runs were trained from")
    audit.add_argument("--out", type=Path, help="audit folder: suspects.parquet, audit.json, audit.html")
    audit.add_argument("--oof", type=Path, help="out-of-fold probabilities (train crossval's oof.parquet)")
    audit.add_argument(
        "--view",
        type=Path,
        metavar="RUN2",
        help="second round: RUN2 (a run trained on the cleaned manifest) judges again: its last checkpoint's view "
        "of every training image, its AUM where it trained on the image; its view alone where it did not",
    )
    audit.add_argument("--shards", type=Path, help="shards for the gallery (default: the first run's data.shards)")
    audit.add_argument("--gallery", type=int, default=48, help="top suspects shown as images (default 48)")
    audit.add_argument(
        "--no-predict",
        dest="predict",
        action="store_false",
        help="skip the eval-mode pass of the last checkpoint over the training split (use the training-time "
        "probabilities)",
    )
    audit.add_argument("--device", default="auto", help="device of the eval-mode pass (default auto)")
    audit.add_argument("--review", type=Path, metavar="AUDIT", help="record decisions on an audit's suspects")
    audit.add_argument("--accept", nargs="+", default=[], metavar="ID", help="sample ids whose label is wrong")
    audit.add_argument("--reject", nargs="+", default=[], metavar="ID", help="sample ids whose label is right")
    audit.add_argument(
        "--accept-group",
        nargs="+",
        default=[],
        metavar="GROUP",
        help="videos (group ids) whose label is wrong: every frame",
    )
    audit.add_argument(
        "--reject-group",
        nargs="+",
        default=[],
        metavar="GROUP",
        help="videos (group ids) whose label is right: every frame",
    )
    audit.add_argument(
        "--decisions",
        type=Path,
        metavar="CSV",
        help="with --review: the audit's review.csv with its decision column filled in (accept, reject or blank)",
    )
    audit.add_argument("--score", type=Path, metavar="AUDIT", help="precision/recall of an audit against known flips")
    audit.add_argument("--planted", type=Path, help="with --score: planted_flips.csv (ingest demo-data --label-noise)")

    crossval = sub.add_parser(
        "crossval", help="K runs on folds grouped by group_id: out-of-fold probabilities (oof.parquet)"
    )
    _config_args(crossval)
    crossval.add_argument("--folds", type=int, default=4, help="K (default 4)")
    crossval.add_argument("--data", type=Path, help=DATA_HELP)
    crossval.add_argument("--out", type=Path, required=True, help="folder for the folds' runs and oof.parquet")

    scores = sub.add_parser(
        "scores", help="per-sample importance (EL2N, forgetting, AUM) from runs' dynamics, for shards build --select"
    )
    scores.add_argument("runs", type=Path, nargs="+", help="run directories (scores are averaged over them)")
    scores.add_argument("--out", type=Path, required=True, help="scores.parquet to write")
    scores.add_argument(
        "--el2n-epoch", type=int, help="epoch whose probabilities give EL2N (default: 10 %% into training)"
    )
    return cli.finish_parser(parser, examples=EXAMPLES)


def _run(args: argparse.Namespace) -> int:
    from pawpipe.train.fit.resume import finished_run
    from pawpipe.train.fit.run import named_run_dir, train_from_config
    from pawpipe.train.rundir.signals import RunSignals

    config = args.config
    if config is None and args.out is not None and (args.out / "config.json").is_file():
        config = args.out / "config.json"  # resuming a run directory needs nothing but its path
        log.info("config: %s", config)
    cfg = load_train_config(
        config,
        overrides=args.overrides,
        values={
            "data.shards": str(shards_root(args.data)) if args.data else None,
            "run_name": args.name,
            "model.pretrained": str(args.pretrained) if args.pretrained else None,
            "model.freeze_bn": args.freeze_bn,
            "schedule.epochs": args.epochs,
            "data.batch_size": args.batch_size,
            "optim.lr": args.lr,
            "seed": args.seed,
            "compute.device": args.device,
            "compute.amp": args.amp,
        },
    )
    if args.out is not None:
        from pawpipe.train.rundir.target import check_run_target

        check_run_target(args.out)
    run_dir = args.out if args.out is not None else named_run_dir(cfg)
    if (
        run_dir is not None
        and not args.new
        and args.resume is None
        and (done := finished_run(run_dir, cfg.model_dump(mode="json")))
    ):
        print(done)
        return 0
    signals = RunSignals().install()
    try:
        result = train_from_config(cfg, run_dir=args.out, resume_from=args.resume, new=args.new, signals=signals)
    finally:
        signals.restore()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the summary is rank 0's to print
        return 0
    p, m = result.progress, result.last_metrics
    if not result.finished:
        print(
            f"run {result.run_dir}: stopped by {result.stopped_by} at epoch {p.epoch + 1}, batch {p.batch_in_epoch}, "
            f"step {p.step}; checkpoint {result.last_checkpoint}; `train run --out {result.run_dir}` resumes it"
        )
        return 0
    print(
        f"run {result.run_dir}: stopped by {result.stopped_by} after {p.step} steps; last validation accuracy "
        f"{m.get('accuracy', float('nan')):.4f}, macro-F1 {m.get('macro_f1', float('nan')):.4f}; best "
        f"{cfg.eval.best_metric} {p.best_value:.4f} -> {result.best_checkpoint}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    if (args.run_dir is None) == (args.queue is None):
        raise ConfigError("expected a run directory or --queue QUEUE (one of them)")
    if args.queue is not None:
        from pawpipe.train.daemon.daemon import format_queue, queue_rows

        rows = queue_rows(args.queue)
        print(json.dumps(rows, indent=2) if args.json else format_queue(rows))
        return 0
    from pawpipe.train.rundir.status import format_status, read_status

    if not (args.run_dir / STATUS_FILE).exists() and (args.run_dir / "pending").is_dir():
        raise ConfigError(
            f"{args.run_dir}: a queue folder, not a run directory; use train status --queue {args.run_dir}"
        )
    doc = read_status(args.run_dir)
    print(json.dumps(doc, indent=2) if args.json else format_status(doc), flush=True)
    while args.watch is not None and doc.get("state") in ("starting", "training", "evaluating"):
        time.sleep(args.watch)
        doc = read_status(args.run_dir)
        print("\n" + (json.dumps(doc, indent=2) if args.json else format_status(doc)), flush=True)
    return 0


def _submit(args: argparse.Namespace) -> int:
    """Queue a copy of a checked config (its shards there too): the daemon takes them in submission order."""
    from pawpipe.train.daemon.daemon import Queue
    from pawpipe.train.data.dataset import check_shards_folder

    if args.config.suffix != ".toml":
        raise ConfigError(
            f"{args.config}: expected a run config .toml (the daemon runs `train run --config NAME.toml`)"
        )
    cfg = load_train_config(
        args.config, overrides=[]
    )  # a config that does not validate is refused now, not hours later
    check_shards_folder(cfg.data.shards, what=f"{args.config}: data.shards")  # the daemon's run gets no --data
    q = Queue.open(args.queue, create=True)
    name = q.submit(args.config.read_text(encoding="utf-8"), args.name or args.config.stem, source=args.config)
    ahead = len(list(q.pending.glob("*.toml"))) - 1 + len(list(q.running.glob("*.toml")))
    print(
        f"queued {name}: {q.pending / (name + '.toml')} ({ahead} run(s) ahead of it); `train status --queue {q.root}` "
        "shows the queue"
    )
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from pawpipe.train.daemon.daemon import Daemon

    return Daemon(
        args.queue, once=args.once, poll_s=args.poll_s, settle_s=args.settle_s, max_restarts=args.max_restarts
    ).serve()


def _cancel(args: argparse.Namespace) -> int:
    from pawpipe.train.daemon.daemon import cancel

    print(cancel(args.queue, args.name))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pawpipe.train.fit.evaluate import eval_checkpoint
    from pawpipe.train.fit.metrics import format_metrics

    metrics = eval_checkpoint(
        args.checkpoint,
        split_folder(args.data, args.split),
        device=args.device,
        batch_size=args.batch_size,
        weights=args.weights,
    )
    print(format_metrics(metrics))
    if args.out:
        write_json(args.out, metrics)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from pawpipe.train.fit.evaluate import predict_checkpoint

    table = predict_checkpoint(
        args.checkpoint,
        split_folder(args.data, args.split),
        out=args.out,
        device=args.device,
        batch_size=args.batch_size,
        weights=args.weights,
    )
    print(f"{args.out}: {table.num_rows} predictions, one row per sample, sorted by sample_id")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from pawpipe.train.plan import PlanOptions, plan

    cfg: TrainConfig = load_train_config(args.config, overrides=args.overrides)
    allowances = {
        "cuda_context_mib": args.cuda_context_mib,
        "workspace_mib": args.workspace_mib,
        "dali_fixed_mib": args.dali_mib,
    }
    options = PlanOptions(
        gpu_memory=args.gpu_memory,
        image_size=args.image_size,
        effective_batch=args.effective_batch,
        amp=args.amp,
        stored_size=args.stored_size,
        headroom=args.headroom,
        allowances={k: v for k, v in allowances.items() if v is not None},
        measure=args.measure,
        skip_memory=args.skip_memory,
        steps_per_epoch=args.steps_per_epoch,
        lr_curve=args.lr_curve,
    )
    output = plan(cfg, options, say=(lambda *a: None) if args.json else print)  # --json: the JSON alone on stdout
    if args.out:
        write_json(args.out, output)
    if args.json:
        print(json.dumps(output, indent=2))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from pawpipe.train.audit.audit import AuditJob, read_review_sheet, review, run_audit

    if args.score is not None:
        from pawpipe.train.audit.score import format_scores, score_files

        if args.planted is None:
            raise ConfigError("--score AUDIT: expected --planted FILE (planted_flips.csv)")
        scores, planted = score_files(args.score, args.planted)
        print(format_scores(scores, planted=planted))
        return 0
    if args.review is not None:
        if args.runs or not (args.accept or args.reject or args.accept_group or args.reject_group or args.decisions):
            raise ConfigError(
                "--review AUDIT: expected --accept ID ..., --reject ID ..., --accept-group GROUP ..., "
                "--reject-group GROUP ... and/or --decisions CSV, and no run directories"
            )
        sheet = read_review_sheet(args.decisions) if args.decisions else ([], [], [], [])
        decisions = review(
            args.review,
            accept=[*sheet[0], *args.accept],
            reject=[*sheet[1], *args.reject],
            accept_groups=[*sheet[2], *args.accept_group],
            reject_groups=[*sheet[3], *args.reject_group],
        )
        print(
            f"{args.review / 'decisions.parquet'}: {decisions.height} decisions "
            f"({int((decisions['decision'] == 'accept').sum())} accepted)"
        )
        return 0
    if not args.runs or args.manifest is None or args.out is None:
        raise ConfigError("expected RUN_DIR [RUN_DIR ...] --manifest CLEAN --out AUDIT (or --review AUDIT)")
    job = AuditJob(
        runs=args.runs,
        manifest=args.manifest,
        out=args.out,
        oof=args.oof,
        shards=args.shards,
        gallery=args.gallery,
        predict=args.predict,
        device=args.device,
        view=args.view,
    )
    suspects = run_audit(job)
    counts = dict(suspects.group_by("verdict").len().iter_rows())
    print(
        f"{args.out}: {suspects.height} samples: {counts.get('label_issue', 0)} label issues, "
        f"{counts.get('ambiguous', 0)} ambiguous, {counts.get('ok', 0)} ok; report {args.out / 'audit.html'}"
    )
    summary = json.loads((args.out / "audit.json").read_text(encoding="utf-8"))
    groups = summary["groups"]
    if summary["judge"]["weak"]:
        from pawpipe.train.audit.judge import describe

        print(
            f"train: warning: the model is too weak to judge labels: {describe(summary['judge'])}; "
            "`ingest clean --suspects` will not drop or relabel on these verdicts unless the rule set forces it",
            file=sys.stderr,
        )
    if groups["groups"]:
        v = groups["verdicts"]
        print(
            f"{args.out}: {groups['groups']} videos (groups of 2+ frames with one label): {v['label_issue']} label "
            f"issues, {v['ambiguous']} ambiguous, {v['ok']} ok (groups.parquet; judged by {groups['view']})"
        )
    return 0


def _crossval(args: argparse.Namespace) -> int:
    from pawpipe.train.audit.crossval import crossval

    cfg = load_train_config(
        args.config,
        overrides=args.overrides,
        values={"data.shards": str(shards_root(args.data)) if args.data else None},
    )
    path = crossval(cfg, folds=args.folds, out=args.out)
    print(f"{path}: out-of-fold probabilities of {args.folds} folds; `train audit RUN --oof {path} ...` uses them")
    return 0


def _scores(args: argparse.Namespace) -> int:
    from pawpipe.train.audit.importance import write_scores

    scores = write_scores(args.runs, args.out, el2n_epoch=args.el2n_epoch)
    epoch = scores.get_column("el2n_epoch").min() if scores.height else None
    print(
        f"{args.out}: {scores.height} samples scored (EL2N at epoch {epoch}, forgetting, AUM); "
        f"`shards build CLEAN --out SHARDS --select {args.out} --keep 0.5` trains on the informative half"
    )
    return 0


EXAMPLES = """\
  train run --config train/demo.toml --data demo/shards --out runs/demo   # demo/shards: made by `make demo`
  train run --out runs/demo                       # resume it (Ctrl-C stops it at a checkpoint)
  train status runs/demo
  train eval --checkpoint runs/demo/checkpoints/best.pt --data demo/shards/val
  train plan --gpu-memory 12GiB --image-size 224 --amp"""


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = _parser().parse_args(argv)
    handler = {
        "run": _run,
        "status": _status,
        "daemon": _daemon,
        "cancel": _cancel,
        "eval": _eval,
        "predict": _predict,
        "plan": _plan,
        "audit": _audit,
        "crossval": _crossval,
        "scores": _scores,
        "submit": _submit,
    }[args.command]
    # FileNotFoundError is a usage error here (a --config or --checkpoint that is not there);
    # RuntimeError (a non-finite loss, a locked run directory, a missing loader module) a failed job.
    return cli.run(
        f"train {args.command}",
        lambda: handler(args),
        resumable=args.command in ("run", "crossval"),
        usage_errors=(ConfigError, FileNotFoundError),
    )


if __name__ == "__main__":
    sys.exit(main())
