"""Loading a stage's pydantic config: read a file, put overrides on top, validate.

The building blocks every stage's loader composes:

* ``read_config_file(path)``: a TOML file (or JSON, by the ``.json`` suffix) as a dict;
* ``apply_overrides(doc, overrides)``: dotted keys (``optim.lr``) into the nested sections;
* ``validate(model, doc, source=..., overridden=...)``: the pydantic model, with every error listed,
  one per line, each naming where its value came from: the file, or ``(command line)``.

Each raises ``ConfigError``. ``load_config`` is the ingest and shards loader built from them;
``train.config.load_train_config`` composes the same blocks.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)

COMMAND_LINE = "(command line)"  # the source of a value from a flag or ``--set KEY=VALUE``


class ConfigError(ValueError):
    """A config file or override that does not parse or validate.

    The message has one line per problem (the command lines print each on a line of its own).
    ``reason`` is a file's parse error without the file's name; ``details`` are pydantic's
    validation errors (empty when the config did not get as far as validation).
    """

    def __init__(self, message: str, *, reason: str = "", details: Iterable[ErrorDetails] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = list(details)


def read_config_file(path: str | Path, *, allow_json: bool = True) -> Any:
    """The parsed document of a TOML file, or of a JSON one (a run's resolved ``config.json``).

    JSON is read when ``allow_json`` and the name ends in ``.json``; anything else is TOML.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if allow_json and path.suffix == ".json" else tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}", reason=str(exc)) from None


def apply_overrides(doc: dict[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Set each dotted key of ``overrides`` in ``doc``, in place, making sections as needed; the keys set.

    Later keys win; ``None`` values are skipped (a CLI flag not given leaves the file's value).
    Example: ``{"optim.lr": 1e-3, "seed": None}`` sets ``doc["optim"]["lr"]`` and returns
    ``["optim.lr"]``, what ``validate`` takes as ``overridden``.
    """
    applied: list[str] = []
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, name = key.split(".")
        node = doc
        for part in sections:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[name] = value
        applied.append(key)
    return applied


def validate(model: type[M], doc: Any, *, source: str, overridden: Iterable[str] = ()) -> M:
    """``model`` from ``doc``; on failure a ``ConfigError`` listing every error, one line each.

    A line reads ``SOURCE: FIELD: MESSAGE (got VALUE)``, FIELD dotted (``optim.lr``); an error of the
    whole model (a model validator's) reads ``SOURCE: (top level): MESSAGE``. SOURCE is where the
    value came from: ``source`` (the file ``doc`` was read from, or ``(command line)`` without one),
    ``(command line)`` for a field whose dotted path is one of the ``overridden`` keys or lies under
    one (``optim.lr`` under ``--set optim={lr=-1}``), and ``SOURCE + (command line)`` for a section, or
    the whole model, that holds an overridden key and so values of both. Example, ``train run --config
    run.toml --lr -1``: ``(command line): optim.lr: Input should be greater than 0 (got -1.0)``.
    """
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()
        keys = [tuple(key.split(".")) for key in overridden]
        lines = (_error_line(_source_of(error["loc"], source, keys), error) for error in errors)
        raise ConfigError("\n".join(lines), details=errors) from None


def _source_of(loc: tuple[int | str, ...], source: str, overridden: list[tuple[str, ...]]) -> str:
    path = tuple(str(part) for part in loc)
    if any(path[: len(key)] == key for key in overridden):  # the override's value, or inside it
        return COMMAND_LINE
    if source != COMMAND_LINE and any(key[: len(path)] == path for key in overridden):  # holds one
        return f"{source} + {COMMAND_LINE}"
    return source


def _error_line(source: str, error: ErrorDetails) -> str:
    if not error["loc"]:  # its input is the whole document: not worth repeating
        return f"{source}: (top level): {error['msg']}"
    return f"{source}: {'.'.join(str(p) for p in error['loc'])}: {error['msg']} (got {error.get('input')!r})"


def load_config(path: str | Path | None, overrides: dict[str, Any], model: type[M]) -> M:
    """Build a config from an optional TOML file, then CLI values that were given (not None).

    An invalid config raises ``validate``'s ``ConfigError``, every invalid field on a line of its own
    naming where its value came from: PATH, or ``(command line)`` for a flag's value (and for every
    field without a file). A file that does not read raises the ``ValueError`` ``config PATH: REASON``
    ingest and shards have always printed.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = read_config_file(path, allow_json=False)
        except ConfigError as exc:
            raise ValueError(f"config {path}: {exc.reason}") from None
    overridden = apply_overrides(values, overrides)
    return validate(model, values, source=str(path) if path is not None else COMMAND_LINE, overridden=overridden)
