"""The gate every label file passes before a source opens it, and names that survive Arrow.

A hostile dataset can hold a FIFO (opening it blocks forever), a symlink to a file outside
the root, a name that is not UTF-8 or ends in a newline, or a label file of gigabytes. The
gate looks at each file with ``lstat`` (never ``open``) and turns each of these into one
failure record under its rule id, so the source parses only the files it admits.

Names: ``os.walk`` on a ``str`` path returns undecodable bytes as lone surrogates
(``surrogateescape``); Arrow strings must be UTF-8, so such a name is shown with its bytes
escaped (``bad\\xff.json``) and never opened under that spelling.
"""

from __future__ import annotations

import json
import os
import re
import stat

import polars as pl

from pawpipe.common.images import resolve_under
from pawpipe.ingest.sources._common import Malformed, cannot_read

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_SHOWN = 200  # characters of a hostile value a message quotes


def shown(name: str) -> str:
    """``name`` as one line of valid UTF-8: undecodable bytes and control characters escaped.

    >>> shown("bad\\udcff.json\\n")
    'bad\\\\xff.json\\\\n'
    """
    if bad_name(name) is None:
        return name
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def bad_name(name: str) -> str | None:
    """Why a file name cannot be used as is (not UTF-8, a control character such as a newline), or None."""
    if name.isprintable():
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return "holds a control character" if _CONTROL.search(name) else None


class NotUnicode(ValueError):
    """A JSON string escape that decodes to no character (a lone surrogate, ``"\\ud800"``)."""


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class DuplicateKey(Malformed):
    """A JSON object naming one key twice: readers disagree on which value counts (Python's and msgspec's
    keep the last), so the file is ambiguous."""


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DuplicateKey(
            f"expected each key once per object, got {clip(twice)} twice (JSON readers keep the last: ambiguous)"
        )
    return doc


def loads_json(data: bytes, *, unique_keys: bool = False) -> object:
    """``json.loads``, refusing text Arrow cannot hold: a lone surrogate escape would stop the run later;
    with ``unique_keys``, refusing an object that names a key twice (``DuplicateKey``).

    The surrogate check walks the document only when the bytes hold a surrogate escape at all.
    """
    doc = json.loads(data, object_pairs_hook=_unique_pairs) if unique_keys else json.loads(data)
    if _SURROGATE_ESCAPE.search(data):
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotUnicode(
                f"text that is not valid Unicode ({exc.object[exc.start]!r}: a lone surrogate escape)"
            ) from None
    return doc


def may_repeat_keys(data: bytes, most: dict[str, int]) -> bool:
    """Whether ``data`` names a key of ``most`` more often than a document without a repeated key can
    (``{"annotations": 1}``): a byte count, so a well-formed file costs no second, strict parse."""
    return any(data.count(b'"' + key.encode() + b'"') > n for key, n in most.items())


def clip(value: object) -> str:
    """A value for a one-line message: its repr, cut to a bounded length."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


def walk(root: str | os.PathLike[str], under: str, unreadable: list[dict]):
    """``os.walk`` of ``root/under`` (sorted, ``(folder relative to root, names)`` pairs) that does not skip
    a folder it cannot list in silence, as ``os.walk`` does: each becomes a failure record in ``unreadable``
    naming the folder, so its files are accounted for (``with_refused`` adds them)."""
    root = os.fspath(root)

    def failed(exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError) and os.path.normpath(exc.filename or "") == os.path.normpath(
            os.path.join(root, under)
        ):
            return  # the folder is not there: nothing to read, nothing lost
        rel = os.path.relpath(exc.filename, root).replace(os.sep, "/") if exc.filename else under
        unreadable.append(
            {
                "source_file": shown(rel) + "/",
                "parse_error": f"{shown(rel)}/: cannot list the folder "
                f"({exc.strerror or exc}); the files in it were not read",
                "parse_rule": None,
            }
        )

    for folder, subdirs, names in os.walk(os.path.join(root, under), onerror=failed):
        subdirs.sort()
        yield os.path.relpath(folder, root).replace(os.sep, "/"), sorted(names)


def file_kind(st_mode: int) -> str:
    """What a file that is not a regular one is, in words ("a FIFO")."""
    return _KINDS.get(stat.S_IFMT(st_mode), "not a regular file")


def check_file(root: str, rel: str, *, max_bytes: int | None, allowed: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """Why the label file ``rel`` under ``root`` must not be opened, as (rule id, message), or None.

    Looks only at names and ``lstat``/``stat``; a symlink is followed only to see whether it
    stays under the root.
    """
    why = bad_name(rel)
    if why:
        return "path.bad_name", f"{shown(rel)}: the file name {why}; rename it"
    full = os.path.join(root, rel)
    try:
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            real = resolve_under(os.path.realpath(root), rel, allowed)
            if real is None:
                return (
                    "path.outside_root",
                    f"{rel}: expected a file under the dataset root, got a symlink that leaves it (--allow-root DIR "
                    "admits a folder)",
                )
            info = os.stat(real)
    except OSError as exc:
        return "annotation.malformed", cannot_read(rel, exc)
    if not stat.S_ISREG(info.st_mode):
        return "path.not_regular", f"{rel}: expected a regular file, got {file_kind(info.st_mode)}; never opened"
    if max_bytes is not None and info.st_size > max_bytes:
        return "annotation.too_large", f"{rel}: expected a label file of at most {max_bytes} bytes, got {info.st_size}"
    return None


def admit(
    root: str | os.PathLike[str], items: list, *, max_bytes: int | None, rel=None, allowed: tuple[str, ...] = ()
) -> tuple[list, list[dict]]:
    """The items a source may open, and one failure record (a dict of RECORDS columns) per refused file.

    ``items`` are label file paths, or jobs from which ``rel(item)`` gives the path; ``allowed``: the
    folders outside the root a symlink may lead into (``--allow-root``).
    """
    root = os.fspath(root)
    admitted, refused = [], []
    for item in items:
        path = item if rel is None else rel(item)
        verdict = check_file(root, path, max_bytes=max_bytes, allowed=allowed)
        if verdict is None:
            admitted.append(item)
        else:
            rule, message = verdict
            refused.append({"source_file": shown(path), "parse_error": message, "parse_rule": rule})
    return admitted, refused


def with_refused(records: pl.DataFrame, refused: list[dict], **columns: object) -> pl.DataFrame:
    """``records`` with one failure row per refused file appended (other columns null, or as given)."""
    if not refused:
        return records
    rows = pl.DataFrame(
        [{**columns, **row} for row in refused],
        schema={
            name: records.schema.get(name, pl.String) for name in [*columns, "source_file", "parse_error", "parse_rule"]
        },
    )
    return pl.concat([records, rows], how="diagonal_relaxed")
