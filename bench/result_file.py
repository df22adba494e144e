"""Saved bench results: every bench run writes one JSON that anyone can rerun and cite.

``bench/results/<bench>-<date>-<commit>[-<setting>...]-seed<S>.json`` holds the exact command, the
commit the code was loaded from (``-dirty`` when tracked files differed, and which ones), the machine
(CPU model, cores, platform, Python, and the library versions a bench names), the seeds, every arm's
raw figures and the ``RATIO`` lines. The README and
``docs/`` cite these files for every measured figure (``tests/docs/test_docs_results.py`` fails on a
citation whose file does not exist).

    from result_file import Recorder              # bench/ is on sys.path when a bench runs
    rec = Recorder("noise", setting=["video"], seed=args.seed, args=vars(args))
    ...
    rec.ratio("noise_f1", 0.8852)                 # printed as ``RATIO noise_f1 0.8852`` by finish()
    rec.finish(arms={"noisy": {...}, ...})        # writes the file, prints its path and the RATIO lines last
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=BENCH, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked release): say so
        return ""


def code_version() -> str:
    """The commit the code was loaded from, with ``-dirty`` when tracked files differ from it (taken when
    the bench starts: a commit made while it runs is not its code)."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if dirty else commit


def uncommitted() -> list[str]:
    """The tracked files that differ from the commit: what ``-dirty`` stands for."""
    return _git("diff", "--name-only", "HEAD").splitlines()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux: the platform's own word
        pass
    return platform.processor() or platform.machine()


def machine(**versions: str) -> dict:
    """The CPU, cores, platform and Python, plus the library versions a bench's figures depend on."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how shared the machine was (the figures of a busy one are slower)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # no load average on this platform
        return None


class Recorder:
    """One bench run's record: created when the run starts (the commit is taken then), saved by ``finish``.

    ``setting`` tags the file name (two settings run from one commit on one day must not share a file);
    ``versions`` go into ``machine``; ``out``, when given, is the file written instead of the one named above.
    """

    def __init__(
        self,
        bench: str,
        *,
        seed: int | list[int] | None = None,
        setting: list[str] | tuple[str, ...] = (),
        args: dict | None = None,
        quick: bool = False,
        versions: dict[str, str] | None = None,
        out: Path | None = None,
    ) -> None:
        self.bench = bench
        self.commit = code_version()
        self.out = out
        self.date = datetime.date.today().isoformat()
        self.started = datetime.datetime.now()
        self.seeds = seed if isinstance(seed, list) else ([] if seed is None else [seed])
        self.setting = [*setting, *(["quick"] if quick else [])]
        self.ratios: dict[str, float] = {}
        self.written: Path | None = None  # the file ``finish`` wrote
        self.doc = {
            "bench": bench,
            "date": self.date,
            "commit": self.commit,
            "uncommitted_changes": uncommitted(),
            "command": shlex.join(sys.orig_argv),
            "machine": machine(**(versions or {})),
            "load_average_at_start": _load(),
            "seeds": self.seeds,
            "setting": self.setting,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in (args or {}).items()},
        }

    def ratio(self, name: str, value: float) -> None:
        self.ratios[name] = round(float(value), 4)

    def path(self) -> Path:
        if self.out is not None:
            return self.out
        setting = "".join(f"-{s.replace('_', '-')}" for s in self.setting)
        seeds = "-seed" + "-".join(str(s) for s in self.seeds) if self.seeds else ""
        path = RESULTS / f"{self.bench}-{self.date}-{self.commit}{setting}{seeds}.json"
        if path.exists():  # a rerun of the same setting keeps the earlier file
            path = path.with_name(f"{path.stem}-{datetime.datetime.now().strftime('%H%M%S')}.json")
        return path

    def finish(self, **figures: object) -> Path:
        """Write the record (figures as given, the RATIO lines, the seconds it took), print where, then
        the RATIO lines: the very last lines of the bench's output."""
        seconds = (datetime.datetime.now() - self.started).total_seconds()
        doc = {**self.doc, "seconds": round(seconds, 1), **figures, "ratios": self.ratios}
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        self.written = path
        print(f"saved {path.relative_to(BENCH.parent) if path.is_relative_to(BENCH.parent) else path}")
        for name, value in self.ratios.items():
            print(f"RATIO {name} {value:.4f}")
        return path
