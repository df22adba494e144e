"""``train audit``: the signals of one or more training runs (and cross-fitted probabilities) -> one verdict per sample.

    suspects = run_audit(AuditJob(runs=[RUN], manifest=CLEAN, out=AUDIT))

Reads each run's ``dynamics/`` (margins, predictions, probabilities per epoch), ``config.json``
(threshold-sample runs) and ``run.json`` (vocabulary); the clean manifest (given labels, image
paths, the second annotator's label); optionally ``oof.parquet`` (``train crossval``: sample_id and
out-of-fold ``probs``). Writes into ``AUDIT/``:

* ``suspects.parquet``: one row per training sample, most suspect first (``SUSPECTS`` columns),
  with its video's verdict (``group_verdict``) and the neighbour view's class (``neighbour_label``);
* ``groups.parquet``: one row per video (group of two or more training frames): the frames' evidence
  aggregated and a verdict per video (``train.audit.groups``, ``GROUPS`` columns);
* ``audit.json``: the cut-offs, the confident joint, the estimated noise matrix and noise rates;
* ``audit.html`` and its PNGs (``train.audit.report``);
* ``review.csv``: the suspect videos (one row each, blank ``sample_id``: a decision covers every
  frame), then the ``label_issue`` and ``ambiguous`` rows, most suspect first, with an empty
  ``decision`` column for a person to fill in a spreadsheet (``accept``, ``reject`` or blank) and
  hand back with ``train audit --review AUDIT --decisions review.csv``.

The model's view of each training image comes from the best probabilities at hand, in this order:

1. ``--oof``: out-of-fold probabilities (``train crossval``), never fitted to the sample's label;
2. the run's **last checkpoint in eval mode** over its training split (no augmentation, no dropout,
   BatchNorm running statistics): one inference pass (``AUDIT/train_predictions/``), on by default
   (``predict=False`` / ``--no-predict`` skips it). A model that generalises predicts the true
   class of a mislabelled image unless it memorised the wrong label; the training-time
   probabilities understate that (augmented images, dropout, and the early epochs when every
   sample is wrong), which is why the pass pays on planted noise (docs/audit.md);
3. the mean of the probabilities each sample got while it was trained on (free, weakest).

``--view RUN2`` replaces 2. with the last checkpoint of a later run, in eval mode over the audited
run's training split: a second round of the loop. RUN2 was trained on the manifest the first audit
cleaned, so the images it dropped are seen by a model that never fitted their label (its view of
them is out of sample and decides alone, as an out-of-fold one does), and the rest by a model that
learned from cleaner data: for those RUN2's own training dynamics replace the audited run's (its
AUM, with a cut-off calibrated against its view), and the two views must agree (docs/audit.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from pawpipe.common.atomic import write_json, write_parquet, write_text
from pawpipe.train.audit.aum import calibrated_cutoff, score_runs
from pawpipe.train.audit.combine import VERDICTS, combine
from pawpipe.train.audit.confident import ConfidentResult, find_label_issues
from pawpipe.train.audit.disagreement import disagreement
from pawpipe.train.audit.groups import judge_groups
from pawpipe.train.audit.judge import judge_strength
from pawpipe.train.audit.neighbours import K_NEIGHBOURS, neighbour_probs
from pawpipe.train.audit.summary import RunSummary, sum_by_sample, summarise
from pawpipe.train.fit.dynamics import list_parts

log = logging.getLogger(__name__)

SUSPECTS = (
    "rank",
    "sample_id",
    "image_path",
    "group_id",
    "label",
    "label_id",
    "suggested_label",
    "model_label",
    "verdict",
    "reason",
    "suspect_score",
    "aum",
    "aum_cutoff",
    "cl_issue",
    "self_confidence",
    "forgetting_events",
    "never_learned",
    "annotators_disagree",
    "other_label",
    "seen",
    "out_of_sample",
    "group_verdict",
    "group_suggested_label",
    "neighbour_label",
)


class AuditJob(BaseModel):
    """What ``train audit`` was asked to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs: list[Path]
    manifest: Path  # the clean folder (manifest.parquet inside) or the manifest file
    out: Path
    oof: Path | None = None
    shards: Path | None = None  # for the gallery; default: the first run's data.shards
    gallery: int = 48  # top suspects shown as images
    predict: bool = True  # eval-mode pass of each ordinary run's last checkpoint over its training split
    view: Path | None = (
        None  # a later run (trained on the cleaned manifest): its last checkpoint's view, its dynamics where it trained
    )
    device: str = "auto"  # for that pass


@dataclass(frozen=True)
class RunDynamics:
    """What the audit reads from one run directory."""

    path: Path
    vocabulary: list[str]  # the base classes (without the threshold class)
    extra_class: int | None  # the threshold class id of a threshold-sample run
    train_split: str
    shards: Path | None
    summary: RunSummary  # per-sample AUM, forgetting and mean probabilities, read one epoch at a time


def load_run(run_dir: str | Path) -> RunDynamics:
    """A run directory's dynamics and what the audit needs from its record."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{run_dir}: expected a run directory with config.json and run.json: {exc}") from None
    vocabulary = list(info["vocabulary"])
    threshold = bool(config.get("audit", {}).get("threshold_samples"))
    folder = run_dir / "dynamics"
    parts = list_parts(folder)
    if not parts:
        raise ValueError(f"{folder}: no training dynamics (was record.dynamics off?)")
    columns = pq.read_schema(parts[0][4]).names
    if "probs" not in columns or "finite" not in columns:
        raise ValueError(f"{folder}: expected the columns probs and finite (dynamics of an older version)")
    k = len(vocabulary)
    summary = summarise(folder, num_classes=k - 1 if threshold else k, extra_class=k - 1 if threshold else None)
    shards = config.get("data", {}).get("shards")
    return RunDynamics(
        path=run_dir,
        vocabulary=vocabulary[:-1] if threshold else vocabulary,
        extra_class=len(vocabulary) - 1 if threshold else None,
        train_split=config.get("data", {}).get("train_split", "train"),
        shards=Path(shards) if shards else None,
        summary=summary,
    )


def read_manifest(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    file = path / "manifest.parquet" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: expected a clean manifest (manifest.parquet), got nothing")
    return pl.read_parquet(file)


def mean_probs(runs: list[RunDynamics], num_classes: int) -> pl.DataFrame:
    """Per sample, the mean over finite rows of every run of its class probabilities (threshold
    runs: their own threshold samples left out, the extra class dropped and the rest renormalised)."""
    rows = pl.concat([r.summary.probs for r in runs])
    ids, sums, n = sum_by_sample(
        rows.get_column("sample_id").to_numpy(),
        np.stack(rows.get_column("probs").to_numpy())[:, :num_classes],
        rows.get_column("n").to_numpy(),
    )
    return pl.DataFrame({"sample_id": ids, "probs": sums / n[:, None]})


def eval_probs(runs: list[RunDynamics], job: AuditJob, num_classes: int) -> pl.DataFrame | None:
    """Per sample, the mean over the ordinary runs of the probabilities their last checkpoint gives
    the training images in eval mode; None when no run has a last checkpoint and reachable shards.
    Threshold-sample runs take no part (their model has one class more than the shards)."""
    from pawpipe.train.fit.checkpoint import LAST

    frames = []
    for i, run in enumerate(runs):
        checkpoint, shards = run.path / "checkpoints" / LAST, job.shards or run.shards
        if run.extra_class is not None:
            continue
        if not checkpoint.is_file() or shards is None or not (shards / run.train_split).is_dir():
            log.warning(
                "%s: no eval-mode pass (needs %s and the shards' %s split)", run.path, checkpoint, run.train_split
            )
            continue
        frames.append(
            _predicted(
                checkpoint, shards / run.train_split, job.out / "train_predictions" / f"run{i}.parquet", job.device
            )
        )
    if not frames:
        return None
    rows = pl.concat([f.drop("embedding") for f in frames])
    probs = np.stack(rows.get_column("probs").to_numpy())[:, :num_classes]
    ids, sums, n = sum_by_sample(rows.get_column("sample_id").to_numpy(), probs)
    mean = pl.DataFrame({"sample_id": ids, "probs": sums / n[:, None]})
    return mean.join(frames[0].select("sample_id", "embedding"), on="sample_id", how="left")  # the first run's features


def load_view(run: RunDynamics, job: AuditJob) -> RunDynamics:
    """The later run of ``--view`` (its record and dynamics), checked against ``run``, the audited one."""
    from pawpipe.train.fit.checkpoint import LAST

    view = job.view
    try:
        loaded = load_run(view)
    except ValueError as exc:
        raise ValueError(f"--view {exc}") from None
    if loaded.extra_class is not None:
        raise ValueError(f"--view {view}: a threshold-sample run (one class more); expected an ordinary run")
    if loaded.vocabulary != run.vocabulary:
        raise ValueError(f"--view {view}: vocabulary {loaded.vocabulary} differs from {run.path}'s {run.vocabulary}")
    checkpoint, shards = view / "checkpoints" / LAST, job.shards or run.shards
    if not checkpoint.is_file():
        raise ValueError(f"--view {view}: no last checkpoint ({checkpoint})")
    if shards is None or not (shards / run.train_split).is_dir():
        raise ValueError(
            f"--view {view}: expected the audited run's shards with a {run.train_split!r} split, got {shards}"
        )
    return loaded


def view_probs(run: RunDynamics, view: RunDynamics, job: AuditJob) -> pl.DataFrame:
    """The probabilities the last checkpoint of ``view`` gives the training images of ``run`` (the
    audited run) in eval mode."""
    from pawpipe.train.fit.checkpoint import LAST

    split = (job.shards or run.shards) / run.train_split
    return _predicted(
        view.path / "checkpoints" / LAST, split, job.out / "train_predictions" / "view.parquet", job.device
    )


def with_view_dynamics(signals: pl.DataFrame, view: RunDynamics) -> tuple[pl.DataFrame, float]:
    """``--view``: where the view's run trained on a sample with its given label, that run's AUM
    and a cut-off calibrated against its view (over those samples) replace the audited runs'; the
    other samples (the ones the first round dropped or relabelled) are ``out_of_sample``. Returns the
    signals and that cut-off."""
    fitted = view.summary.labels.select("sample_id", view_label_id="label_id").join(
        view.summary.aum.select("sample_id", view_aum="aum"), on="sample_id", how="left"
    )
    joined = signals.join(fitted, on="sample_id", how="left")
    in_sample = (pl.col("view_label_id") == pl.col("label_id")).fill_null(False)
    cutoff = cutoff_against_view(joined.filter(in_sample), "view_aum")
    out = joined.with_columns(
        aum=pl.when(in_sample).then(pl.col("view_aum")).otherwise(pl.col("aum")),
        aum_cutoff=pl.when(in_sample).then(pl.lit(cutoff, dtype=pl.Float64)).otherwise(pl.col("aum_cutoff")),
        out_of_sample=~in_sample,
    )
    return out.drop("view_label_id", "view_aum"), cutoff


def cutoff_against_view(signals: pl.DataFrame, aum: str = "aum") -> float:
    """``calibrated_cutoff`` of the ``aum`` column against the model's doubt (``model_label`` is not the
    label), over the rows that have both."""
    both = signals.filter(pl.col(aum).is_not_null() & pl.col("model_label").is_not_null())
    return calibrated_cutoff(
        both.get_column(aum).to_numpy(), (both.get_column("model_label") != both.get_column("label")).to_numpy()
    )


def _predicted(checkpoint: Path, split: Path, out: Path, device: str) -> pl.DataFrame:
    """One eval-mode pass of ``checkpoint`` over a split folder: sample_id, probs (float64 rows) and the
    penultimate features (``embedding``, for the neighbour view)."""
    from pawpipe.train.fit.evaluate import predict_checkpoint

    table = predict_checkpoint(checkpoint, split, out=out, device=device, embeddings=True)
    n = table.num_rows

    def matrix(name: str, dtype: type) -> np.ndarray:  # Arrow lists -> one numpy block, never Python floats
        values = table.column(name).combine_chunks().flatten().to_numpy().astype(dtype)
        return values.reshape(n, -1) if n else values.reshape(0, 0)

    return pl.DataFrame(
        {
            "sample_id": table.column("sample_id").to_pylist(),
            "probs": matrix("probs", np.float64),
            "embedding": matrix("embedding", np.float32),
        }
    )


def read_oof(path: str | Path, num_classes: int) -> pl.DataFrame:
    """``oof.parquet`` (sample_id, probs): out-of-fold probabilities from ``train crossval``."""
    frame = pl.read_parquet(path).select("sample_id", "probs")
    probs = np.asarray(frame.get_column("probs").to_list(), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"{path}: probs: expected {num_classes} probabilities per sample, got shape {probs.shape}")
    return pl.DataFrame({"sample_id": frame.get_column("sample_id"), "probs": probs})


def run_audit(job: AuditJob) -> pl.DataFrame:
    """Every signal, the verdicts, ``suspects.parquet``, ``audit.json`` and the HTML report under ``job.out``."""
    from pawpipe.train.audit.report import write_report

    if job.oof is not None and job.view is not None:
        raise ValueError("--oof and --view: expected one view of the model, got both")
    runs = [load_run(r) for r in job.runs]
    view = load_view(runs[0], job) if job.view is not None else None
    vocabulary = runs[0].vocabulary
    for run in runs[1:]:
        if run.vocabulary != vocabulary:
            raise ValueError(f"{run.path}: vocabulary {run.vocabulary} differs from {runs[0].path}'s {vocabulary}")
    k = len(vocabulary)
    manifest = read_manifest(job.manifest)
    train = manifest.filter(pl.col("split") == runs[0].train_split)
    if train.is_empty():
        raise ValueError(f"{job.manifest}: no rows of split {runs[0].train_split!r}")
    train = train.with_columns(
        label_id=pl.col("label").replace_strict(
            {n: i for i, n in enumerate(vocabulary)}, default=None, return_dtype=pl.Int64
        )
    )

    aum = score_runs([(r.summary.aum, r.extra_class) for r in runs])
    trained = aum.scores.get_column("sample_id")
    if train.filter(pl.col("sample_id").is_in(trained.implode())).is_empty():
        raise ValueError(
            f"{job.manifest}: none of its {train.height} {runs[0].train_split!r} sample ids is among the "
            f"{trained.len()} samples {runs[0].path} trained on; expected the clean manifest the run's shards were "
            "built from"
        )
    cutoff, cutoff_how = aum.cutoff, aum.how
    forgot = (
        pl.concat([r.summary.forgetting for r in runs])
        .group_by("sample_id")
        .agg(pl.col("forgetting_events").sum(), pl.col("never_learned").all(), pl.col("forgetting_score").mean())
    )
    job.out.mkdir(parents=True, exist_ok=True)
    probs, probs_source, embedded = _probabilities(runs, view, job, k)

    scored = (
        train.select("sample_id", "label_id")
        .join(probs, on="sample_id", how="inner")
        .filter(pl.col("label_id").is_not_null())
    )
    cl = find_label_issues(scored.get_column("probs").to_numpy(), scored.get_column("label_id").to_numpy())
    cl_frame = pl.DataFrame(
        {
            "sample_id": scored.get_column("sample_id"),
            "cl_issue": cl.issues,
            "self_confidence": cl.self_confidence,
            "cl_suggested": [vocabulary[i] for i in cl.suggested],
            "model_label": [vocabulary[i] for i in scored.get_column("probs").to_numpy().argmax(axis=1)],
        }
    )

    signals = (
        train.select("sample_id", "image_path", "group_id", "label", "label_id")
        .join(aum.scores, on="sample_id", how="left")
        .join(cl_frame, on="sample_id", how="left")
        .join(
            forgot.select("sample_id", "forgetting_events", "never_learned", "forgetting_score"),
            on="sample_id",
            how="left",
        )
        .join(disagreement(train), on="sample_id", how="left")
    )
    if cutoff is None:  # no threshold-sample run: calibrate the AUM cut-off against the model's view
        cutoff = cutoff_against_view(signals)
    signals = signals.with_columns(
        aum_cutoff=pl.lit(cutoff, dtype=pl.Float64),
        seen=pl.col("aum").is_not_null(),
        suggested_label=pl.col("cl_suggested"),
        out_of_sample=pl.lit(job.oof is not None),
    )
    view_cutoff = None
    if view is not None:
        signals, view_cutoff = with_view_dynamics(signals, view)
    combined = combine(signals).with_columns(
        suggested_label=pl.when(pl.col("verdict") == "ok").then(pl.col("label")).otherwise(pl.col("suggested_label"))
    )
    groups, group_source, neighbour = _judge_groups(combined, embedded, job, vocabulary)
    combined = with_group_verdicts(combined, groups, neighbour)
    suspects = combined.select(SUSPECTS)
    write_parquet(job.out / "suspects.parquet", suspects)
    write_parquet(job.out / "groups.parquet", groups)
    write_review_sheet(job.out / REVIEW_SHEET, suspects, groups)
    summary = _summary(job, runs, vocabulary, cl, cutoff, cutoff_how, probs_source, suspects, view_cutoff=view_cutoff)
    summary["groups"] = _group_summary(groups, group_source)
    summary["judge"] = judge_strength(job.view if job.view is not None else runs[0].path)
    write_json(job.out / "audit.json", summary)
    write_report(
        job.out,
        suspects,
        summary,
        shards=job.shards or runs[0].shards,
        split=runs[0].train_split,
        gallery=job.gallery,
        groups=groups,
    )
    return suspects


def _probabilities(
    runs: list[RunDynamics], view: RunDynamics | None, job: AuditJob, k: int
) -> tuple[pl.DataFrame, str, pl.DataFrame | None]:
    """The best probabilities at hand (see the module docstring), where they came from (words), and the
    penultimate features of the eval-mode pass (sample_id, embedding) when one ran."""
    if view is not None:
        probs = view_probs(runs[0], view, job)
        return (
            probs.drop("embedding"),
            f"eval-mode predictions of the last checkpoint of {job.view} over the audited run's training split",
            probs,
        )
    predicted = eval_probs(runs, job, k) if job.predict else None
    embedded = predicted.select("sample_id", "embedding") if predicted is not None else None
    if job.oof is not None:
        return read_oof(job.oof, k), f"out-of-fold probabilities ({job.oof})", embedded
    if predicted is not None:
        return (
            predicted.drop("embedding"),
            "eval-mode predictions of the last checkpoint over the training split",
            embedded,
        )
    return mean_probs(runs, k), "mean training-time probabilities", None


def _judge_groups(
    signals: pl.DataFrame, embedded: pl.DataFrame | None, job: AuditJob, vocabulary: list[str]
) -> tuple[pl.DataFrame, str, pl.DataFrame]:
    """The group verdicts (``train.audit.groups``) from the views that never fitted a group's label: the
    neighbour view of the eval pass's features, the out-of-fold probabilities, or the mean of both; their
    source in words; and per sample the neighbour view's most probable class (``neighbour_label``)."""
    k = len(vocabulary)
    frames = signals.sort("sample_id")
    neighbour = frames.select("sample_id", neighbour_label=pl.lit(None, pl.String))
    views, words = [], []
    if embedded is not None:
        joined = frames.select("sample_id", "group_id", "label_id").join(
            embedded, on="sample_id", how="left", maintain_order="left"
        )
        column = joined.get_column("embedding")  # a fixed-width Array column: to_numpy gives the matrix
        present = column.is_not_null().to_numpy()
        emb = np.zeros((frames.height, column.dtype.size), dtype=np.float32)
        emb[present] = column.drop_nulls().to_numpy()
        labels = np.where(present, joined.get_column("label_id").fill_null(-1).to_numpy(), -1)
        knn = neighbour_probs(
            emb, labels, joined.get_column("group_id").fill_null("").to_numpy(), num_classes=k, device=_device(job)
        )
        views.append(knn)
        neighbour = neighbour.with_columns(neighbour_label=pl.Series([vocabulary[i] for i in knn.argmax(axis=1)]))
        words.append(
            f"the {K_NEIGHBOURS} nearest other videos (fewer where a label has fewer) in the last checkpoint's feature "
            "space"
        )
    if job.oof is not None:
        oof = frames.select("sample_id").join(read_oof(job.oof, k), on="sample_id", how="left", maintain_order="left")
        if oof.get_column("probs").null_count() == 0:
            views.append(np.stack(oof.get_column("probs").to_numpy()))
            words.append(f"out-of-fold probabilities ({job.oof})")
    if not views:
        log.warning("no view that never fitted a group's label (no eval-mode pass, no --oof): no group verdicts")
        return judge_groups(frames.head(0), np.zeros((0, k)), vocabulary), "none", neighbour
    return judge_groups(frames, np.mean(views, axis=0), vocabulary), " and ".join(words), neighbour


def _device(job: AuditJob) -> str:
    from pawpipe.train.fit.device import resolve_device

    return str(resolve_device(job.device))


def with_group_verdicts(signals: pl.DataFrame, groups: pl.DataFrame, neighbour: pl.DataFrame) -> pl.DataFrame:
    """Every frame carries its group's verdict and suggestion (null for a group of one image), and the
    neighbour view's most probable class for it; the order (``rank``) stays."""
    joined = signals.join(
        groups.select("group_id", "group_verdict", "group_suggested_label"), on="group_id", how="left"
    )
    return joined.join(neighbour, on="sample_id", how="left").sort("rank")


def _group_summary(groups: pl.DataFrame, source: str) -> dict:
    counts = dict(groups.group_by("group_verdict").len().iter_rows()) if groups.height else {}
    return {"view": source, "groups": groups.height, "verdicts": {v: int(counts.get(v, 0)) for v in VERDICTS}}


def _summary(
    job: AuditJob,
    runs: list[RunDynamics],
    vocabulary: list[str],
    cl: ConfidentResult,
    cutoff: float,
    cutoff_how: str,
    probs_source: str,
    suspects: pl.DataFrame,
    *,
    view_cutoff: float | None,
) -> dict:
    counts = dict(suspects.group_by("verdict").len().iter_rows())
    return {
        "runs": [str(r.path) for r in runs],
        "threshold_runs": [str(r.path) for r in runs if r.extra_class is not None],
        "manifest": str(job.manifest),
        "oof": str(job.oof) if job.oof else None,
        "view": str(job.view) if job.view else None,
        "vocabulary": vocabulary,
        "samples": suspects.height,
        "out_of_sample": int(suspects.get_column("out_of_sample").sum()),
        "verdicts": {v: int(counts.get(v, 0)) for v in ("label_issue", "ambiguous", "ok")},
        "aum_cutoff": cutoff,
        "aum_cutoff_from": cutoff_how,
        "view_aum_cutoff": view_cutoff,  # --view: the cut-off of the view run's AUM, calibrated against its view
        "confident_learning": {
            "probabilities": probs_source,
            "thresholds": [float(t) for t in cl.thresholds],
            "confident_joint": cl.confident_joint.tolist(),
            "joint": cl.joint.tolist(),
            "noise_matrix": cl.noise_matrix.tolist(),
            "noise_rate": [float(r) for r in cl.noise_rate],
            "issues": int(cl.issues.sum()),
        },
    }


DECISIONS = {"sample_id": pl.String, "decision": pl.String, "label": pl.String, "suggested_label": pl.String}
REVIEW_SHEET = "review.csv"
SHEET = ("rank", "group_id", "sample_id", "verdict", "label", "suggested_label", "image_path", "reason", "decision")


def write_review_sheet(path: Path, suspects: pl.DataFrame, groups: pl.DataFrame) -> None:
    """The rows a person should look at, as a CSV with an empty ``decision`` column: first the suspect
    videos, one row each with a blank ``sample_id`` (a decision there covers every frame), then the frames."""
    videos = groups.filter(pl.col("group_verdict") != "ok").select(
        rank=pl.col("group_rank"),
        group_id="group_id",
        sample_id=pl.lit(None, pl.String),
        verdict="group_verdict",
        label="label",
        suggested_label="group_suggested_label",
        image_path=pl.lit(None, pl.String),
        reason="group_reason",
    )
    rows = suspects.filter(pl.col("verdict") != "ok").select(SHEET[:-1])
    sheet = pl.concat([videos, rows], how="vertical_relaxed").with_columns(decision=pl.lit(None, pl.String))
    write_text(path, sheet.write_csv())


def read_review_sheet(path: str | Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """(accepted ids, rejected ids, accepted groups, rejected groups) from a filled-in review sheet: a row
    with a sample id decides that sample, a row with only a ``group_id`` the whole video; blanks are skipped."""
    path = Path(path)
    try:
        sheet = pl.read_csv(path, infer_schema=False)
        sheet = sheet.select(
            "sample_id",
            "decision",
            pl.col("group_id") if "group_id" in sheet.columns else pl.lit(None, pl.String).alias("group_id"),
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(
            f"{path}: expected a review sheet with the columns sample_id and decision: {exc}".splitlines()[0]
        ) from None
    decision = sheet.get_column("decision").fill_null("").str.strip_chars().str.to_lowercase()
    bad = sheet.with_row_index("line", offset=2).filter(~decision.is_in(["accept", "reject", ""]))
    if bad.height:
        line, sample, value, group = bad.row(0)
        raise ValueError(
            f"{path}: line {line}: decision: expected accept, reject or blank, got {value!r} "
            f"({'sample ' + sample if sample else 'group ' + str(group)})"
        )
    ids, groups = sheet.get_column("sample_id"), sheet.get_column("group_id")
    whole = ids.is_null() & groups.is_not_null()
    return (
        ids.filter(~whole & (decision == "accept")).to_list(),
        ids.filter(~whole & (decision == "reject")).to_list(),
        groups.filter(whole & (decision == "accept")).to_list(),
        groups.filter(whole & (decision == "reject")).to_list(),
    )


def review(
    audit_dir: str | Path,
    *,
    accept: list[str] = (),
    reject: list[str] = (),
    accept_groups: list[str] = (),
    reject_groups: list[str] = (),
) -> pl.DataFrame:
    """Record a person's decisions in ``AUDIT/decisions.parquet``: ``accept`` (the label is wrong: act
    on it) or ``reject`` (the label is right: keep it), per sample or per video (``*_groups``: every
    frame of the group; a sample named on its own wins over its group). A later decision on the same
    sample replaces the earlier one; rows stay sorted by sample_id, so the same decisions give the same file."""
    audit_dir = Path(audit_dir)
    suspects = pl.read_parquet(
        audit_dir / "suspects.parquet", columns=["sample_id", "group_id", "label", "suggested_label"]
    )
    unknown = sorted((set(accept_groups) | set(reject_groups)) - set(suspects.get_column("group_id").drop_nulls()))
    if unknown:
        raise ValueError(
            f"{audit_dir / 'suspects.parquet'}: no groups {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    both_groups = set(accept_groups) & set(reject_groups)
    if both_groups:
        raise ValueError(f"--accept-group and --reject-group name the same groups: {sorted(both_groups)[:5]}")
    named = set(accept) | set(reject)

    def frames_of(groups: list[str]) -> list[str]:
        ids = suspects.filter(pl.col("group_id").is_in(list(groups))).get_column("sample_id").to_list()
        return [i for i in ids if i not in named]

    accept, reject = [*frames_of(accept_groups), *accept], [*frames_of(reject_groups), *reject]
    suspects = suspects.drop("group_id")
    both = set(accept) & set(reject)
    if both:
        raise ValueError(f"--accept and --reject name the same samples: {sorted(both)[:5]}")
    asked = pl.DataFrame(
        {"sample_id": [*accept, *reject], "decision": ["accept"] * len(accept) + ["reject"] * len(reject)},
        schema={"sample_id": pl.String, "decision": pl.String},
    )
    unknown = asked.join(suspects, on="sample_id", how="anti").get_column("sample_id").to_list()
    if unknown:
        raise ValueError(
            f"{audit_dir / 'suspects.parquet'}: no sample ids {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    new = asked.join(suspects, on="sample_id", how="left").select(list(DECISIONS))
    path = audit_dir / "decisions.parquet"
    old = pl.read_parquet(path) if path.is_file() else pl.DataFrame(schema=DECISIONS)
    merged = (
        pl.concat([old.join(new, on="sample_id", how="anti"), new]).unique("sample_id", keep="last").sort("sample_id")
    )
    write_parquet(path, merged)
    return merged
