"""Atomic writes on a full disk: the error names the file asked for, whoever wrote the bytes."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from _tiny_disk import mount_tiny_disk  # noqa: E402

from pawpipe.common.atomic import atomic_path, write_bytes  # noqa: E402


@pytest.fixture
def tiny_disk(tmp_path: Path):
    yield from mount_tiny_disk(tmp_path)


def test_a_full_disk_names_the_file(tiny_disk: Path) -> None:
    with pytest.raises(OSError) as info:
        write_bytes(tiny_disk / "big.bin", b"x" * (1 << 20))
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tiny_disk / "big.bin"))
    with pytest.raises(OSError) as info:  # torch.save says RuntimeError("... file write failed")
        with atomic_path(tiny_disk / "last.pt") as tmp:
            torch.save({"w": torch.zeros(1 << 18)}, tmp)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tiny_disk / "last.pt"))
    assert list(tiny_disk.iterdir()) == []  # no temporary file left behind
