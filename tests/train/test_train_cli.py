import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pawpipe.train.cli import main


def test_plan_prints_memory_and_lr_curve(tmp_path: Path, capsys):
    out = tmp_path / "plan.json"
    code = main(
        [
            "plan",
            "--gpu-memory",
            "12GiB",
            "--image-size",
            "32",
            "--amp",
            "--steps-per-epoch",
            "50",
            "--set",
            "schedule.epochs=2",
            "--lr-curve",
            str(tmp_path / "lr.svg"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "recommendation: batch_size 64, accumulate 1" in text and "warm-up 5" in text
    plan = json.loads(out.read_text())
    assert plan["memory"]["amp"] == "bf16" and plan["memory"]["batch_size"] == 64
    assert plan["lr"]["total_steps"] == 100
    svg = ET.parse(tmp_path / "lr.svg").getroot()
    line = [
        el for el in svg.iter("{http://www.w3.org/2000/svg}path") if el.get("clip-path")
    ]  # the curve, clipped to the axes
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and line


def test_unknown_config_key_is_a_clear_error(capsys):
    assert main(["plan", "--skip-memory", "--set", "optim.lrr=1"]) == 2
    assert "optim.lrr: Extra inputs are not permitted" in capsys.readouterr().err


def test_run_without_dataset_json_says_what_is_missing(tmp_path: Path, capsys):
    assert main(["run", "--data", str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err


def test_run_eval_predict_end_to_end_on_real_shards(demo_clean: Path, tmp_path: Path, capsys):
    """The CLI on real shards of the demo data (DALI on the CPU): run, then eval and predict of its checkpoint."""
    import pyarrow.parquet as pq

    from pawpipe.shards.build import build
    from pawpipe.shards.config import ShardConfig

    shards = tmp_path / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=shards, size=48, max_samples=16, workers=1, quiet=True))
    info = json.loads((shards / "dataset.json").read_text())
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[data]\nimage_size = 32\nbatch_size = 4\nworkers = 1\n[schedule]\nepochs = 1\nwarmup_steps = 1\n"
        '[compute]\ndevice = "cpu"\ncpu_threads = 1\n[record]\nprogress = false\n'
    )
    assert (
        main(
            [
                "run",
                "--config",
                str(config),
                "--data",
                str(shards),
                "--out",
                str(tmp_path / "runs" / "cli"),
                "--seed",
                "5",
                "--set",
                "loss.label_smoothing=0.05",
            ]
        )
        == 0
    )
    run = tmp_path / "runs" / "cli"
    assert json.loads((run / "run.json").read_text())["class_weights"] == info["class_weights"]["balanced"]
    assert json.loads((run / "config.json").read_text())["loss"]["label_smoothing"] == 0.05
    assert "stopped by epochs after 5 steps" in capsys.readouterr().out  # 22 training samples, batches of 4

    ckpt = run / "checkpoints" / "last.pt"
    assert (
        main(["eval", "--checkpoint", str(ckpt), "--data", str(shards / "val"), "--out", str(tmp_path / "m.json")]) == 0
    )
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "confusion matrix" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    last_eval = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"event": "eval"' in line
    ][-1]
    assert metrics["count"] == last_eval["count"] == 35 and metrics["accuracy"] == last_eval["accuracy"]
    assert metrics["loss"] == pytest.approx(last_eval["loss"], rel=1e-6)  # same class weights, same whole-set loss

    out = tmp_path / "preds.parquet"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", str(shards / "val"), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 35 and table.column("sample_id").to_pylist() == sorted(
        table.column("sample_id").to_pylist()
    )
