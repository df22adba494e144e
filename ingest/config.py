"""Configuration of ``ingest clean``: a pydantic model from TOML, with CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from pawpipe.common.executor import ExecutorOptions
from pawpipe.ingest.sources import AUTO, FORMAT_CHOICES


class CleanConfig(ExecutorOptions):
    model_config = ConfigDict(extra="forbid")

    root: Path
    out: Path
    format: Literal[FORMAT_CHOICES] = AUTO  # a registered source (ingest.sources.FORMATS), or detect it
    label: str = "inspect.emotion"  # aihub: which field is the class
    annotations: str | None = None  # coco/table: the annotation file under root
    labels: tuple[str, ...] | None = None  # the vocabulary; default: the source's own, else inferred
    rules: Path | None = None  # rule set TOML; default validation_rules/default.toml
    allow_roots: tuple[
        Path, ...
    ] = ()  # folders outside root that symlinks under it may lead into (frames on another disk)
    suspects: Path | None = None  # a `train audit` folder: apply rule label.suspect (see validation_rules/suspect.py)
    # which images are one video (ingest.grouping.RULES): auto | source | folder | stem:REGEX | column:NAME | none
    group_by: str = "auto"
    resplit_by_group: bool = False  # ignore the data's own train/val folders: split grouped and stratified (test stays)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # used when the dataset has no split of its own
    seed: int = 0
    workers: int | None = Field(None, ge=1)
    max_quarantine_fraction: float = Field(0.5, gt=0.0, le=1.0)  # abort above this share
    effective_number_beta: float | None = Field(None, gt=0.0, lt=1.0)  # None: 1 - 1/n of the largest training class
    quiet: bool = False
    overwrite: bool = False  # replace an output folder another pawpipe tool wrote

    @field_validator("allow_roots")
    @classmethod
    def _existing_folders(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        for folder in value:
            if not folder.is_dir():
                raise ValueError(
                    f"{folder}: expected a folder to allow, got {'a file' if folder.exists() else 'nothing'}"
                )
        return tuple(folder.resolve() for folder in value)

    @field_validator("group_by")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        from pawpipe.ingest.grouping import GroupBy

        GroupBy.parse(value)
        return value
