"""Which images are one video: the ``group_id`` that a split, the near-duplicate rule and the
cross-validation folds never cut through, for every layout (``ingest clean --group-by RULE``).

Rules (``GroupBy.parse``):

* ``auto`` (default): the source's own groups where it has them (AI Hub: the video's label file;
  a table's ``group``/``video``/``subject`` column; COCO's ``video_id``), else the first of the
  common frame namings (``FRAME_NAMINGS``) that every image name matches, else one group per image;
* ``source``: the source's own groups (one per image where it has none);
* ``folder``: the image's folder;
* ``stem:REGEX``: the first capture group of ``REGEX`` searched in the file stem (the whole match
  when it has no group); an image whose stem does not match stays its own group;
* ``column:NAME``: a column of the annotations (a table's extra column, or ``owner_id``...);
* ``none``: one group per image.

Folder names that name a split (``train``, ``valid``, ``val2017``, ...) are left out of a group
key, so the frames of one video under ``train/`` and ``valid/`` are one group and the report can
say that the data's own split puts it in both; the rest of the folder stays in the key, so two
videos called ``001`` in two class folders are two groups. Roboflow's export suffix
(``_jpg.rf.<hash>``) is taken off a stem first.

``auto`` takes a frame naming only where it can be a split by video: at least two groups per
class. Below that (Pascal VOC's ``2008_000123`` would be five "videos" for 20 classes) the images
stay one group each and the report and terminal say which naming was set aside and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from pawpipe.common.contracts.ingest_tables import split_alias_expr

RULES = ("auto", "source", "folder", "stem:REGEX", "column:NAME", "none")
# (name as the report says it, stem pattern whose first group is the video); the folder naming is
# ``<video>/<N>.jpg``: a stem of digits only, the video its folder.
FRAME_NAMINGS = (
    ("<video>_frame<N>", r"^(.+?)[_\-. ]*frame[_\-. ]*\d+$"),
    ("<video>/<N>", None),
    ("<video>_<N>", r"^(.+?)[_\-]\d+$"),
)
_ROBOFLOW_SUFFIX = r"_(?:jpe?g|png|bmp|webp|tiff?)\.rf\.[0-9a-f]+$"
_DIGITS = r"^\d+$"
# A share of names matching a frame naming that makes ungrouped images worth a warning.
_LOOKS_LIKE_FRAMES = 0.5


@dataclass(frozen=True)
class GroupBy:
    """A parsed ``--group-by`` value."""

    kind: str  # auto | source | folder | stem | column | none
    arg: str | None = None  # the regex of ``stem``, the column of ``column``

    @classmethod
    def parse(cls, text: str) -> GroupBy:
        kind, sep, arg = text.partition(":")
        if kind in ("stem", "column") and sep and arg:
            if kind == "stem":
                try:
                    re.compile(arg)
                except re.error as exc:
                    raise ValueError(
                        f"--group-by {text}: expected a regular expression after 'stem:', got an error: {exc}"
                    ) from None
            return cls(kind, arg)
        if not sep and kind in ("auto", "source", "folder", "none"):
            return cls(kind)
        raise ValueError(f"--group-by: expected one of {', '.join(RULES)}, got {text!r}")


@dataclass(frozen=True)
class Grouping:
    """What grouping did: the frame with ``group_id`` set, and the words and counts for the report."""

    frame: pl.DataFrame
    rule: str  # the rule that set the groups, as the report says it
    images: int
    groups: int
    warning: str | None  # one line when images stay ungrouped but their names look like video frames

    def summary(self) -> dict:
        return {"rule": self.rule, "images": self.images, "groups": self.groups, "warning": self.warning}


def _folder(path: pl.Expr) -> pl.Expr:
    """The image's folder without the folder names that name a split (see the module docstring)."""
    parts = path.str.split("/")
    parts = parts.list.slice(0, parts.list.len() - 1)
    return parts.list.eval(pl.element().filter(split_alias_expr(pl.element()).is_null())).list.join("/")


def _named_folder(path: pl.Expr) -> pl.Expr:
    """``_folder``, null where nothing but split names (or no folder) is left."""
    folder = _folder(path)
    return pl.when(folder != "").then(folder)


def _stem(path: pl.Expr) -> pl.Expr:
    name = path.str.split("/").list.last()
    return name.str.replace(r"\.[^.]*$", "").str.replace(_ROBOFLOW_SUFFIX, "")


def _keyed(folder: pl.Expr, video: pl.Expr) -> pl.Expr:
    return pl.when(folder == "").then(video).otherwise(pl.concat_str(folder, pl.lit("/"), video))


def _naming(path: pl.Expr, pattern: str | None) -> pl.Expr:
    """The group a frame naming gives each image path (null where the name does not match)."""
    if pattern is None:  # <video>/<N>: digits only, in a folder that is not only split names
        return pl.when(_stem(path).str.contains(_DIGITS)).then(_named_folder(path))
    return _keyed(_folder(path), _stem(path).str.extract(pattern, 1))


def _regex(path: pl.Expr, pattern: str) -> pl.Expr:
    stem = _stem(path)
    groups = re.compile(pattern).groups
    video = stem.str.extract(pattern, 1) if groups else stem.str.extract(f"({pattern})", 1)
    return _keyed(_folder(path), video)


def apply_grouping(frame: pl.DataFrame, rule: GroupBy) -> Grouping:
    """``frame`` (records with ``image_path``, ``group_id`` as the source set it, ``label``) with
    ``group_id`` set by ``rule``; rows without an image path keep the source's value."""
    path = pl.col("image_path")
    named = frame.filter(path.is_not_null())
    images = named.get_column("image_path").n_unique()
    source_grouped = named.filter(pl.col("group_id") != path).height > 0
    if rule.kind == "auto" and not source_grouped:
        found, how, warning = _auto(named)
        if found is None:
            return _result(frame, path, "one group per image (no video naming found)", images, warning)
        return _result(frame, pl.coalesce(found, path), f"frame naming {how}", images, None)
    if rule.kind in ("auto", "source"):
        how = "the source's own groups" if source_grouped else "the source's own groups (none: one per image)"
        return _result(frame, pl.col("group_id"), how, images, None)
    if rule.kind == "none":
        return _result(frame, path, "none: one group per image", images, None)
    if rule.kind == "folder":
        return _result(frame, pl.coalesce(_named_folder(path), path), "folder", images, None)
    if rule.kind == "column":
        if rule.arg not in frame.columns:
            extra = [c for c in frame.columns if c not in ("parse_error", "parse_rule")]
            raise ValueError(f"--group-by column:{rule.arg}: expected a column of the annotations, got columns {extra}")
        value = pl.col(rule.arg).cast(pl.String)
        return _result(
            frame,
            pl.coalesce(pl.when(value.str.strip_chars() != "").then(value), path),
            f"column {rule.arg}",
            images,
            None,
        )
    matched, warning = _regex(path, rule.arg), None
    misses = named.filter(matched.is_null()).get_column("image_path").n_unique()
    if misses:
        warning = f"--group-by stem:{rule.arg}: {misses} of {images} image names do not match; each stays its own group"
    return _result(frame, pl.coalesce(matched, path), f"stem {rule.arg}", images, warning)


def _auto(named: pl.DataFrame) -> tuple[pl.Expr | None, str, str | None]:
    """The first frame naming that every name matches and that gives at least two groups per class."""
    path = pl.col("image_path")
    paths = named.select("image_path", "label").unique("image_path")
    classes = max(paths.get_column("label").n_unique(), 1)
    best_share, set_aside = 0.0, None
    for name, pattern in FRAME_NAMINGS:
        groups = paths.select(g=_naming(path, pattern)).get_column("g")
        share = 1 - groups.null_count() / max(paths.height, 1)
        if share == 1.0:
            n = groups.n_unique()
            if n >= 2 * classes:
                return _naming(path, pattern), name, None
            set_aside = set_aside or (name, n)
        best_share = max(best_share, share)
    if set_aside is not None:
        name, n = set_aside
        return (
            None,
            "",
            (
                f"image names look like video frames ({name}) but would make {n} groups for {classes} classes (a split "
                "by video needs two per class); kept one group per image: pass --group-by folder | stem:REGEX | none "
                "to choose"
            ),
        )
    if paths.height and best_share >= _LOOKS_LIKE_FRAMES:
        return (
            None,
            "",
            (
                f"{best_share:.0%} of the image names look like video frames, not all: kept one group per image, so "
                "frames of one video can land in train and val; pass --group-by folder | stem:REGEX to group them"
            ),
        )
    return None, "", None


def _result(frame: pl.DataFrame, group: pl.Expr, rule: str, images: int, warning: str | None) -> Grouping:
    path = pl.col("image_path")
    out = frame.with_columns(group_id=pl.when(path.is_not_null()).then(group).otherwise(pl.col("group_id")))
    groups = out.filter(path.is_not_null()).get_column("group_id").n_unique()
    return Grouping(frame=out, rule=rule, images=images, groups=groups, warning=warning)
