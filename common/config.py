"""Loading a stage's pydantic config: an optional TOML file, then the command line's values on top."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path | None, overrides: dict[str, Any], model: type[M]) -> M:
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
