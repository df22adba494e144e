"""A hand-off JSON file read through its pydantic model: one line that names the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, ValidationError, model_serializer

M = TypeVar("M", bound=BaseModel)


def read_json(path: Path, *, what: str) -> Any:
    """The parsed JSON of ``path``; a missing file raises ``FileNotFoundError``, any other failure a one-line
    ``ValueError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read {what}: {' '.join(str(exc).split())}") from None


def validate(path: Path, model: type[M], doc: Any, *, extra: Literal["ignore"] | None = None) -> M:
    """``doc`` as ``model``; a bad document raises ``ValueError("PATH: field.path: expected ..., got ...")``.

    Writers check against the model as declared (an undeclared field is an error); readers pass
    ``extra="ignore"`` to read a file of another version, whose fields they know still checked.
    """
    try:
        return model.model_validate(doc, extra=extra)
    except ValidationError as exc:
        raise ValueError(f"{path}: {first_problem(exc)}") from None


def first_problem(exc: ValidationError) -> str:
    """The first problem of a validation error as one line (``labels.2: expected a valid string, got 7``)."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    where = ".".join(str(part) for part in err["loc"]) or "the document"
    if err["type"] == "missing":
        line = f"{where}: expected a value, got none"
    elif err["type"] == "extra_forbidden":
        line = f"{where}: unknown field"
    else:
        expected = err["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        expected = re.split(r", (?:got|unable to) ", expected)[0]  # pydantic's own "got ..." is said below
        got = repr(err.get("input"))
        line = f"{where}: expected {expected}, got {got if len(got) <= 80 else got[:77] + '...'}"
    return line + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


class Section(BaseModel):
    """A part of a hand-off document whose unset (None) fields are left out when it is written back,
    so a section read from a file dumps to exactly what the file held."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {name: value for name, value in handler(self).items() if value is not None}
