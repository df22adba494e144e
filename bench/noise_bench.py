"""Benchmark of the label audit loop on data with known noise: does cleaning the flagged labels pay?

The embedded demo dataset with planted label flips (``ingest demo-data --label-noise``: a share
of the training frames shows another class than its label says, half symmetric, half the
look-alike class; validation stays clean), then, on the same clean validation set:

* **noisy**: ``train run`` on the labels as given;
* **audit**: ``train audit`` on that run alone (no extra runs: the cut-offs are learned from
  its dynamics), scored against ``planted_flips.csv``: precision, recall and F1 of the samples
  it calls ``label_issue``, and of each signal on its own;
* **cleaned**: ``ingest clean --suspects AUDIT`` (rule ``label.suspect``, drop) and a new run;
* **cleaned2** (``--rounds 2``, the default but for ``--quick``): the loop once more: ``train
  audit`` of the noisy run with the cleaned run as the judge (``--view``: its last checkpoint over
  every training image; its own AUM where it trained on the image, its view alone where it never
  did), ``ingest clean --suspects`` and a new run;
* **naive**: what a user would do by hand: drop the lowest-AUM samples, as many as were planted
  (the oracle count, which a user does not have), and a new run;
* **oracle**: a run on the true labels.

``noise_gap_recovered = (acc_cleaned - acc_noisy) / (acc_oracle - acc_noisy)``: the share of
the accuracy lost to noise that the loop wins back. Accuracies are whole-validation-set accuracy
after the last epoch.

    python bench/noise_bench.py [--quick] [--noise 0.2] [--epochs 30] [--image-size 32] [--rounds 2]
    python bench/noise_bench.py --videos 72 --val-videos 12 --pair-colours

``--quick`` (30 videos x 12 frames, 6 of them validation, 32 px, 12 epochs, one round) trains
four small models from scratch on the CPU: about 4-5 minutes on a 2-core machine, more than the
one minute of the other benches; the loop has no cheaper honest proof than training. The default
run (36 videos x 12 frames, 12 of them validation, 30 epochs, two rounds) takes about 12 minutes.
At both sizes a from-scratch model's last-epoch validation accuracy swings by more than the noise
costs, so the gap is coarse. ``--videos 72 --val-videos 12`` trains models that learn the
classes (20-30 minutes); there the demo's classes are so easy that the flips barely cost
accuracy, and ``--pair-colours`` (both classes of a look-alike pair in one colour, told apart by
the outline only) makes the flips cost 40 points that a clean run does not lose: the setting
where the gap is measured best (docs/audit.md).

Whole wrong videos (``--noise-unit video``: every frame of a drawn video carries another class):
the audit's verdict per video (``group_verdict``, ``train.audit.groups``) is scored against the
planted videos (``RATIO noise_video_f1``; ``--crossval K`` adds the out-of-fold view of ``train
crossval`` and ``RATIO noise_video_f1_crossval``), ``RATIO noise_video_gap_recovered`` is the gap
the cleaned run wins back, and ``--relabel`` trains once more on the same audit acted on by
relabelling (``RATIO noise_video_gap_recovered_relabel``), to set drop against relabel:

    python bench/noise_bench.py --noise-unit video --videos 168 --val-videos 24 --frames 6 --epochs 20 \
        --rounds 1 --crossval 3 --relabel --no-naive --seed S

Three seeds by default (``--seeds``, from ``--seed`` on; ``--quick`` one): each seed is a whole run
(its own data, flips and trainings) and saves its command, commit, machine and figures through
``bench/result_file.py`` to ``bench/results/noise-<date>-<commit>[-video][-pair-colours][-quick]-seed<S>.json``;
then a summary file (``...-summary-seed0-1-2.json``) holds every seed's RATIO figures, and the table
prints mean, min and max. The gap is given on the last epoch's accuracy and on the mean of the
last ``--last-k`` (3) epochs' (``noise_gap_recovered_last_k``): steadier, since one epoch's
accuracy swings by more than the effect.

The last lines are ``RATIO <name> <value>`` (higher is better; with several seeds, the means):
``noise_video_f1`` (``--noise-unit video``), ``noise_precision``, ``noise_recall``, ``noise_f1``,
``noise_gap_recovered`` and
``noise_gap_recovered_last_k`` of the first round, and with two rounds ``noise_f1_round2`` and
``noise_gap_recovered_round2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.common.contracts.labels_file import build_labels  # noqa: E402
from pawpipe.ingest.clean import clean  # noqa: E402
from pawpipe.ingest.config import CleanConfig  # noqa: E402
from pawpipe.ingest.demo import NOISE_UNITS  # noqa: E402
from pawpipe.ingest.demo.data import generate  # noqa: E402
from pawpipe.shards.build import build  # noqa: E402
from pawpipe.shards.config import ShardConfig  # noqa: E402
from pawpipe.train.audit.audit import AuditJob, run_audit  # noqa: E402
from pawpipe.train.audit.crossval import crossval  # noqa: E402
from pawpipe.train.audit.score import format_scores, score_audit, score_groups  # noqa: E402
from pawpipe.train.config import load_train_config as load_config  # noqa: E402
from pawpipe.train.fit.run import train_from_config  # noqa: E402


def make_shards(clean_dir: Path, out: Path, *, size: int) -> Path:
    build(ShardConfig(manifest_dir=clean_dir, out=out, size=size, workers=2, quiet=True))
    return out


def train_config(shards: Path, args: argparse.Namespace, **extra):
    return load_config(
        values={
            **extra,
            "seed": args.seed,
            "data.shards": str(shards),
            "data.image_size": args.image_size,
            "data.batch_size": 16,
            "data.eval_batch_size": 32,
            "data.workers": 2,
            "compute.device": args.device,
            "compute.cpu_threads": 1,
            "optim.lr": 3e-3,
            "optim.weight_decay": 0.05,
            "schedule.epochs": args.epochs,
            "schedule.warmup_epochs": 1.0,
            "schedule.min_lr": 1e-5,
            "loss.label_smoothing": 0.1,
            "eval.patience": 0,
            "record.log_every_steps": 50,
            "record.progress": False,
            "checkpoint.every_minutes": 0,
        }
    )


def train(shards: Path, run_dir: Path, args: argparse.Namespace, **extra) -> dict:
    if json.loads((shards / "dataset.json").read_text(encoding="utf-8"))["counts"]["train"]["written"] == 0:
        nan = float("nan")  # the cleaning left no training sample: nothing to train, the arm's figures are NaN
        print(f"{run_dir.name}: no training samples left in {shards}; not trained")
        return {
            "accuracy": nan,
            "last_k": nan,
            "epochs": [],
            "macro_f1": nan,
            "best_accuracy": nan,
            "seconds": 0.0,
            "no_training_samples": True,
        }
    cfg = train_config(shards, args, **extra)
    start = time.perf_counter()
    result = train_from_config(cfg, run_dir=run_dir)
    epochs = [
        e["accuracy"]
        for e in map(json.loads, (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines())
        if e.get("event") == "eval" and e.get("end_of_epoch")
    ]
    return {
        "accuracy": result.last_metrics["accuracy"],
        "last_k": float(sum(epochs[-args.last_k :]) / len(epochs[-args.last_k :])),
        "epochs": epochs,
        "macro_f1": result.last_metrics["macro_f1"],
        "best_accuracy": result.progress.best_value,
        "seconds": time.perf_counter() - start,
    }


def derived_clean(src: Path, dst: Path, manifest: pl.DataFrame) -> Path:
    """A clean folder like ``src`` whose manifest is ``manifest`` (labels.json recomputed); kept as
    it is when a ``--keep`` rerun finds it written."""
    if (dst / "labels.json").is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("clean_config.json", "quarantine.parquet"):
        shutil.copy(src / name, dst / name)
    labels = json.loads((src / "labels.json").read_text(encoding="utf-8"))
    vocabulary = labels["vocabulary"]
    manifest = manifest.with_columns(
        label_id=pl.col("label").replace_strict({n: i for i, n in enumerate(vocabulary)}, return_dtype=pl.Int64)
    )
    manifest.write_parquet(dst / "manifest.parquet")
    doc = build_labels(manifest, tuple(vocabulary), label_field=labels["label_field"])
    (dst / "labels.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return dst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small dataset, few epochs (a few minutes on 2 cores)")
    parser.add_argument("--noise", type=float, default=0.2, help="share of training frames with a flipped label")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--val-videos", type=int, help="videos in the (clean) validation split")
    parser.add_argument("--seed", type=int, default=0, help="the first seed of data (frames and flips) and training")
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds to run, from --seed on (3; --quick 1): every seed reported, then mean and spread",
    )
    parser.add_argument(
        "--last-k", type=int, default=3, help="the gap also from the mean accuracy of the last K epochs (3)"
    )
    parser.add_argument(
        "--noise-unit",
        choices=NOISE_UNITS,
        default="frame",
        help="flip single frames (default) or whole videos (every frame of a drawn video)",
    )
    parser.add_argument(
        "--pair-colours",
        action="store_true",
        help="both classes of a look-alike pair in one colour: only the outline tells them apart (harder)",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threshold-runs",
        action="store_true",
        help="also audit with two threshold-sample runs (AUM cut-off from them; two more trainings)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        choices=(1, 2),
        help="rounds of the loop: 2 audits the noisy run again with the cleaned run's view and trains once more "
        "(default 2; --quick 1)",
    )
    parser.add_argument(
        "--crossval",
        type=int,
        metavar="K",
        default=0,
        help="also audit with the out-of-fold view of `train crossval --folds K` (folds by video; K more trainings)",
    )
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="also clean by relabelling (label.suspect action clip) instead of dropping, and train on that (one "
        "more training)",
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="leave out the naive arm (drop the lowest AUMs at the oracle count)"
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    args.videos = args.videos or (30 if args.quick else 36)
    args.frames = args.frames or 12
    args.val_videos = args.val_videos or (6 if args.quick else 12)
    args.epochs = args.epochs or (12 if args.quick else 30)
    args.image_size = args.image_size or 32
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.seeds = args.seeds or (1 if args.quick else 3)
    torch.set_num_threads(1)
    setting = [
        *([args.noise_unit] if args.noise_unit != "frame" else []),
        *(["pair_colours"] if args.pair_colours else []),
    ]
    seeds = list(range(args.seed, args.seed + args.seeds))
    summary = (
        Recorder("noise", seed=seeds, args=vars(args), quick=args.quick, setting=[*setting, "summary"])
        if len(seeds) > 1
        else None
    )
    per_seed = {}
    for seed in seeds:
        one = argparse.Namespace(**{**vars(args), "seed": seed})
        rec = Recorder("noise", seed=seed, args=vars(one), quick=args.quick, setting=setting)
        work = args.keep / f"seed{seed}" if args.keep else Path(tempfile.mkdtemp(prefix="noise_bench_"))
        try:
            run(work, one, rec)
        finally:
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        per_seed[seed] = {
            "file": str(rec.written.relative_to(Path(__file__).resolve().parents[1])),
            "ratios": dict(rec.ratios),
        }
    if summary is not None:
        print(f"\n{'ratio':<36} {'mean':>8} {'min':>8} {'max':>8}   per seed {seeds}")
        for name in per_seed[seeds[0]]["ratios"]:
            values = [per_seed[s]["ratios"][name] for s in seeds if name in per_seed[s]["ratios"]]
            print(
                f"{name:<36} {sum(values) / len(values):>8.4f} {min(values):>8.4f} {max(values):>8.4f}   "
                + " ".join(f"{v:.4f}" for v in values)
            )
            summary.ratio(name, sum(values) / len(values))
        summary.finish(per_seed=per_seed)
    return 0


def run(work: Path, args: argparse.Namespace, rec: Recorder) -> int:
    size = int(round(args.image_size * 256 / 224))
    if not (work / "raw" / "planted_flips.csv").is_file():  # --keep: a rerun continues (runs resume, shards too)
        generate(
            work / "raw",
            videos=args.videos,
            frames=args.frames,
            seed=args.seed,
            label_noise=args.noise,
            val_videos=args.val_videos,
            noise_unit=args.noise_unit,
            pair_colours=args.pair_colours,
        )
    if not (work / "clean" / "manifest.parquet").is_file():
        clean(CleanConfig(root=work / "raw", out=work / "clean", workers=2, quiet=True))
    manifest = pl.read_parquet(work / "clean" / "manifest.parquet")
    flips = pl.read_csv(work / "raw" / "planted_flips.csv").join(
        manifest.select("image_path", "sample_id"), on="image_path"
    )
    truth = set(flips.get_column("sample_id").to_list())
    train_rows = manifest.filter(pl.col("split") == "train").height
    print(
        f"data: {args.videos} videos x {args.frames} frames; {train_rows} training samples, {len(truth)} flipped "
        f"({len(truth) / train_rows:.1%}), validation {manifest.filter(pl.col('split') == 'val').height} (clean); "
        f"{args.image_size} px, {args.epochs} epochs, flipped per {args.noise_unit}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )

    results, extra = {}, {}
    results["noisy"] = train(make_shards(work / "clean", work / "shards_noisy", size=size), work / "run_noisy", args)
    start = time.perf_counter()
    suspects = run_audit(AuditJob(runs=[work / "run_noisy"], manifest=work / "clean", out=work / "audit", gallery=24))
    audit_s = time.perf_counter() - start
    if args.threshold_runs:
        runs = [work / "run_noisy"]
        for subset in (0, 1):
            runs.append(work / f"run_threshold{subset}")
            train(
                work / "shards_noisy",
                runs[-1],
                args,
                **{"audit.threshold_samples": True, "audit.threshold_subset": subset},
            )
        sharpened = run_audit(AuditJob(runs=runs, manifest=work / "clean", out=work / "audit_threshold", gallery=24))
        print(f"\naudit with two threshold-sample runs (AUM cut-off {sharpened.get_column('aum_cutoff')[0]:.3f}):")
        extra["frames_threshold_runs"] = score_audit(sharpened, pl.read_csv(work / "raw" / "planted_flips.csv"))
        print(format_scores(extra["frames_threshold_runs"], planted=len(truth)))

    planted = pl.read_csv(work / "raw" / "planted_flips.csv")
    scores = score_audit(suspects, planted)
    used = json.loads((work / "audit" / "audit.json").read_text(encoding="utf-8"))["confident_learning"][
        "probabilities"
    ]
    print(
        f"\naudit of the noisy run ({audit_s:.1f} s; AUM cut-off {suspects.get_column('aum_cutoff')[0]:.3f}; the "
        f"model's view: {used}):"
    )
    print(format_scores(scores, planted=len(truth)))
    verdict = scores.row(0, named=True)
    videos = score_groups(suspects, planted)
    print(f"videos: {_video_line(videos)}")
    results_videos = {"one_run": videos}
    if args.crossval:
        oof = crossval(train_config(work / "shards_noisy", args), folds=args.crossval, out=work / "crossval")
        cv = run_audit(
            AuditJob(runs=[work / "run_noisy"], manifest=work / "clean", out=work / "audit_oof", oof=oof, gallery=24)
        )
        results_videos["crossval"] = score_groups(cv, planted)
        print(f"videos, with the out-of-fold view of {args.crossval} folds: {_video_line(results_videos['crossval'])}")

    # No abort on the quarantined share, and verdicts acted on even from a model too weak to judge (force): the
    # bench measures what the audit's verdicts do, however many and whoever gave them.
    forced = work / "forced.toml"
    forced.write_text('[rules."label.suspect"]\nforce = true\n', encoding="utf-8")
    clean(
        CleanConfig(
            root=work / "raw",
            out=work / "clean_audited",
            workers=2,
            quiet=True,
            suspects=work / "audit",
            rules=forced,
            max_quarantine_fraction=1.0,
            overwrite=True,
        )
    )
    dropped = (
        pl.read_parquet(work / "clean_audited" / "quarantine.parquet")
        .filter(pl.col("rule").list.contains("label.suspect"))
        .height
    )
    print(f"ingest clean --suspects: {dropped} training samples quarantined by label.suspect")
    results["cleaned"] = train(
        make_shards(work / "clean_audited", work / "shards_cleaned", size=size), work / "run_cleaned", args
    )

    # the loop again: the cleaned run's view of every training image (and its AUM where it trained)
    if args.rounds == 2:
        second = run_audit(
            AuditJob(
                runs=[work / "run_noisy"],
                view=work / "run_cleaned",
                manifest=work / "clean",
                out=work / "audit_round2",
                gallery=24,
            )
        )
        print("\naudit of the noisy run with the cleaned run's view (--view, the second round):")
        scores2 = score_audit(second, pl.read_csv(work / "raw" / "planted_flips.csv"))
        print(format_scores(scores2, planted=len(truth)))
        verdict2 = scores2.row(0, named=True)
        extra["frames_round2"] = scores2
        clean(
            CleanConfig(
                root=work / "raw",
                out=work / "clean_audited2",
                workers=2,
                quiet=True,
                suspects=work / "audit_round2",
                rules=forced,
                max_quarantine_fraction=1.0,
                overwrite=True,
            )
        )
        results["cleaned2"] = train(
            make_shards(work / "clean_audited2", work / "shards_cleaned2", size=size), work / "run_cleaned2", args
        )

    # the same audit, acted on by relabelling: every flagged frame (or video) takes the suggested label
    if args.relabel:
        rules = work / "relabel.toml"
        rules.write_text('[rules."label.suspect"]\naction = "clip"\nforce = true\n', encoding="utf-8")
        clean(
            CleanConfig(
                root=work / "raw",
                out=work / "clean_relabelled",
                workers=2,
                quiet=True,
                suspects=work / "audit",
                rules=rules,
                max_quarantine_fraction=1.0,
                overwrite=True,
            )
        )
        results["relabelled"] = train(
            make_shards(work / "clean_relabelled", work / "shards_relabelled", size=size), work / "run_relabelled", args
        )

    if not args.no_naive:
        lowest = suspects.sort("aum", nulls_last=True).head(len(truth)).get_column("sample_id")
        naive = derived_clean(
            work / "clean", work / "clean_naive", manifest.filter(~pl.col("sample_id").is_in(lowest.implode()))
        )
        results["naive"] = train(make_shards(naive, work / "shards_naive", size=size), work / "run_naive", args)

    true_labels = dict(flips.select("sample_id", "true_label").iter_rows())
    oracle_manifest = manifest.with_columns(
        label=pl.col("sample_id").replace_strict(true_labels, default=pl.col("label"))
    )
    oracle = derived_clean(work / "clean", work / "clean_oracle", oracle_manifest)
    results["oracle"] = train(make_shards(oracle, work / "shards_oracle", size=size), work / "run_oracle", args)

    print(
        f"\n{'run':<10} {'val accuracy':>12} {f'last {args.last_k}':>8} {'macro-F1':>9} {'best acc':>9} {'train s':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<10} {r['accuracy']:>12.4f} {r['last_k']:>8.4f} {r['macro_f1']:>9.4f} {r['best_accuracy']:>9.4f} "
            f"{r['seconds']:>8.0f}"
        )
    noisy, oracle_acc = results["noisy"]["accuracy"], results["oracle"]["accuracy"]
    gap = oracle_acc - noisy

    def recovered(acc: float) -> float:
        return (acc - noisy) / gap if gap > 0 else float("nan")

    def recovered_last_k(
        arm: str,
    ) -> float:  # the same on the mean of the last k epochs: one epoch's wobble is not the effect
        low, high = results["noisy"]["last_k"], results["oracle"]["last_k"]
        return (results[arm]["last_k"] - low) / (high - low) if high > low else float("nan")

    print(
        f"gap noisy -> oracle {gap:+.4f}; recovered by the audit loop {recovered(results['cleaned']['accuracy']):.3f}"
        + (f", by relabelling {recovered(results['relabelled']['accuracy']):.3f}" if args.relabel else "")
        + (
            f", by dropping the lowest AUMs at the oracle count {recovered(results['naive']['accuracy']):.3f}"
            if not args.no_naive
            else ""
        )
        + (f"; by the second round {recovered(results['cleaned2']['accuracy']):.3f}" if args.rounds == 2 else "")
    )
    if args.noise_unit == "video":  # frames flipped one by one plant no wrong video: no video F1 to give
        rec.ratio("noise_video_f1", videos["f1"])
        if args.crossval:
            rec.ratio("noise_video_f1_crossval", results_videos["crossval"]["f1"])
        rec.ratio("noise_video_gap_recovered", recovered(results["cleaned"]["accuracy"]))
        if args.relabel:
            rec.ratio("noise_video_gap_recovered_relabel", recovered(results["relabelled"]["accuracy"]))
    rec.ratio("noise_precision", verdict["precision"])
    rec.ratio("noise_recall", verdict["recall"])
    rec.ratio("noise_f1", verdict["f1"])
    rec.ratio("noise_gap_recovered", recovered(results["cleaned"]["accuracy"]))
    rec.ratio("noise_gap_recovered_last_k", recovered_last_k("cleaned"))
    if args.rounds == 2:
        rec.ratio("noise_f1_round2", verdict2["f1"])
        rec.ratio("noise_gap_recovered_round2", recovered(results["cleaned2"]["accuracy"]))
    rec.finish(
        accuracy=results,
        frames=scores.to_dicts(),
        videos=results_videos,
        gap_recovered=recovered(results["cleaned"]["accuracy"]),
        **{name: table.to_dicts() for name, table in extra.items()},
    )
    return 0


def _video_line(v: dict) -> str:
    return (
        f"{v['flagged']} of {v['videos']} flagged as label_issue, {v['planted']} planted: precision "
        f"{v['precision']:.3f}, recall {v['recall']:.3f}, F1 {v['f1']:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
