"""``train``: run, status, daemon, cancel, eval, predict, plan. Parses arguments, builds the config, calls one function.

    train run --config demo/train.toml --out RUN_DIR [--data SHARDS] [--set optim.lr=1e-3] [--new]
    train run --out RUN_DIR                          # resume RUN_DIR with its own config.json
    train status RUN_DIR [--json] | train status --queue QUEUE [--json]
    train daemon --queue QUEUE [--once]
    train cancel --queue QUEUE NAME
    train eval --checkpoint RUN/checkpoints/best.pt --data SHARDS/val [--out metrics.json]
    train predict --checkpoint RUN/checkpoints/best.pt --data SHARDS/val --out predictions.parquet
    train plan --gpu-memory 12GiB --image-size 224 --amp [--effective-batch 64] [--lr-curve lr.svg]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ingest.atomic import write_json, write_text
from train.config import ConfigError, TrainConfig, load_config
from train.logs import setup_logging

log = logging.getLogger("train")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (or a run's config.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=1e-3 (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description="EfficientNet-B0 trainer on pawpipe shards.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a model into a run directory; resumes it when it holds a checkpoint")
    _config_args(run)
    run.add_argument("--data", type=Path, help="shards folder holding dataset.json (data.shards)")
    run.add_argument("--out", type=Path, help="the run directory (default: out_dir/run_name of the config); "
                     "without --config, its config.json is the config")
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
    run.add_argument("--resume", type=Path, help="start from another run's checkpoint (weights and position; this config); "
                     "the run directory's own checkpoint takes precedence once it has one")

    status = sub.add_parser("status", help="what a run (or a queue) is doing")
    status.add_argument("run_dir", type=Path, nargs="?", help="a run directory")
    status.add_argument("--queue", type=Path, help="a daemon's queue folder: every run as a table")
    status.add_argument("--json", action="store_true", help="print JSON")

    daemon = sub.add_parser("daemon", help="train the configs queued in a folder, one after another")
    daemon.add_argument("--queue", type=Path, required=True, help="queue folder (pending/, running/, runs/, done/)")
    daemon.add_argument("--once", action="store_true", help="exit when nothing is left to run (default: wait for more)")
    daemon.add_argument("--poll-s", type=float, default=5.0, help="seconds between looks at pending/ (default 5)")
    daemon.add_argument("--settle-s", type=float, default=2.0, help="leave files changed this recently for the next look (default 2)")
    daemon.add_argument("--max-restarts", type=int, default=2, help="times a crashed run is resumed before it is failed (default 2)")

    cancel = sub.add_parser("cancel", help="cancel a pending or running queued run")
    cancel.add_argument("--queue", type=Path, required=True)
    cancel.add_argument("name", help="the run's name (its config file name without .toml)")

    for name, helptext in (("eval", "whole-split metrics of a checkpoint"), ("predict", "per-sample predictions to Parquet")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--data", type=Path, required=True, help="a split folder of the shards, e.g. SHARDS/val")
        p.add_argument("--out", type=Path, required=name == "predict", help="output file (.json for eval, .parquet for predict)")
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=int)
        p.add_argument("--weights", choices=["auto", "ema", "model"], default="auto", help="auto: EMA weights when the run kept them")

    plan = sub.add_parser("plan", help="memory per batch size for a GPU, and the learning-rate curve")
    _config_args(plan)
    plan.add_argument("--gpu-memory", default="12GiB", help="e.g. 12GiB (the users' RTX 3060)")
    plan.add_argument("--image-size", type=int, help="default: data.image_size of the config")
    plan.add_argument("--amp", nargs="?", const="bf16", choices=["bf16", "fp16", "off"],
                      help="precision to plan for (bare --amp: bf16); default: the config's (auto -> bf16)")
    plan.add_argument("--effective-batch", type=int, help="batch per optimizer step to reach (default: batch_size x accumulate)")
    plan.add_argument("--headroom", type=float, default=0.10, help="fraction of GPU memory left free (default 0.10)")
    plan.add_argument("--stored-size", type=int, help="side of the images in the shards (default: dataset.json, else 256/224 x image size)")
    plan.add_argument("--cuda-context-mib", type=float)
    plan.add_argument("--workspace-mib", type=float)
    plan.add_argument("--dali-mib", type=float)
    plan.add_argument("--measure", action="store_true", help="on a CUDA device: check the estimate with torch.cuda.max_memory_allocated")
    plan.add_argument("--json", type=Path, help="write the plan as JSON")
    plan.add_argument("--lr-curve", type=Path, help="write the learning-rate curve (.svg, or .csv)")
    plan.add_argument("--steps-per-epoch", type=int, help="optimizer steps per epoch (default: from dataset.json counts)")
    plan.add_argument("--skip-memory", action="store_true", help="only the learning-rate curve")
    return parser


def _run(args: argparse.Namespace) -> int:
    from train.run import train_from_config
    from train.signals import RunSignals

    config = args.config
    if config is None and args.out is not None and (args.out / "config.json").is_file():
        config = args.out / "config.json"  # resuming a run directory needs nothing but its path
        log.info("config: %s", config)
    cfg = load_config(
        config,
        overrides=args.overrides,
        values={
            "data.shards": str(args.data) if args.data else None,
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
    signals = RunSignals().install()
    try:
        result = train_from_config(cfg, run_dir=args.out, resume_from=args.resume, new=args.new, signals=signals)
    finally:
        signals.restore()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the summary is rank 0's to print
        return 0
    p, m = result.progress, result.last_metrics
    if not result.finished:
        print(f"run {result.run_dir}: stopped by {result.stopped_by} at epoch {p.epoch + 1}, batch {p.batch_in_epoch}, "
              f"step {p.step}; checkpoint {result.last_checkpoint}; `train run --out {result.run_dir}` resumes it")  # fmt: skip
        return 0
    print(
        f"run {result.run_dir}: stopped by {result.stopped_by} after {p.step} steps; "
        f"last validation accuracy {m.get('accuracy', float('nan')):.4f}, macro-F1 {m.get('macro_f1', float('nan')):.4f}; "
        f"best {cfg.eval.best_metric} {p.best_value:.4f} -> {result.best_checkpoint}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    if (args.run_dir is None) == (args.queue is None):
        raise ConfigError("expected a run directory or --queue QUEUE (one of them)")
    if args.queue is not None:
        from train.daemon import format_queue, queue_rows

        rows = queue_rows(args.queue)
        print(json.dumps(rows, indent=2) if args.json else format_queue(rows))
        return 0
    from train.status import format_status, read_status

    if not (args.run_dir / "status.json").exists() and (args.run_dir / "pending").is_dir():
        raise ConfigError(f"{args.run_dir}: a queue folder, not a run directory; use train status --queue {args.run_dir}")
    doc = read_status(args.run_dir)
    print(json.dumps(doc, indent=2) if args.json else format_status(doc))
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from train.daemon import Daemon

    return Daemon(args.queue, once=args.once, poll_s=args.poll_s, settle_s=args.settle_s, max_restarts=args.max_restarts).serve()


def _cancel(args: argparse.Namespace) -> int:
    from train.daemon import cancel

    print(cancel(args.queue, args.name))
    return 0


def format_metrics(metrics: dict) -> str:
    lines = [
        f"samples {metrics['count']}  loss {metrics['loss']:.4f}  nll {metrics['nll']:.4f}  "
        f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  macro-recall {metrics['macro_recall']:.4f}",
        f"{'class':<24} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for name, c in metrics["per_class"].items():
        lines.append(f"{name:<24} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8d}")
    lines.append("confusion matrix (rows: label, columns: prediction, vocabulary order):")
    lines.extend("  " + " ".join(f"{v:>6d}" for v in row) for row in metrics["confusion"])
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> int:
    from train.evaluate import eval_checkpoint

    metrics = eval_checkpoint(args.checkpoint, args.data, device=args.device, batch_size=args.batch_size, weights=args.weights)
    print(format_metrics(metrics))
    if args.out:
        write_json(args.out, metrics)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from train.evaluate import predict_checkpoint

    table = predict_checkpoint(args.checkpoint, args.data, out=args.out, device=args.device, batch_size=args.batch_size, weights=args.weights)
    print(f"{args.out}: {table.num_rows} predictions, one row per sample, sorted by sample_id")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from train.plan import build_planner, format_plan, measure_on_cuda, parse_size, plan_as_dict, recommend

    cfg: TrainConfig = load_config(args.config, overrides=args.overrides)
    info = None
    if cfg.data.shards is not None:
        from train.data import read_dataset_info

        try:
            info = read_dataset_info(cfg.data.shards)
        except (FileNotFoundError, ValueError) as exc:
            log.warning("no dataset info (%s); using defaults", exc)
    num_classes = info.num_classes if info else 10
    image_size = args.image_size or cfg.data.image_size
    effective = args.effective_batch or cfg.data.batch_size * cfg.optim.accumulate
    output: dict = {}
    if not args.skip_memory:
        amp = args.amp or {"auto": "bf16"}.get(cfg.compute.amp, cfg.compute.amp)
        allowances = {k: v for k, v in (("cuda_context_mib", args.cuda_context_mib), ("workspace_mib", args.workspace_mib),
                                        ("dali_fixed_mib", args.dali_mib)) if v is not None}
        planner = build_planner(
            num_classes=num_classes, image_size=image_size, amp=amp, optimizer=cfg.optim.name, ema=cfg.optim.ema_decay > 0,
            stored_size=args.stored_size or (info.image_size if info else None), **allowances,
        )
        gpu = parse_size(args.gpu_memory)
        rec = recommend(planner, gpu_memory=gpu, headroom=args.headroom, effective_batch=effective)
        print(format_plan(planner, rec, gpu_memory=gpu))
        output["memory"] = plan_as_dict(planner, rec)
        if args.measure:
            checked = measure_on_cuda(planner, batch_size=rec.batch_size or 8, num_classes=num_classes)
            print(
                f"measured on {checked['device']}: max_memory_allocated {checked['measured_max_allocated'] / 2**30:.2f} GiB vs "
                f"estimated {checked['estimated_allocator_visible'] / 2**30:.2f} GiB (x{checked['ratio']:.2f}); outside the "
                f"allocator {checked['measured_outside_allocator'] / 2**20:.0f} MiB vs assumed {checked['assumed_cuda_context'] / 2**20:.0f} MiB"
            )
            output["measured"] = checked
    steps = args.steps_per_epoch
    if steps is None and info is not None and info.split_counts(cfg.data.train_split):
        from train.schedule import optimizer_steps_per_epoch

        samples = sum(info.split_counts(cfg.data.train_split))
        steps = optimizer_steps_per_epoch(samples // cfg.data.batch_size, cfg.optim.accumulate)
    if steps:
        output["lr"] = _lr_curve(cfg, steps, args.lr_curve)
    elif args.lr_curve:
        raise ConfigError("--lr-curve: expected --steps-per-epoch, or data.shards with dataset.json counts")
    if args.json:
        write_json(args.json, output)
    return 0


def _lr_curve(cfg: TrainConfig, steps_per_epoch: int, out: Path | None) -> dict:
    from train.runrecord import svg_chart
    from train.schedule import WarmupCosine

    total = cfg.schedule.epochs * steps_per_epoch
    schedule = WarmupCosine(cfg.optim.lr, cfg.schedule.min_lr, min(cfg.schedule.warmup_for(steps_per_epoch), total), total)
    w = schedule.warmup_steps
    print(f"\nlearning rate: {steps_per_epoch} steps/epoch x {cfg.schedule.epochs} epochs = {total} steps, warm-up {w}")
    marks = sorted({0, max(w - 1, 0), w, (w + total) // 2, total - 1} | {e * steps_per_epoch for e in range(1, cfg.schedule.epochs)})
    for s in marks[:40]:
        print(f"  step {s:>9d}  epoch {s / steps_per_epoch:>7.2f}  lr {schedule.lr_at(s):.3e}")
    curve = schedule.curve()
    if out is not None:
        if out.suffix == ".csv":
            write_text(out, "step,lr\n" + "".join(f"{s},{lr!r}\n" for s, lr in curve))
        else:
            write_text(out, svg_chart([("learning rate", [("lr", [(float(s), lr) for s, lr in curve])])], w=640, h=320))
        print(f"wrote {out}")
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total, "warmup_steps": w, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = _parser().parse_args(argv)
    handler = {"run": _run, "status": _status, "daemon": _daemon, "cancel": _cancel, "eval": _eval, "predict": _predict,
               "plan": _plan}[args.command]  # fmt: skip
    try:
        return handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # includes NonFiniteLossError, a locked run directory and a missing loader module
        print(f"train {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
