"""Which training samples a data-diet build keeps: a per-class share chosen by importance score.

    shards build CLEAN --out SHARDS --select scores.parquet --keep 0.5 --by el2n

``scores.parquet`` is ``train scores`` output (``train.audit.importance``). Within each class the
training samples are ranked, most informative first, and the first ``round(keep * n)`` are kept
(at least ``keep_per_class_min``, so no class vanishes; stratified, so the class shares stay as
they were and the class weights in labels.json still fit):

* ``el2n``: highest EL2N first (Paul et al., NeurIPS 2021: the samples a young model already
  gets right teach it least);
* ``forgetting``: most often forgotten first, never-learned above all (Toneva et al., ICLR 2019),
  ties by EL2N when the file has it;
* ``random``: a seeded uniform draw per class (needs no scores).

With ``near_duplicates_last`` (the default), frames that ``ingest clean`` flagged as near-copies of a
frame kept before them (warning ``image.near_duplicate``, same video and label) rank after every
other frame of their class: a score alone cannot see that four frames are one pose, so without this
it keeps all copies of a hard pose and drops every copy of an easy one. ``random`` with it is
de-duplication alone (the near-copies go first, the rest is a random draw): measured, no score beat
it (docs/diet.md), so it is what ``--keep`` does without ``--select``. Plain random (the baseline) is
``--by random --no-near-duplicates-last``.

Remaining ties are broken by a seeded permutation of the sample ids, so a selection depends only on
the manifest, the scores and the seed. A training sample without a score (not in the file) is kept:
nothing says it is redundant. Validation is never subject to selection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pawpipe.common.contracts.dataset_file import ClassSelection, SelectionSummary

METHODS = ("el2n", "forgetting", "random")
_PRIORITY = {"el2n": ["el2n"], "forgetting": ["forgetting_score", "el2n"], "random": []}
NEAR_DUPLICATE = "image.near_duplicate"  # the warning ingest clean gives a near-copy of a kept frame


@dataclass(frozen=True)
class Selection:
    """The chosen training subset and how it was chosen."""

    method: str
    keep: float
    keep_per_class_min: int
    near_duplicates_last: bool
    scores: Path | None
    scores_sha256: str | None
    table: pl.DataFrame  # train rows: sample_id, label_id, near_duplicate, scored, selected

    def options(self) -> dict:
        """What decides the shards' contents, for the build fingerprint (resume only the same selection)."""
        return {
            "select": {
                "method": self.method,
                "keep": self.keep,
                "keep_per_class_min": self.keep_per_class_min,
                "near_duplicates_last": self.near_duplicates_last,
                "scores_sha256": self.scores_sha256,
            }
        }

    def apply(self, manifest: pl.DataFrame) -> pl.DataFrame:
        """``manifest`` without the training rows left out."""
        dropped = self.not_selected().select("sample_id")
        return manifest.join(dropped, on="sample_id", how="anti", maintain_order="left")

    def not_selected(self) -> pl.DataFrame:
        """The training rows left out (sample_id, label_id), by sample_id."""
        return self.table.filter(~pl.col("selected")).select("sample_id", "label_id").sort("sample_id")

    def describe(self, vocabulary: list[str]) -> SelectionSummary:
        """The selection for dataset.json: method, keep, and per class the train, selected and unscored counts."""
        per = self.table.group_by("label_id").agg(
            train=pl.len(), selected=pl.col("selected").sum(), unscored=(~pl.col("scored")).sum()
        )
        rows = {r["label_id"]: r for r in per.iter_rows(named=True)}
        per_class = {
            name: ClassSelection(**{k: int(rows.get(i, {}).get(k) or 0) for k in ("train", "selected", "unscored")})
            for i, name in enumerate(vocabulary)
        }
        return SelectionSummary(
            method=self.method,
            keep=self.keep,
            keep_per_class_min=self.keep_per_class_min,
            near_duplicates_last=self.near_duplicates_last,
            near_duplicates=int(self.table.get_column("near_duplicate").sum()),
            near_duplicates_selected=int(
                (self.table.get_column("near_duplicate") & self.table.get_column("selected")).sum()
            ),
            scores=str(self.scores) if self.scores else None,
            scores_sha256=self.scores_sha256,
            train=self.table.height,
            selected=int(self.table.get_column("selected").sum()),
            not_selected=int((~self.table.get_column("selected")).sum()),
            per_class=per_class,
        )


def read_scores(path: str | Path, method: str) -> pl.DataFrame:
    """``sample_id`` and the columns ``method`` ranks by, from a ``train scores`` file."""
    path = Path(path)
    try:
        scores = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path}: cannot read the scores: {' '.join(str(exc).split())[:300]}") from None
    need = ["sample_id", *_PRIORITY[method][:1]]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(
            f"{path}: expected column {missing[0]!r} (`train scores` output) for --by {method}, got {scores.columns}"
        )
    if scores.get_column("sample_id").is_duplicated().any():
        raise ValueError(f"{path}: sample_id: expected one row per sample, got repeats")
    return scores.select("sample_id", *[c for c in _PRIORITY[method] if c in scores.columns])


def choose(
    train: pl.DataFrame,
    scores: pl.DataFrame | None,
    *,
    method: str,
    keep: float,
    keep_per_class_min: int = 1,
    seed: int = 0,
    near_duplicates_last: bool = True,
) -> pl.DataFrame:
    """Per training row (``sample_id``, ``label_id``, optional ``near_duplicate``): ``scored`` and ``selected``,
    by ``sample_id``.

    >>> t = pl.DataFrame({"sample_id": ["a", "b", "c", "d"], "label_id": [0, 0, 0, 1]})
    >>> s = pl.DataFrame({"sample_id": ["a", "b", "c", "d"], "el2n": [0.1, 0.9, 0.5, 0.0]})
    >>> choose(t, s, method="el2n", keep=0.5)["selected"].to_list()
    [False, True, True, True]
    """
    if method not in METHODS:
        raise ValueError(f"--by: expected one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"--keep: expected a share in (0, 1], got {keep}")
    dup = pl.col("near_duplicate").fill_null(False) if "near_duplicate" in train.columns else pl.lit(False)
    frame = train.select("sample_id", "label_id", dup.alias("near_duplicate")).sort("sample_id")
    frame = frame.with_columns(_tie=pl.Series(np.random.default_rng([seed, 0x5E1EC7]).permutation(frame.height)))
    priority = _PRIORITY[method]
    if priority:
        if scores is None:
            raise ValueError(f"--by {method}: expected --select scores.parquet (`train scores` output)")
        frame = frame.join(scores, on="sample_id", how="left")
        present = [c for c in priority if c in frame.columns]
        frame = frame.with_columns(
            scored=pl.col(present[0]).is_not_null(), *[pl.col(c).fill_null(float("inf")) for c in present]
        )
        order, descending = [*present, "_tie"], [True] * len(present) + [False]
        if near_duplicates_last:
            order, descending = ["near_duplicate", *order], [False, *descending]
    else:
        frame = frame.with_columns(
            scored=pl.lit(True)
            if scores is None
            else pl.col("sample_id").is_in(scores.get_column("sample_id").implode())
        )
        order, descending = (
            (["near_duplicate", "_tie"], [False, False]) if near_duplicates_last else (["_tie"], [False])
        )
    ranked = frame.sort(["label_id", *order], descending=[False, *descending]).with_columns(
        _rank=pl.int_range(pl.len()).over("label_id"),
        _quota=pl.max_horizontal((pl.len() * keep + 0.5).floor(), pl.min_horizontal(pl.len(), keep_per_class_min)).over(
            "label_id"
        ),
    )
    return ranked.select(
        "sample_id", "label_id", "near_duplicate", "scored", selected=pl.col("_rank") < pl.col("_quota")
    ).sort("sample_id")


def select_train(
    manifest: pl.DataFrame,
    *,
    scores: Path | None,
    method: str,
    keep: float,
    keep_per_class_min: int,
    seed: int,
    near_duplicates_last: bool = True,
    warnings: pl.DataFrame | None = None,
) -> Selection:
    """The ``Selection`` of the manifest's training rows; ``warnings``: the manifest's ``sample_id``, ``warnings``."""
    table = read_scores(scores, method) if scores is not None else None
    digest = hashlib.sha256(Path(scores).read_bytes()).hexdigest() if scores is not None else None
    train = manifest.filter(pl.col("split") == "train")
    if warnings is not None:
        flagged = warnings.select("sample_id", near_duplicate=pl.col("warnings").list.contains(NEAR_DUPLICATE))
        train = train.join(flagged, on="sample_id", how="left")
    chosen = choose(
        train,
        table,
        method=method,
        keep=keep,
        keep_per_class_min=keep_per_class_min,
        seed=seed,
        near_duplicates_last=near_duplicates_last,
    )
    return Selection(method, keep, keep_per_class_min, near_duplicates_last, scores, digest, chosen)
