import json
from pathlib import Path

import pytest

from train.cli import main


def test_plan_prints_memory_and_lr_curve(tmp_path: Path, capsys):
    out = tmp_path / "plan.json"
    code = main(["plan", "--gpu-memory", "12GiB", "--image-size", "32", "--amp", "--steps-per-epoch", "50",
                 "--set", "schedule.epochs=2", "--lr-curve", str(tmp_path / "lr.svg"), "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "recommendation: batch_size 64, accumulate 1" in text and "warm-up 5" in text
    plan = json.loads(out.read_text())
    assert plan["memory"]["amp"] == "bf16" and plan["memory"]["batch_size"] == 64
    assert plan["lr"]["total_steps"] == 100 and (tmp_path / "lr.svg").read_text().startswith("<svg")


def test_unknown_config_key_is_a_clear_error(capsys):
    assert main(["plan", "--skip-memory", "--set", "optim.lrr=1"]) == 2
    assert "optim.lrr: Extra inputs are not permitted" in capsys.readouterr().err


def test_run_without_dataset_json_says_what_is_missing(tmp_path: Path, capsys):
    assert main(["run", "--data", str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err


def test_run_eval_predict_through_the_loader_seam(tmp_path: Path, monkeypatch, capsys):
    """The CLI end to end, with a stand-in ``train.loader`` that has only the required arguments."""
    import sys
    import types

    import pyarrow.parquet as pq

    from train.synthetic import TensorLoader, synthetic_images

    calls = []

    def build_loader(split_dir, *, train, batch_size, image_size, device, seed):
        calls.append((Path(split_dir).name, train, batch_size, image_size, device, seed))
        n, s = (16, 1) if train else (6, 2)
        x, y, ids = synthetic_images(n, num_classes=3, image_size=image_size, seed=s)
        return TensorLoader(x, y, ids, batch_size=batch_size, train=train, seed=seed)

    monkeypatch.setitem(sys.modules, "train.loader", types.SimpleNamespace(build_loader=build_loader))
    shards = tmp_path / "shards"
    (shards / "train").mkdir(parents=True)
    (shards / "val").mkdir()
    (shards / "dataset.json").write_text(json.dumps({
        "labels": ["a", "b", "c"], "class_weights": {"balanced": [1.0, 0.5, 2.0]},
        "counts": {"train": {"per_class": [6, 6, 4]}}, "image": {"size": 32},
    }))
    config = tmp_path / "tiny.toml"
    config.write_text('[data]\nimage_size = 32\nbatch_size = 4\n[schedule]\nepochs = 1\nwarmup_steps = 1\n'
                      '[compute]\ndevice = "cpu"\n[record]\nprogress = false\n')
    assert main(["run", "--config", str(config), "--data", str(shards), "--out", str(tmp_path / "runs" / "cli"),
                 "--seed", "5", "--set", "loss.label_smoothing=0.05"]) == 0
    assert calls == [("train", True, 4, 32, "cpu", 5), ("val", False, 4, 32, "cpu", 5)]
    run = tmp_path / "runs" / "cli"
    assert json.loads((run / "run.json").read_text())["class_weights"] == [1.0, 0.5, 2.0]
    assert json.loads((run / "config.json").read_text())["loss"]["label_smoothing"] == 0.05
    assert "stopped by epochs after 4 steps" in capsys.readouterr().out

    ckpt = run / "checkpoints" / "last.pt"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(shards / "val"), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "confusion matrix" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    last_eval = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert metrics["count"] == 6 and metrics["accuracy"] == last_eval["accuracy"]
    assert metrics["loss"] == pytest.approx(last_eval["loss"], rel=1e-6)  # same class weights, same whole-set loss

    out = tmp_path / "preds.parquet"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", str(shards / "val"), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 6 and table.column("sample_id").to_pylist() == sorted(table.column("sample_id").to_pylist())
