import json
from pathlib import Path

import polars as pl
import pytest

from pawpipe.common.atomic import check_outputs
from pawpipe.common.contracts.labels_file import build_labels
from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig
from pawpipe.train.audit.crossval import assign_folds
from pawpipe.train.cli import main


def test_folds_keep_groups_whole_and_balance_samples():
    # largest first, each to the lighter fold:
    # a(5) -> 0; b(3) -> 1; c(3) -> 1 (3 < 5); d(2) -> 0 (5 < 6); e(1) -> 1 (6 < 7)
    sizes = {"a": 5, "b": 3, "c": 3, "d": 2, "e": 1}
    frame = pl.DataFrame(
        {
            "sample_id": [f"{g}{i}" for g, n in sizes.items() for i in range(n)],
            "group_id": [g for g, n in sizes.items() for _ in range(n)],
        }
    )
    folds = assign_folds(frame, folds=2, seed=0)
    per_group = frame.join(folds, on="sample_id").group_by("group_id").agg(pl.col("fold").unique())
    assert all(len(f) == 1 for f in per_group.get_column("fold").to_list())  # a group never straddles folds
    of = {g: f[0] for g, f in per_group.iter_rows()}
    assert of["a"] == 0 and of["b"] == 1 and of["d"] == 0 and of["e"] == 1
    assert of["c"] == 1  # after a (5) and b (3), fold 1 is lighter
    assert folds.group_by("fold").len().sort("fold").get_column("len").to_list() == [7, 7]
    with pytest.raises(ValueError, match="only 5 groups"):
        assign_folds(frame, folds=6)


@pytest.mark.slow
def test_crossval_writes_out_of_fold_probabilities(demo_clean: Path, tmp_path: Path):
    shards = tmp_path / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=shards, size=40, max_samples=8, workers=1, quiet=True))
    out = tmp_path / "cv"
    argv = [
        "crossval",
        "--folds",
        "2",
        "--data",
        str(shards),
        "--out",
        str(out),
        "--set",
        "data.image_size=32",
        "--set",
        "data.batch_size=4",
        "--set",
        "schedule.epochs=1",
        "--set",
        "compute.device=cpu",
        "--set",
        "record.progress=false",
        "--set",
        "data.workers=1",
        "--set",
        "compute.cpu_threads=1",
    ]
    assert main(argv) == 0
    oof = pl.read_parquet(out / "oof.parquet")
    train = pl.read_parquet(demo_clean / "manifest.parquet").filter(pl.col("split") == "train")
    assert sorted(oof.get_column("sample_id").to_list()) == sorted(train.get_column("sample_id").to_list())  # each once
    assert oof.get_column("probs").list.len().unique().to_list() == [6]
    assert ((oof.get_column("probs").list.sum() - 1.0).abs() < 1e-4).all()
    groups = train.join(oof, on="sample_id").group_by("group_id").agg(pl.col("fold").n_unique())
    assert groups.get_column("fold").to_list() == [1] * groups.height
    for k in (0, 1):  # each fold's model never trained on its held-out samples
        trained = set(
            pl.read_parquet(out / f"fold_{k}" / "shards" / "train" / "samples.parquet").get_column("sample_id")
        )
        assert trained.isdisjoint(oof.filter(pl.col("fold") == k).get_column("sample_id").to_list())
        # each fold's clean folder is one set, as `ingest clean` writes it: its files recorded, its labels
        # counted over its own rows, the source's vocabulary and cleaning config
        clean = out / f"fold_{k}" / "clean"
        check_outputs(clean, tool="ingest clean", needs=("manifest.parquet", "labels.json"))
        rows = pl.read_parquet(clean / "manifest.parquet")
        labels, source = (json.loads((d / "labels.json").read_text()) for d in (clean, demo_clean))
        assert labels["vocabulary"] == source["vocabulary"] and labels != source
        assert labels == build_labels(rows, tuple(source["vocabulary"]), label_field=source["label_field"])
        assert (clean / "clean_config.json").read_bytes() == (demo_clean / "clean_config.json").read_bytes()


@pytest.mark.slow
def test_audit_uses_the_last_checkpoint_in_eval_mode(demo_clean: Path, tmp_path: Path):
    """Without --oof the audit predicts the training split with the run's last checkpoint: the very
    probabilities `train predict` gives, and confident learning's self-confidence read from them."""
    import json

    import numpy as np

    shards = tmp_path / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=shards, size=40, max_samples=8, workers=1, quiet=True))
    run = tmp_path / "run"
    argv = [
        "run",
        "--data",
        str(shards),
        "--out",
        str(run),
        "--set",
        "data.image_size=32",
        "--set",
        "data.batch_size=8",
        "--set",
        "schedule.epochs=1",
        "--set",
        "compute.device=cpu",
        "--set",
        "record.progress=false",
        "--set",
        "data.workers=1",
        "--set",
        "compute.cpu_threads=1",
    ]
    assert main(argv) == 0
    audit = tmp_path / "audit"
    assert main(["audit", str(run), "--manifest", str(demo_clean), "--out", str(audit), "--gallery", "8"]) == 0
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "checkpoints" / "last.pt"),
                "--data",
                str(shards / "train"),
                "--out",
                str(tmp_path / "pred.parquet"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predicted = pl.read_parquet(tmp_path / "pred.parquet")
    pass_rows = pl.read_parquet(audit / "train_predictions" / "run0.parquet")
    assert pass_rows.drop("embedding").equals(predicted)
    assert pass_rows.get_column("embedding").list.len().unique().to_list() == [1280]  # B0's penultimate features
    groups = pl.read_parquet(audit / "groups.parquet")  # demo videos: a verdict per video from the neighbour view
    per_video = (
        pass_rows.join(pl.read_parquet(demo_clean / "manifest.parquet"), on="sample_id")
        .group_by("group_id")
        .agg(frames=pl.len(), labels=pl.col("label").n_unique())
    )
    judged = per_video.filter((pl.col("frames") >= 2) & (pl.col("labels") == 1)).get_column(
        "group_id"
    )  # one label per video
    assert sorted(groups.get_column("group_id")) == sorted(judged) and len(judged) > 0
    page = (audit / "audit.html").read_text(encoding="utf-8")
    assert "<h2>Suspect videos</h2>" in page
    suspect_videos = groups.filter(pl.col("group_verdict") != "ok").head(
        2
    )  # gallery 8: the two most suspect videos as strips
    for video in suspect_videos.get_column("group_id"):
        assert f"<code>{video}</code>" in page
    frames = pl.read_parquet(audit / "suspects.parquet").filter(
        pl.col("group_id").is_in(suspect_videos.get_column("group_id").implode())
    )
    assert (
        frames.group_by("group_id").len().get_column("len").max() or 0
    ) <= 8  # demo videos: every frame fits the strip
    shown = frames.get_column("sample_id").to_list()
    assert all(f'src="gallery/{s}.jpg"' in page for s in shown)
    assert all((audit / "gallery" / f"{s}.jpg").read_bytes()[:2] == b"\xff\xd8" for s in shown)
    summary = json.loads((audit / "audit.json").read_text())
    assert (
        summary["confident_learning"]["probabilities"]
        == "eval-mode predictions of the last checkpoint over the training split"
    )
    suspects = pl.read_parquet(audit / "suspects.parquet").join(predicted.select("sample_id", "probs"), on="sample_id")
    probs = np.asarray(suspects.get_column("probs").to_list(), dtype=np.float64)
    own = probs[np.arange(len(probs)), suspects.get_column("label_id").to_numpy()]
    assert np.array_equal(suspects.get_column("self_confidence").to_numpy(), own)
    model = np.asarray(summary["vocabulary"])[probs.argmax(axis=1)]
    assert suspects.get_column("model_label").to_list() == model.tolist()

    again = tmp_path / "audit_no_predict"
    assert (
        main(["audit", str(run), "--manifest", str(demo_clean), "--out", str(again), "--gallery", "0", "--no-predict"])
        == 0
    )
    assert (
        json.loads((again / "audit.json").read_text())["confident_learning"]["probabilities"]
        == "mean training-time probabilities"
    )
    assert not (again / "train_predictions").exists()


@pytest.mark.slow
def test_audit_view_takes_the_model_view_from_a_second_run(demo_raw: Path, demo_clean: Path, tmp_path: Path, capsys):
    """--view RUN2, RUN2 trained on what the first audit left (three samples dropped): the model's view
    is RUN2's last checkpoint over the audited run's training split; where RUN2 trained on a sample its
    AUM and a cut-off calibrated against its view replace the first run's and both views must agree;
    the three it never saw are out of sample and its view (or confident learning) decides alone.
    Refused in one line: --view with --oof, a folder that is not a run."""
    import json

    import numpy as np

    from pawpipe.ingest.cli import main as ingest
    from pawpipe.train.audit.aum import calibrated_cutoff

    def trained(name: str, shards: Path, seed: int) -> Path:
        argv = [
            "run",
            "--data",
            str(shards),
            "--out",
            str(tmp_path / name),
            "--set",
            "data.image_size=32",
            "--set",
            "data.batch_size=8",
            "--set",
            "schedule.epochs=1",
            "--set",
            "compute.device=cpu",
            "--set",
            "record.progress=false",
            "--set",
            f"seed={seed}",
            "--set",
            "data.workers=1",
            "--set",
            "compute.cpu_threads=1",
        ]
        assert main(argv) == 0
        return tmp_path / name

    shards = tmp_path / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=shards, size=40, max_samples=8, workers=1, quiet=True))
    runs = {"first": trained("first", shards, 0)}
    plain, viewed = tmp_path / "audit", tmp_path / "audit_view"
    assert (
        main(["audit", str(runs["first"]), "--manifest", str(demo_clean), "--out", str(plain), "--gallery", "0"]) == 0
    )
    ids = sorted(pl.read_parquet(plain / "suspects.parquet").get_column("sample_id").to_list())
    dropped = ids[:3]  # a reviewer's decisions fix what the first round drops: these three, nothing else
    assert main(["audit", "--review", str(plain), "--accept", *dropped, "--reject", *ids[3:]]) == 0
    cleaned = tmp_path / "clean2"
    assert (
        ingest(["clean", str(demo_raw), "--out", str(cleaned), "--suspects", str(plain), "--workers", "1", "--quiet"])
        == 0
    )
    build(ShardConfig(manifest_dir=cleaned, out=tmp_path / "shards2", size=40, max_samples=8, workers=1, quiet=True))
    runs["second"] = trained("second", tmp_path / "shards2", 1)
    own = tmp_path / "audit_second"  # the second run's own audit: its AUM per sample it trained on
    assert (
        main(
            [
                "audit",
                str(runs["second"]),
                "--manifest",
                str(cleaned),
                "--out",
                str(own),
                "--gallery",
                "0",
                "--no-predict",
            ]
        )
        == 0
    )

    assert (
        main(
            [
                "audit",
                str(runs["first"]),
                "--view",
                str(runs["second"]),
                "--manifest",
                str(demo_clean),
                "--out",
                str(viewed),
                "--gallery",
                "0",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(runs["second"] / "checkpoints" / "last.pt"),
                "--data",
                str(shards / "train"),
                "--out",
                str(tmp_path / "pred.parquet"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predicted = pl.read_parquet(tmp_path / "pred.parquet")
    assert pl.read_parquet(viewed / "train_predictions" / "view.parquet").drop("embedding").equals(predicted)
    assert not (viewed / "train_predictions" / "run0.parquet").exists()  # the audited run's own pass is not made
    summary = json.loads((viewed / "audit.json").read_text())
    # out of sample: the three dropped, and the samples the second run's one epoch never reached
    # (last partial batch dropped)
    unreached = pl.read_parquet(own / "suspects.parquet").filter(~pl.col("seen")).get_column("sample_id").to_list()
    assert summary["view"] == str(runs["second"]) and summary["out_of_sample"] == 3 + len(unreached)
    assert summary["confident_learning"]["probabilities"] == (
        f"eval-mode predictions of the last checkpoint of {runs['second']} over the audited run's training split"
    )
    suspects = pl.read_parquet(viewed / "suspects.parquet").join(predicted.select("sample_id", "probs"), on="sample_id")
    assert suspects.height == len(ids)
    probs = np.asarray(suspects.get_column("probs").to_list(), dtype=np.float64)
    assert (
        suspects.get_column("model_label").to_list() == np.asarray(summary["vocabulary"])[probs.argmax(axis=1)].tolist()
    )
    assert sorted(suspects.filter("out_of_sample").get_column("sample_id").to_list()) == sorted(dropped + unreached)

    aum = lambda folder: pl.read_parquet(folder / "suspects.parquet").select("sample_id", "aum")  # noqa: E731
    inside = suspects.filter(~pl.col("out_of_sample"))
    outside = suspects.filter(pl.col("out_of_sample"))
    assert (
        inside.select("sample_id", "aum")
        .sort("sample_id")
        .equals(aum(own).filter(pl.col("aum").is_not_null()).sort("sample_id"))
    )
    first = aum(plain).filter(pl.col("sample_id").is_in(dropped + unreached)).sort("sample_id")
    assert (
        outside.select("sample_id", "aum").sort("sample_id").equals(first)
    )  # the first run's AUM where the second never trained
    doubt = inside.get_column("model_label") != inside.get_column("label")
    assert summary["view_aum_cutoff"] == pytest.approx(
        calibrated_cutoff(inside.get_column("aum").to_numpy(), doubt.to_numpy()), rel=1e-12
    )
    assert inside.get_column("aum_cutoff").unique().to_list() == [summary["view_aum_cutoff"]]
    assert outside.get_column("aum_cutoff").unique().to_list() == [summary["aum_cutoff"]]
    both_views = doubt & (inside.get_column("aum") <= summary["view_aum_cutoff"])
    assert (inside.get_column("verdict") == "label_issue").to_list() == both_views.to_list()
    alone = (outside.get_column("model_label") != outside.get_column("label")) | outside.get_column("cl_issue")
    assert (outside.get_column("verdict") == "label_issue").to_list() == alone.to_list()

    both = [
        "audit",
        str(runs["first"]),
        "--view",
        str(runs["second"]),
        "--oof",
        str(tmp_path / "oof.parquet"),
        "--manifest",
        str(demo_clean),
        "--out",
        str(tmp_path / "both"),
    ]
    capsys.readouterr()
    assert main(both) == 2
    assert capsys.readouterr().err == "train audit: error: --oof and --view: expected one view of the model, got both\n"
    assert not (tmp_path / "both").exists()
    assert (
        main(
            [
                "audit",
                str(runs["first"]),
                "--view",
                str(shards),
                "--manifest",
                str(demo_clean),
                "--out",
                str(tmp_path / "nov"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(
        f"train audit: error: --view {shards}: expected a run directory with config.json and run.json: "
    )
