"""Both loaders on real shards (``shards build`` of the demo dataset), DALI on its CPU backend."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import pytest
import torch
from _loader_fixtures import IMAGE, build_shards, copy_split, samples

from pawpipe.train.config import load_train_config
from pawpipe.train.data.batch import Batch
from pawpipe.train.data.loader import (
    DEFAULT_SHUFFLE_BUFFER,
    LoaderSpec,
    ShardSet,
    open_loader,
    resolve_backend,
    resolve_data_config,
)
from pawpipe.train.data.transforms import TransformSpec

BACKENDS = ["dali", "torch"]
WORKERS = {"dali": 1, "torch": 0}  # DALI CPU threads / DataLoader worker processes: fast on 2 cores


@pytest.fixture(scope="module")
def loader_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shards(demo_clean, tmp_path_factory)


PLACEMENT = ("device", "seed", "rank", "world_size", "amp")


def make(split_dir: Path, backend: str, *, train: bool, batch_size: int = 4, **kw) -> object:
    """A loader through the one door; ``kw`` names spec fields, placement fields or mean/std."""
    placement = {"device": "cpu", "seed": 7, **{k: kw.pop(k) for k in PLACEMENT if k in kw}}
    normalize = {"mean": kw.pop("mean"), "std": kw.pop("std")} if "mean" in kw else None
    spec = LoaderSpec(
        train=train, batch_size=batch_size, backend=backend, **{"image_size": IMAGE, "workers": WORKERS[backend], **kw}
    )
    return open_loader(split_dir, spec, normalize=normalize, **placement)


def epoch(loader, n: int | None = None) -> list[Batch]:
    return list(itertools.islice(iter(loader), n))


def ids(batches: list[Batch]) -> list[str]:
    return [i for b in batches for i in b.sample_ids]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", ["train", "val"])
def test_labels_and_ids_match_samples_parquet(loader_shards: Path, backend: str, split: str) -> None:
    expected = samples(loader_shards / split)
    loader = make(loader_shards / split, backend, train=split == "train")
    batches = epoch(loader)
    assert len(batches) == len(loader)
    for batch in batches:
        assert batch.labels.dtype == torch.int64
        assert batch.labels.tolist() == [expected[i] for i in batch.sample_ids]
        assert batch.images.shape[0] == len(batch.sample_ids) == batch.labels.shape[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_epoch_yields_each_sample_once(loader_shards: Path, backend: str) -> None:
    expected = samples(loader_shards / "val")
    loader = make(loader_shards / "val", backend, train=False)
    batches = epoch(loader)
    got = ids(batches)
    assert sorted(got) == sorted(expected) and len(got) == len(set(got)) == 35
    assert [len(b.sample_ids) for b in batches] == [4] * 8 + [3]  # the partial last batch is kept
    assert ids(epoch(loader)) == got  # evaluation order is fixed
    epoch(loader, 2)  # an evaluation abandoned half-way...
    assert ids(epoch(loader)) == got  # ...does not shorten the next one


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_split_over_two_ranks_is_disjoint_and_complete(loader_shards: Path, backend: str) -> None:
    expected = samples(loader_shards / "val")
    workers = {"dali": 1, "torch": 2}[backend]
    per_rank = [
        ids(epoch(make(loader_shards / "val", backend, train=False, rank=r, world_size=2, workers=workers)))
        for r in (0, 1)
    ]
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(expected)
    assert (len(per_rank[0]), len(per_rank[1])) == (17, 18)  # [N*r//W, N*(r+1)//W): no padding duplicates


def test_the_data_config_is_resolved_in_one_place(loader_shards: Path) -> None:
    data = load_train_config(
        values={
            "data.image_size": IMAGE,
            "data.batch_size": 4,
            "data.eval_batch_size": 5,
            "data.loader": "torch",
            "data.workers": 0,
            "data.scale": [0.5, 1.0],
            "data.jitter": 0.1,
        }
    ).data
    assert resolve_data_config(data, train=True) == LoaderSpec(
        train=True, batch_size=4, image_size=IMAGE, backend="torch", workers=0, scale=(0.5, 1.0), jitter=0.1
    )
    assert (
        resolve_data_config(data, train=False).batch_size == 5
        and resolve_data_config(data, train=False, batch_size=2).batch_size == 2
    )
    loader = open_loader(loader_shards / "train", resolve_data_config(data, train=True), device="cpu", seed=7)
    assert (loader.spec.scale, loader.spec.jitter, loader.spec.size, loader.batch_size) == ((0.5, 1.0), 0.1, IMAGE, 4)
    defaults = load_train_config().data  # the transform's defaults are the data config's, written once
    assert (
        (TransformSpec(train=True).scale, TransformSpec(train=True).jitter)
        == (defaults.scale, defaults.jitter)
        == ((0.25, 1.0), 0.0)
    )


def test_both_loaders_give_each_rank_the_same_samples(loader_shards: Path) -> None:
    for rank in (0, 1, 2):
        got = {
            b: sorted(ids(epoch(make(loader_shards / "val", b, train=False, rank=rank, world_size=3))))
            for b in BACKENDS
        }
        assert got["dali"] == got["torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_batches_are_full_and_equal_in_number_on_every_rank(loader_shards: Path, backend: str) -> None:
    # 22 samples over 3 ranks: 7, 7, 8 samples; 3 full batches of 2 on every rank, the rest dropped.
    counts, seen = [], []
    for rank in range(3):
        loader = make(loader_shards / "train", backend, train=True, batch_size=2, rank=rank, world_size=3)
        batches = epoch(loader)
        assert len(loader) == len(batches) == 3
        assert all(b.images.shape == (2, 3, IMAGE, IMAGE) for b in batches)
        counts.append(len(batches))
        seen += ids(batches)
    assert counts == [3, 3, 3]
    assert len(seen) == len(set(seen)) == 18


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_drops_the_partial_last_batch(loader_shards: Path, backend: str) -> None:
    loader = make(loader_shards / "train", backend, train=True, batch_size=4)
    batches = epoch(loader)
    assert len(loader) == len(batches) == 5  # 22 samples: 5 batches of 4, 2 dropped
    assert {len(b.sample_ids) for b in batches} == {4}
    assert len(set(ids(batches))) == 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_epochs_see_the_same_samples_in_a_different_order(loader_shards: Path, backend: str) -> None:
    loader = make(loader_shards / "train", backend, train=True, batch_size=2)
    first = ids(epoch(loader))
    loader.set_epoch(1)
    second = ids(epoch(loader))
    assert sorted(first) == sorted(second) == sorted(samples(loader_shards / "train"))
    assert first != second
    again = make(loader_shards / "train", backend, train=True, batch_size=2)
    again.set_epoch(1)
    assert ids(epoch(again)) == second  # an epoch is a function of the seed and the epoch


def test_both_loaders_produce_the_same_kind_of_tensor(loader_shards: Path) -> None:
    for train in (True, False):
        batches = {b: epoch(make(loader_shards / ("train" if train else "val"), b, train=train)) for b in BACKENDS}
        for backend, got in batches.items():
            images = torch.cat([b.images for b in got])
            assert images.dtype == torch.float32 and images.shape[1:] == (3, IMAGE, IMAGE), backend
            assert images.is_contiguous()
            # normalised once: mean/std of 0-255 pixels -> roughly zero-centred, unit-scale values
            assert -3.5 < images.min().item() < -0.5 and 0.5 < images.max().item() < 3.5, backend
            assert abs(images.mean().item()) < 1.0, backend
        if not train:  # eval is deterministic: the two realisations agree to interpolation rounding
            by_id = {
                b: {i: img for batch in got for i, img in zip(batch.sample_ids, batch.images)}
                for b, got in batches.items()
            }
            diffs = torch.stack([(by_id["dali"][i] - by_id["torch"][i]).abs().mean() for i in by_id["dali"]])
            assert diffs.max().item() < 0.01


@pytest.mark.parametrize("backend,workers", [("dali", 1), ("torch", 0), ("torch", 2)])
@pytest.mark.parametrize("taken", [1, 3])
def test_resume_from_a_saved_state_continues_exactly(
    loader_shards: Path, backend: str, workers: int, taken: int
) -> None:
    split = loader_shards / "train"
    reference = make(split, backend, train=True, batch_size=3, workers=workers)
    reference.set_epoch(1)
    full = epoch(reference)
    assert len(full) == 7

    first = make(split, backend, train=True, batch_size=3, workers=workers)
    first.set_epoch(1)
    head = epoch(first, taken)
    state = first.state_dict()
    assert (state["epoch"], state["position"], state["backend"]) == (1, taken, backend)

    resumed = make(split, backend, train=True, batch_size=3, workers=workers)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what the trainer does after restoring: same epoch, position kept
    tail = epoch(resumed)
    assert ids(head + tail) == ids(full)
    assert all(torch.equal(a.images, b.images) for a, b in zip(head + tail, full))  # same crops and flips too
    assert resumed.state_dict()["position"] == 0
    resumed.set_epoch(2)
    assert len(epoch(resumed)) == 7


def test_each_rank_resumes_from_its_own_dali_state_and_draws_its_own_crops(loader_shards: Path) -> None:
    """Augmentation seeds include the rank: each rank's checkpoint is its own, another rank's is refused."""
    split = loader_shards / "train"
    loaders = [make(split, "dali", train=True, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    heads = [epoch(loader, 2) for loader in loaders]
    states = [loader.state_dict() for loader in loaders]
    assert states[0]["dali_checkpoint"] != states[1]["dali_checkpoint"]
    for rank in (0, 1):
        resumed = make(split, "dali", train=True, batch_size=2, rank=rank, world_size=2)
        resumed.load_state_dict(states[rank])
        full = epoch(make(split, "dali", train=True, batch_size=2, rank=rank, world_size=2))
        got = heads[rank] + epoch(resumed)
        assert ids(got) == ids(full) and all(torch.equal(a.images, b.images) for a, b in zip(got, full))
    with pytest.raises(ValueError, match="saved with rank=0, this loader has rank=1"):
        make(split, "dali", train=True, batch_size=2, rank=1, world_size=2).load_state_dict(states[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_from_other_settings_is_refused(loader_shards: Path, backend: str) -> None:
    loader = make(loader_shards / "train", backend, train=True)
    epoch(loader, 1)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        make(loader_shards / "train", backend, train=True, batch_size=2).load_state_dict(state)
    other = "torch" if backend == "dali" else "dali"
    with pytest.raises(ValueError, match="same --loader"):
        make(loader_shards / "train", other, train=True).load_state_dict(state)


def test_missing_split_and_missing_shard_are_named(loader_shards: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such split folder"):
        ShardSet.open(tmp_path / "nope")
    split = copy_split(loader_shards, "train", tmp_path)
    (split / "shard-000001.tar").unlink()
    with pytest.raises(FileNotFoundError, match="shard-000001.tar: tar file missing"):
        ShardSet.open(split)


def test_stale_index_is_refused(loader_shards: Path, tmp_path: Path) -> None:
    split = copy_split(loader_shards, "train", tmp_path)
    index, other = split / "shard-000000.idx", split / "shard-000001.idx"
    original = index.read_text()
    lines = original.splitlines()
    # an index whose sample lines point at another tar's layout, older than its tar
    foreign = other.read_text().splitlines()[1:]
    index.write_text("\n".join([lines[0], *(foreign + foreign)[: len(lines) - 1]]) + "\n")
    tar_mtime = (split / "shard-000000.tar").stat().st_mtime
    os.utime(index, (tar_mtime - 60, tar_mtime - 60))
    with pytest.raises(
        ValueError, match=r"shard-000000.idx: stale index for shard-000000.tar: expected member .* older than its tar"
    ):
        ShardSet.open(split)
    index.write_text(original)
    ShardSet.open(split)
    with open(split / "shard-000002.tar", "ab") as handle:  # the tar grew after the build
        handle.write(b"\0" * 512)
    with pytest.raises(ValueError, match=r"shard-000002.tar: size \d+ bytes, expected \d+ \(shards.parquet\)"):
        ShardSet.open(split)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_sample_names_shard_and_key(loader_shards: Path, tmp_path: Path, backend: str) -> None:
    split = copy_split(loader_shards, "val", tmp_path)
    index = (split / "shard-000002.idx").read_text().splitlines()
    fields = index[3].split()
    jpg = fields.index("jpg")
    offset, size, name = int(fields[jpg + 1]), int(fields[jpg + 2]), fields[jpg + 3]
    with open(split / "shard-000002.tar", "r+b") as tar:  # same size: the index stays valid
        tar.seek(offset)
        tar.write(b"\xff\xd8\xff\xe0" + b"not a jpeg " * (size // 11) + b"\0" * (size - 4 - 11 * (size // 11)))
    key = name.split(".")[0]
    loader = make(split, backend, train=False)
    with pytest.raises(
        ValueError,
        match=rf"shard-000002.tar: key {key}( \(sample_id {key}\))?: cannot decode {key}.jpg: .+; the shard "
        rf"changed after it was built: `shards verify {tmp_path}` names every damaged sample$",
    ):
        epoch(loader)


def test_backend_choice_and_option_errors(loader_shards: Path) -> None:
    assert resolve_backend("auto") == "dali"
    with pytest.raises(ValueError, match="expected one of auto, dali, torch"):
        resolve_backend("tf")
    with pytest.raises(ValueError, match="BatchNorm"):
        make(loader_shards / "train", "dali", train=True, batch_size=1)
    with pytest.raises(ValueError, match="cannot fill one training batch"):
        make(loader_shards / "train", "dali", train=True, batch_size=16, world_size=2, rank=0)
    with pytest.raises(ValueError, match="0-1"):
        make(loader_shards / "val", "torch", train=False, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with (
        pytest.raises(RuntimeError, match="CUDA is not available")
        if not torch.cuda.is_available()
        else contextlib.nullcontext()
    ):
        make(loader_shards / "val", "dali", train=False, device="cuda")
    assert DEFAULT_SHUFFLE_BUFFER == 4096
