import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pawpipe.train.fit.checkpoint import FORMAT, TrainProgress, load_checkpoint
from pawpipe.train.fit.curves import draw
from pawpipe.train.fit.dynamics import read_dynamics
from pawpipe.train.fit.evaluate import eval_checkpoint
from pawpipe.train.fit.run import run_training
from pawpipe.train.fit.session import early_stopping_update

VOCAB = ["happy", "calm", "angry", "scared"]  # as in conftest.py


def test_tiny_run_writes_the_run_record(tiny_cfg, loaders, tmp_path: Path):
    train, val = loaders()
    cfg = tiny_cfg(**{"schedule.epochs": 2, "eval.every_steps": 2, "record.dynamics_rows_per_group": 5, "seed": 7})
    result = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=[1.0, 2.0, 1.0, 0.5])
    run = result.run_dir
    assert run == tmp_path / "runs" / "tiny" and result.stopped_by == "epochs"
    assert result.progress.step == 8 and result.progress.epoch == 2

    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 7 and config["data"]["image_size"] == 32
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == 7 and meta["init"] == "random" and meta["class_weights"] == [1.0, 2.0, 1.0, 0.5]
    assert (
        set(meta["git"]) == {"commit", "dirty", "untracked"} and meta["packages"]["torch"] and meta["packages"]["timm"]
    )

    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["event"] == "train"]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in train_events] == list(range(1, 9))  # log_every_steps = 1: per step
    assert all(e["img_per_s"] > 0 and "eta_s" in e and e["lr"] > 0 for e in train_events)
    # every 2 steps mid-epoch (2 per epoch, not at its last step) + end of each epoch
    assert [(e["step"], e["end_of_epoch"]) for e in evals] == [(2, False), (4, True), (6, False), (8, True)]
    assert all(e["count"] == 10 and len(e["confusion"]) == 4 and set(e["per_class"]) == set(VOCAB) for e in evals)

    svg = ET.fromstring((run / "curves.svg").read_text())
    assert svg.tag.endswith("svg") and (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_ax, acc_ax, lr_ax = draw(events).axes
    assert loss_ax.get_yscale() == "log" and [a.get_title() for a in (loss_ax, acc_ax, lr_ax)] == [
        "loss",
        "accuracy",
        "learning rate",
    ]
    epoch_lines = [line for line in loss_ax.lines if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in epoch_lines) == [4, 8]  # the two epoch ends
    star = [line for line in acc_ax.lines if line.get_marker() == "*"]
    best_eval = max(evals, key=lambda e: e["accuracy"])
    assert (
        len(star) == 1
        and list(star[0].get_xdata()) == [best_eval["step"]]
        and list(star[0].get_ydata()) == [best_eval["accuracy"]]
    )
    scalars = EventAccumulator(str(run / "tb")).Reload()
    assert [e.step for e in scalars.Scalars("train/train_loss")] == list(range(1, 9))
    assert [e.value for e in scalars.Scalars("eval/accuracy")] == pytest.approx([e["accuracy"] for e in evals])

    log = (run / "train.log").read_text()  # the run's own log, key=value lines
    assert 'msg="eval at step 8:' in log and "ts=" in log
    progress = [line for line in log.splitlines() if "run ETA" in line]
    assert progress and all(" loss=" in line and " lr=" in line and " run_eta_s=" in line for line in progress)
    assert "epoch 2/2 batch 4/4 step 8: loss " in progress[-1] and "run_eta_s=0.0" in progress[-1]

    best, last = load_checkpoint(result.best_checkpoint), load_checkpoint(result.last_checkpoint)
    assert best["format"] == last["format"] == FORMAT
    assert last["progress"]["step"] == 8 and last["vocabulary"] == VOCAB and last["loader"]["position"] == 0
    assert set(last["rng"]) >= {"python", "numpy", "torch"} and last["optimizer"]["state"]
    assert best["metrics"]["accuracy"] == max(e["accuracy"] for e in evals)
    assert result.progress.best_value == best["metrics"]["accuracy"]

    for epoch in (0, 1):  # no mid-epoch checkpoint: one part per epoch, micro-batches [0, 4)
        part = run / "dynamics" / f"epoch_{epoch:04d}.b0000000-0000004.parquet"
        table = pq.read_table(part)
        assert table.num_rows == 16 and sorted(table.column("sample_id").to_pylist()) == sorted(train.sample_ids)
        assert pq.ParquetFile(part).metadata.num_row_groups >= 2
        assert set(table.column("epoch").to_pylist()) == {epoch}
        assert read_dynamics(run / "dynamics", epoch)["sample_id"].to_list() == table.column("sample_id").to_pylist()
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["step"], status["stopped_by"]) == ("finished", 8, "epochs")
    assert status["last_checkpoint"]["step"] == 8 and status["best"]["value"] == result.progress.best_value

    # `train eval` on the last checkpoint reproduces the last end-of-epoch evaluation exactly
    again = eval_checkpoint(
        result.last_checkpoint, tmp_path, device="cpu", loader=val, class_weights=[1.0, 2.0, 1.0, 0.5]
    )
    assert again["accuracy"] == evals[-1]["accuracy"] and again["loss"] == pytest.approx(evals[-1]["loss"], rel=1e-6)


def test_resume_at_an_epoch_boundary_continues_the_count(tiny_cfg, loaders, tmp_path: Path):
    train, val = loaders()
    first = run_training(tiny_cfg(), train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    cfg = tiny_cfg(**{"schedule.epochs": 2, "run_name": "resumed", "record.dynamics": False})
    train2, val2 = loaders()
    second = run_training(
        cfg,
        train_loader=train2,
        val_loader=val2,
        vocabulary=VOCAB,
        class_weights=None,
        resume_from=first.last_checkpoint,
    )
    assert second.progress.step == 8 and second.progress.epoch == 2
    assert [h["step"] for h in second.progress.history] == [4, 8]


def test_early_stopping_counts_epochs_without_improvement():
    p = TrainProgress()
    outcomes = [early_stopping_update(p, v, patience=2) for v in (1.0, 0.9, 0.95, 0.9, 0.8, 0.85, float("nan"))]
    assert outcomes == [False, False, False, True, False, False, True]
    assert p.monitor_best == 0.8
    assert not any(early_stopping_update(TrainProgress(), v, patience=0) for v in (1.0, 2.0, 3.0))


@pytest.mark.slow
def test_demo_like_run_learns_above_chance(tiny_cfg, loaders):
    """Six short epochs from random init on learnable 32 px images: validation accuracy well above 1/4."""
    train, val = loaders(n_train=96, n_val=48, batch_size=8, noise=0.5)
    cfg = tiny_cfg(
        **{
            "schedule.epochs": 6,
            "optim.lr": 3e-3,
            "schedule.warmup_steps": 4,
            "record.dynamics": False,
            "loss.label_smoothing": 0.0,
            "model.drop_rate": 0.0,
        }
    )
    torch.manual_seed(0)
    result = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    assert result.progress.best_value >= 0.5
