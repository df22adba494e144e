"""``train run`` on a disk that fills up: the error names the checkpoint that could not be written, and
``train status`` says the run failed with that error (not that its process was killed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from _tiny_disk import mount_tiny_disk  # noqa: E402

from pawpipe.train.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_disk(tmp_path: Path):
    yield from mount_tiny_disk(tmp_path, size="12m")  # the run's records fit; a ~50 MB checkpoint does not


def test_a_full_disk_names_the_checkpoint_and_the_status_says_failed(
    demo_shards: Path, tiny_disk: Path, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[data]\nimage_size = 32\nbatch_size = 4\nworkers = 1\n[schedule]\nepochs = 1\nwarmup_steps = 1\n"
        '[compute]\ndevice = "cpu"\ncpu_threads = 1\n[record]\nprogress = false\n'
    )
    run = tiny_disk / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pawpipe.train",
            "run",
            "--config",
            str(config),
            "--data",
            str(demo_shards),
            "--out",
            str(run),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    best = run / "checkpoints" / "best.pt"
    assert done.returncode == 4, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == (
        f"train run: error: {best}: No space left on device (free some space); rerun the same command to resume"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == []  # no temporary file left holding the space
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["error"]) == ("failed", f"OSError: [Errno 28] No space left on device: '{best}'")
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "state      failed"
    assert f"error      OSError: [Errno 28] No space left on device: '{best}'" in lines
