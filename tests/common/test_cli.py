"""The three command lines as a user meets them, run as real processes: one line per error, the
documented exit codes, Ctrl-C, a closed pipe, a full disk, ``--version``, no abbreviations."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny_disk import mount_tiny_disk

from pawpipe.common import cli

REPO = Path(__file__).resolve().parents[2]


def _cmd(tool: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"pawpipe.{tool}", *map(str, args)]


def _run(tool: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(tool, *args), capture_output=True, text=True, cwd=REPO, timeout=300, **kw)


def _one_line(proc: subprocess.CompletedProcess, code: int, expected: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("tool", ["ingest", "shards", "train"])
def test_version_and_help_with_examples(tool: str) -> None:
    proc = _run(tool, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"{tool} (pawpipe) ")
    text = _run(tool, "--help").stdout
    assert "examples:" in text and "130 interrupted" in text


def test_no_prefix_matching() -> None:
    proc = _run("train", "run", "--epoch", "3", "--out", "nowhere")
    assert proc.returncode == cli.USAGE and "unrecognized arguments: --epoch 3" in proc.stderr


def test_usage_errors_are_one_line(demo_raw: Path, demo_clean: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules."bbox.sideways"]\n')
    _one_line(
        _run("ingest", "clean", demo_raw, "--out", tmp_path / "o", "--rules", rules),
        cli.USAGE,
        "ingest: error: rule set ",
    )
    assert "unknown rule id 'bbox.sideways'; valid ids: " in _run("ingest", "rules", "--rules", rules).stderr
    (tmp_path / "file").write_text("x")
    _one_line(
        _run("ingest", "clean", demo_raw, "--out", tmp_path / "file"),
        cli.USAGE,
        "file: expected an output folder, got a file",
    )
    _one_line(
        _run("shards", "build", demo_clean, "--out", tmp_path / "file"),
        cli.USAGE,
        "file: expected an output folder, got a file",
    )
    _one_line(_run("train", "daemon", "--queue", tmp_path / "file"), cli.USAGE, "expected a queue folder")
    _one_line(_run("train", "status", demo_clean), cli.USAGE, "this is an `ingest clean` output, not a run directory")


def test_rules_are_merged_and_listed(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules."bbox.out_of_bounds"]\nmax_clip_px = 4\n\n[rules."image.duplicate"]\nenabled = false\n')
    lines = {line.split()[0]: line.split()[1] for line in _run("ingest", "rules", "--rules", rules).stdout.splitlines()}
    assert (lines["bbox.out_of_bounds"], lines["bbox.negative"], lines["bbox.empty"], lines["image.duplicate"]) == (
        "clip",
        "clip",
        "drop",
        "off",
    )


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(
        json.dumps({"state": "finished", "pid": 1, "epoch": 3, "epochs": 3, "note": "x" * 200_000})
    )
    proc = subprocess.Popen(
        _cmd("train", "status", tmp_path, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    proc.stdout.close()  # like `| head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


def _interrupt(cmd: list[str], marker: str) -> subprocess.CompletedProcess:
    """Start ``cmd``, send SIGINT (Ctrl-C) once its stderr shows ``marker``, return what it said."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    seen = b""
    while marker.encode() not in seen:
        chunk = proc.stderr.read1(4096)
        assert chunk, seen.decode()
        seen += chunk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), (seen + err).decode())


def test_ctrl_c_is_one_line(demo_raw: Path, tmp_path: Path) -> None:
    proc = _interrupt(_cmd("ingest", "clean", demo_raw, "--out", tmp_path / "clean", "--workers", "1"), "parse labels")
    assert proc.returncode == cli.INTERRUPTED and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == "ingest: interrupted"
    assert not (tmp_path / "clean").exists()  # nothing half-written: the set is published whole or not at all


def test_ctrl_c_in_shards_build_says_how_to_resume(tmp_path: Path) -> None:
    from _fixtures_shards_cli import make_clean

    clean = make_clean(tmp_path)
    proc = _interrupt(_cmd("shards", "build", clean, "--out", tmp_path / "shards", "--workers", "1"), "shards build")
    assert proc.returncode == cli.INTERRUPTED and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == f"shards: interrupted; {cli.RESUME}"


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 96 KiB tmpfs: a real filesystem that fills up (needs root, as in CI)."""
    yield from mount_tiny_disk(tmp_path)


def test_disk_full_is_one_line_naming_the_path(demo_raw: Path, tiny_disk: Path) -> None:
    proc = _run("ingest", "clean", demo_raw, "--out", tiny_disk / "clean", "--workers", "1", "--quiet")
    _one_line(proc, cli.SYSTEM, "No space left on device")
    assert f"ingest: error: {tiny_disk}/" in proc.stderr
    assert not (tiny_disk / "clean").exists() and list(tiny_disk.iterdir()) == [tiny_disk / ".clean.lock"]


def test_disk_full_in_shards_build_names_the_output(tmp_path: Path, tiny_disk: Path) -> None:
    from _fixtures_shards_cli import make_clean

    clean = make_clean(tmp_path / "data")
    proc = _run("shards", "build", clean, "--out", tiny_disk / "shards", "--workers", "1", "--quiet")
    assert proc.returncode == cli.SYSTEM and "Traceback" not in proc.stderr
    last = proc.stderr.rstrip().splitlines()[
        -1
    ]  # (the decoder's own lines about the fixture's broken JPEGs come first)
    assert last == f"shards: error: {tiny_disk}/shards: No space left on device (free some space); {cli.RESUME}"


def _raise(exc: BaseException):
    def fn() -> int:
        raise exc

    return fn


def test_a_config_error_prints_one_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    from pawpipe.common.config import ConfigError

    assert (
        cli.run("tool", _raise(ConfigError("c.toml: seed: bad (got 'x')\nc.toml: optim.lr: too  small (got -1)")))
        == cli.USAGE
    )
    assert (
        capsys.readouterr().err
        == "tool: error: c.toml: seed: bad (got 'x')\ntool: error: c.toml: optim.lr: too small (got -1)\n"
    )
    assert cli.run("tool", _raise(ValueError("one\nproblem"))) == cli.USAGE  # any other error stays one line
    assert capsys.readouterr().err == "tool: error: one problem\n"
