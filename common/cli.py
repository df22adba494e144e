"""What every command line does alike: exit codes, one-line errors, Ctrl-C, ``--version``, no abbreviations.

Exit codes of ``ingest``, ``shards`` and ``train``:

====  =========================================================================
0     done
1     the job ran and failed (a mismatch found, a non-finite loss, a locked folder)
2     bad input or usage: a flag, a config field, a folder of the wrong kind
3     aborted by a threshold (too many records quarantined, too many samples failed)
4     the system refused: disk full, permission denied, a read or write error
70    an internal error (a bug: ``PAWPIPE_TRACEBACK=1`` shows the traceback)
130   interrupted (Ctrl-C)
====  =========================================================================
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Callable
from importlib import metadata

from pawpipe.common.config import ConfigError

OK, FAILED, USAGE, ABORTED, SYSTEM, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 4, 70, 130
RESUME = "rerun the same command to resume"
EXIT_CODES = """exit codes: 0 done, 1 failed, 2 bad input or usage, 3 aborted by a threshold,
4 disk full / permission / I/O error, 70 internal error, 130 interrupted (Ctrl-C)"""


def version() -> str:
    try:
        return metadata.version("pawpipe")
    except metadata.PackageNotFoundError:
        return "unknown"


def finish_parser(parser: argparse.ArgumentParser, *, examples: str) -> argparse.ArgumentParser:
    """``--version``, examples and the exit codes in ``--help``, and no prefix matching (``--epoch`` is
    not ``--epochs``) on the parser and every subcommand."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (pawpipe) {version()}")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"examples:\n{examples.rstrip()}\n\n{EXIT_CODES}"
    for p in _all_parsers(parser):
        p.allow_abbrev = False
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _all_parsers(sub)
    return found


def run(
    prog: str, fn: Callable[[], int], *, resumable: bool = False, usage_errors: tuple[type[BaseException], ...] = ()
) -> int:
    """Call ``fn`` and turn whatever escapes it into one line on stderr (a ``ConfigError``: one per
    invalid field) and an exit code (above)."""
    hint = f"; {RESUME}" if resumable else ""
    try:
        return fn()
    except KeyboardInterrupt:
        _say(f"\n{prog}: interrupted{hint}")  # on a line of its own, after a progress bar cut short
        return INTERRUPTED
    except BrokenPipeError:  # the reader went away (`... | head`): not an error of ours
        _quiet_stdout()
        return OK
    except (ValueError, *usage_errors) as exc:
        for line in _lines(exc):
            _say(f"{prog}: error: {line}")
        return USAGE
    except OSError as exc:
        _say(f"{prog}: error: {describe_os_error(exc)}{hint}")
        return SYSTEM
    except RuntimeError as exc:
        _say(f"{prog}: error: {_text(exc)}")
        return FAILED
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("PAWPIPE_TRACEBACK"):
            traceback.print_exc()
        _say(f"{prog}: internal error: {type(exc).__name__}: {_text(exc)} (PAWPIPE_TRACEBACK=1 shows where)")
        return INTERNAL


def describe_os_error(exc: OSError) -> str:
    """``PATH: No space left on device``: the path the system refused, and why, on one line."""
    reason = exc.strerror or _text(exc)
    if exc.errno == errno.ENOSPC:
        reason = "No space left on device (free some space)"
    where = exc.filename if exc.filename is not None else None
    return f"{os.fsdecode(where)}: {reason}" if where is not None else reason


def _lines(exc: BaseException) -> list[str]:
    """A ``ConfigError``'s problems, one line each (a config with three bad fields is three errors);
    any other error as one line."""
    if isinstance(exc, ConfigError):
        return [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()] or [_text(exc)]
    return [_text(exc)]


def _text(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
