import io
import logging

import pytest

from pawpipe.train.fit.logs import HumanFormatter, KeyValueFormatter, setup_logging


def _record(msg: str, *args, **kv) -> logging.LogRecord:
    record = logging.LogRecord("train.run", logging.INFO, __file__, 1, msg, args, None)
    record.kv = kv
    return record


def test_structured_lines_quote_what_needs_it_and_carry_fields():
    line = KeyValueFormatter().format(
        _record("eval at step %d: loss %.2f", 120, 0.7125, step=120, img_per_s=612.41234567, note='say "hi"', eta=None)
    )
    assert line.startswith("ts=") and " level=info logger=train.run pid=" in line
    assert 'msg="eval at step 120: loss 0.71"' in line and "step=120 img_per_s=612.412346" in line
    assert 'note="say \\"hi\\""' in line and "eta=" not in line  # JSON-quoted; None values left out


def test_the_format_follows_the_stream(monkeypatch: pytest.MonkeyPatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh process (pytest's capture handlers aside)
    plain = io.StringIO()
    setup_logging(stream=plain)
    logging.getLogger("train.test").info("hello %s", "world", extra={"kv": {"step": 3}})
    assert "level=info logger=train.test" in plain.getvalue() and 'msg="hello world" step=3' in plain.getvalue()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    setup_logging(stream=tty)  # replaces its own handler
    logging.getLogger("train.test").info("hello %s", "world")
    assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, HumanFormatter)
    assert tty.getvalue().rstrip().endswith("INFO    hello world") and "level=" not in tty.getvalue()
