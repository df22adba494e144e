"""The batch jobs on a real local Ray cluster (``ray start --head``, 2 CPUs, one per module):
outputs byte-identical to the local executor, a worker killed with SIGKILL mid-task, a driver
killed mid-build and rerun.

A sample's image is swapped for a named pipe (FIFO) to catch a task mid-flight without any
hook in the code: the Ray worker that builds its shard blocks reading it, the test finds that
process by the open file, and then kills it or feeds it the image's real bytes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("ray", reason="the Ray tests need the extra: pip install 'pawpipe[ray]'")

# the local cluster helper, shared with the benches (bench/ is no package)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from ray_local import command_line, local_cluster  # noqa: E402

from pawpipe.shards.build import build  # noqa: E402
from pawpipe.shards.config import ShardConfig  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--size", "64", "--max-samples", "4", "--quiet"]
INGEST_OUTPUTS = ("manifest.parquet", "quarantine.parquet", "orphans.parquet", "labels.json", "report.html")
PER_RUN = ("executor", "ray_address", "workers", "out")  # clean_config.json records how and where the run ran


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(num_cpus=2) as running:
        yield running


@pytest.fixture(scope="module")
def reference(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A private copy of the demo images, and its shards built in-process (the local executor)."""
    base = tmp_path_factory.mktemp("ray_ref")
    root = base / "raw"
    shutil.copytree(json.loads((demo_clean / "clean_config.json").read_text())["root"], root)
    out = base / "local"
    build(ShardConfig(manifest_dir=demo_clean, out=out, root=root, size=64, max_samples=4, workers=1, quiet=True))
    return root, out, _tree(out)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every output file by relative path; a partition's lock file belongs to the run, not the build."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


class Command:
    """``python -m module args`` in its own session, its output in files (a pipe nobody reads could stall it)."""

    def __init__(self, module: str, args: list[str], cwd: Path) -> None:
        self.logs = [cwd / f"{module}.{name}.log" for name in ("stdout", "stderr")]
        with open(self.logs[0], "wb") as out, open(self.logs[1], "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"pawpipe.{module}", *args],
                cwd=cwd,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """Exit status, stdout and stderr, once it has ended."""
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, *(log.read_text(errors="replace") for log in self.logs)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _shards_on_ray(cluster, demo_clean: Path, root: Path, out: str, cwd: Path) -> Command:
    args = [
        "build",
        str(demo_clean),
        "--out",
        out,
        "--root",
        str(root),
        "--executor",
        "ray",
        "--ray-address",
        cluster.address,
    ]
    return Command("shards", args + OPTIONS, cwd)


@contextlib.contextmanager
def _fifo_instead_of_an_image(demo_clean: Path, root: Path, reference_out: Path):
    """The image of the first sample of the first train shard becomes a named pipe for the ``with``
    block; yields (its path, its real bytes, a list for the test's open ends of it)."""
    first = pl.read_parquet(reference_out / "train" / "samples.parquet")["sample_id"][0]
    manifest = pl.read_parquet(demo_clean / "manifest.parquet")
    path = root / manifest.filter(pl.col("sample_id") == first)["image_path"][0]
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    fds: list[int] = []
    try:
        yield path, data, fds
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        path.unlink()
        path.write_bytes(data)


def _wait_for_reader(fifo: Path, command: Command, fds: list[int], timeout: float = 120.0) -> tuple[int, int]:
    """Open ``fifo`` for writing once a process reads it; returns (write end, reader pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if command.proc.poll() is not None:
            raise AssertionError(f"the command ended ({command.finish()}) before reading {fifo}")
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.01)
            continue
        fds.append(fd)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd, _holder(fifo)
    raise AssertionError(f"no process opened {fifo} within {timeout} s")


def _holder(path: Path, timeout: float = 30.0) -> int:
    """The live process that has ``path`` open besides this one: the reader, once its open() returned."""
    target, deadline = str(path), time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid() or not _alive(int(entry.name)):
                continue
            try:
                if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"nobody holds {path} open")


def _alive(pid: int) -> bool:
    """Running, not exiting: a killed process loses its command line before its open files."""
    return bool(command_line(pid))


def _wait_gone(pid: int, timeout: float = 60.0) -> None:
    """Until ``pid`` has exited (or is a zombie, whose files are closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} ({command_line(pid)}) still alive after {timeout} s")


def test_ingest_clean_on_ray_writes_the_local_bytes(cluster, demo_raw: Path, demo_clean: Path, tmp_path: Path) -> None:
    args = ["clean", str(demo_raw), "--out", "ray", "--executor", "ray", "--ray-address", cluster.address, "--quiet"]
    status, _, stderr = Command("ingest", args, tmp_path).finish()
    assert status == 0, stderr
    out = tmp_path / "ray"
    for name in INGEST_OUTPUTS:
        assert (out / name).read_bytes() == (demo_clean / name).read_bytes(), name
    strip = lambda path, keys: {k: v for k, v in json.loads(path.read_text()).items() if k not in keys}  # noqa: E731
    assert strip(out / "report.json", ("source_notes",)) == strip(demo_clean / "report.json", ("source_notes",))
    ran = json.loads((out / "clean_config.json").read_text())
    assert (ran["executor"], ran["ray_address"]) == ("ray", cluster.address)
    assert strip(out / "clean_config.json", PER_RUN) == strip(demo_clean / "clean_config.json", PER_RUN)


def test_shards_build_on_ray_survives_a_worker_killed_mid_task(
    cluster, demo_clean: Path, reference, tmp_path: Path
) -> None:
    root, reference_out, expected = reference
    with _fifo_instead_of_an_image(demo_clean, root, reference_out) as (fifo, data, fds):
        command = _shards_on_ray(
            cluster, demo_clean, root, "ray", tmp_path
        )  # a relative --out: workers have another cwd
        try:
            fd, victim = _wait_for_reader(fifo, command, fds)
            assert command_line(victim) == "ray::build_shard"  # a Ray worker, mid-task
            os.kill(victim, signal.SIGKILL)
            _wait_gone(victim)
            os.close(fd)
            fd, retry = _wait_for_reader(fifo, command, fds)  # Ray runs the task again
            assert retry != victim and command_line(retry) == "ray::build_shard"
            os.write(fd, data)
            os.close(fd)
            status, _, stderr = command.finish()
        finally:
            command.kill()
    assert status == 0, stderr
    assert _tree(tmp_path / "ray") == expected


def test_shards_build_driver_killed_on_ray_then_rerun_resumes(
    cluster, demo_clean: Path, reference, tmp_path: Path
) -> None:
    root, reference_out, expected = reference
    out = tmp_path / "ray"
    with _fifo_instead_of_an_image(demo_clean, root, reference_out) as (fifo, data, fds):
        command = _shards_on_ray(cluster, demo_clean, root, str(out), tmp_path)
        try:
            _, blocked = _wait_for_reader(fifo, command, fds)
            deadline = time.monotonic() + 120
            while not list(out.glob("_journal/*/*.json")) and time.monotonic() < deadline:
                time.sleep(0.01)  # the other CPU finishes shards queued behind the blocked one
        finally:
            command.kill()  # the driver: the cluster stays up
        _wait_gone(blocked)  # Ray stops the tasks of a job whose driver died
        deadline = time.monotonic() + 60
        while cluster.workers("build_shard") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cluster.workers("build_shard")
    done = len(list(out.glob("_journal/*/*.json")))
    assert 0 < done < len(list(reference_out.glob("_journal/*/*.json"))) and not (out / "dataset.json").exists()
    rerun = _shards_on_ray(cluster, demo_clean, root, str(out), tmp_path)
    status, stdout, stderr = rerun.finish()
    assert status == 0, stderr
    assert f"{done} already finished" in stdout
    assert _tree(out) == expected
