"""DDP is one process on the global batch: exact checks with two real gloo ranks under torchrun.

The ranks run ``_ddp_worker.py`` once (module fixture); each test reads what they wrote. Where
the maths says two numbers are equal, they are compared to float32 rounding; nothing here
compares two stochastic procedures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig
from pawpipe.train.data.loader import ShardSet
from pawpipe.train.data.loader_dali import epoch_seed
from pawpipe.train.fit.device import rank_seed, resolve_sync_bn

sys.path.insert(0, str(Path(__file__).parent))
from _ddp_worker import gradient, make_trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ddp_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp_shards") / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=out, size=64, max_samples=8, workers=1, quiet=True))
    return out


@pytest.fixture(scope="module")
def ranks(ddp_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp_out")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(Path(__file__).parent / "_ddp_worker.py"),
        str(ddp_shards),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.slow
def test_all_reduced_gradient_equals_the_one_process_gradient(ranks: list[dict]) -> None:
    """Ranks hold [0, 0] and [1, 3] (different class-weight totals): the loss normalised by the
    global weight total makes DDP's averaged gradient the one-process gradient of all four."""
    one = gradient(make_trainer(freeze_bn=True, drop_rate=0.0), slice(0, 4))
    for rank in ranks:
        assert rank["grads"].keys() == one.keys()
        for name, want in one.items():
            torch.testing.assert_close(rank["grads"][name], want, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_parameters_are_identical_on_every_rank_after_every_step(ranks: list[dict]) -> None:
    """Dropout draws differ per rank, frozen groups thaw at step 2 (DDP re-wrapped): still one model."""
    first, second = ranks
    assert len(first["checksums"]) == len(second["checksums"]) == 5  # 22 samples: 11 per rank, batches of 2
    assert first["checksums"] == second["checksums"]
    assert len(set(first["checksums"])) == 5  # every update changed the weights
    assert first["frozen_at_end"] == second["frozen_at_end"] == 0


def planned_ids(shards: ShardSet, *, rank: int, world_size: int) -> list[str]:
    """The sample ids of ``rank``'s range of epoch 0, read from the tars themselves in reading order."""
    plan = shards.plan(0, seed=3, shuffle=True, rank=rank, world_size=world_size)
    ids = []
    for piece in plan.pieces():
        with tarfile.open(piece.shard.path) as tar:
            keys = [m.name.split(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".jpg")]
        ids += [shards.sample_id(key) for key in keys[piece.start : piece.stop]]
    return ids


@pytest.mark.slow
def test_ranks_train_disjoint_samples_that_cover_the_epoch(ranks: list[dict], ddp_shards: Path) -> None:
    shards = ShardSet.open(ddp_shards / "train")
    epoch = planned_ids(shards, rank=0, world_size=1)
    own = [planned_ids(shards, rank=r, world_size=2) for r in range(2)]
    assert len(epoch) == 22 and not set(own[0]) & set(own[1]) and sorted(own[0] + own[1]) == sorted(epoch)
    for rank, mine in zip(ranks, own):
        trained = rank["samples"]
        assert len(trained) == len(set(trained)) == 10  # 5 full batches of 2 out of the rank's 11
        assert set(trained) <= set(mine)  # the one left over is the last partial batch, dropped
    assert not set(ranks[0]["samples"]) & set(ranks[1]["samples"])


@pytest.mark.slow
def test_a_nan_on_one_rank_skips_the_update_on_both(ranks: list[dict]) -> None:
    first, second = ranks
    assert first["skipped"] == second["skipped"] == [False, True, False, False, False]
    assert first["nonfinite_total"] == second["nonfinite_total"] == 1
    assert first["after_nan"] == second["after_nan"]


def test_random_streams_differ_per_rank_and_rank_0_is_the_single_process() -> None:
    assert rank_seed(3, 0) == 3 and len({rank_seed(3, r) for r in range(4)}) == 4
    assert rank_seed(3, 1) == rank_seed(3, 1)
    assert epoch_seed(3, 2, 1, 0) == epoch_seed(3, 2, 1)
    assert len({epoch_seed(3, 2, 1, r) for r in range(4)}) == 4  # augmentation: per rank
    assert epoch_seed(3, 2, 0) != epoch_seed(3, 3, 0)  # shuffle: per (seed, epoch) only


def test_sync_bn_resolution() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert not resolve_sync_bn("auto", device=gpu, world_size=1, batch_size=8)
    assert resolve_sync_bn("auto", device=gpu, world_size=2, batch_size=8)
    assert not resolve_sync_bn("auto", device=gpu, world_size=2, batch_size=32)
    assert not resolve_sync_bn("auto", device=cpu, world_size=2, batch_size=8)
    assert resolve_sync_bn(True, device=gpu, world_size=2, batch_size=64)
    with pytest.raises(ValueError, match="compute.sync_bn=true: PyTorch's SyncBatchNorm needs CUDA"):
        resolve_sync_bn(True, device=cpu, world_size=2, batch_size=8)
