"""Signals a long run obeys: stop cleanly, stop now, checkpoint now.

* SIGTERM / SIGINT: finish the current step, write a checkpoint, exit 0 (``stop_requested``).
* A second SIGINT: exit at once (status 130); the last complete checkpoint is intact because
  every checkpoint is written to a temporary file and renamed.
* SIGUSR1: write a checkpoint at the next step boundary and go on (``checkpoint_requested``).

``forward`` (the daemon's hook) is called with each signal number first, e.g. to pass it on to a
child run. Under torchrun every worker runs in its own session, so a Ctrl-C reaches a worker once,
forwarded by the agent; give the agent time for the final checkpoint with ``--shutdown-timeout``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable


class RunSignals:
    def __init__(self, *, forward: Callable[[int], None] | None = None) -> None:
        self.forward = forward
        self.stop_requested: str | None = None  # the signal's name once a stop was asked for
        self._checkpoint = threading.Event()
        self._previous: dict[int, object] = {}

    def install(self) -> RunSignals:
        """Install the handlers (main thread only); ``restore`` puts the previous ones back."""
        for sig, handler in (
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
            (signal.SIGUSR1, self._on_usr1),
        ):
            self._previous[sig] = signal.signal(sig, handler)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def take_checkpoint_request(self) -> bool:
        """True once per SIGUSR1 received since the last call."""
        if self._checkpoint.is_set():
            self._checkpoint.clear()
            return True
        return False

    def _on_stop(self, signum: int, frame: object) -> None:
        if self.forward is not None:
            self.forward(signum)
        name = signal.Signals(signum).name
        if self.stop_requested is not None and signum == signal.SIGINT:
            _say("second SIGINT: exiting now; the last complete checkpoint is intact")
            os._exit(130)
        self.stop_requested = self.stop_requested or name
        _say(f"{name}: finishing the current step, then checkpoint and exit (SIGINT again to exit now)")

    def _on_usr1(self, signum: int, frame: object) -> None:
        if self.forward is not None:
            self.forward(signum)
        self._checkpoint.set()


def _say(message: str) -> None:
    """Tell stderr, if anyone still reads it: a run whose daemon was killed gets SIGTERM with its
    stderr pipe gone, and a write error raised in a signal handler would abort the final checkpoint."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass
