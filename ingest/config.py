"""Configuration of ``ingest clean``: a pydantic model from TOML, with CLI overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path
    out: Path
    format: Literal["auto", "aihub", "coco", "voc", "yolo", "table"] = "auto"
    label: str = "inspect.emotion"  # aihub: which field is the class
    annotations: str | None = None  # coco/table: the annotation file under root
    labels: tuple[str, ...] | None = None  # the vocabulary; default: the source's own, else inferred
    rules: Path | None = None  # rule set TOML; default validation_rules/default.toml
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # used when the dataset has no split of its own
    seed: int = 0
    workers: int | None = Field(None, ge=1)
    max_quarantine_fraction: float = Field(0.5, gt=0.0, le=1.0)  # abort above this share
    effective_number_beta: float = Field(0.999, gt=0.0, lt=1.0)
    quiet: bool = False


def load_config(path: str | Path | None, overrides: dict[str, Any], model: type[BaseModel] = CleanConfig) -> BaseModel:
    """Build a config from an optional TOML file, then CLI values that were given (not None)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config {path}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise ValueError(f"config {path or '(command line)'}: field '{where}': {first['msg']}") from None
