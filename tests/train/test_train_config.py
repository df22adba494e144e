from pathlib import Path

import pytest

from pawpipe.train.cli import main
from pawpipe.train.config import ConfigError, load_train_config, parse_override


def test_toml_with_overrides(tmp_path: Path):
    path = tmp_path / "train.toml"
    path.write_text('seed = 3\n[data]\nshards = "s"\nbatch_size = 32\n[optim]\nlr = 1e-4\n')
    cfg = load_train_config(
        path, overrides=["optim.lr=5e-6", "loss.class_weights=none"], values={"data.batch_size": 64, "seed": None}
    )
    assert cfg.seed == 3 and cfg.optim.lr == 5e-6 and cfg.data.batch_size == 64
    assert cfg.loss.class_weights == "none" and cfg.data.shards == Path("s")
    # defaults follow the users' setup
    assert (cfg.data.image_size, cfg.eval.patience, cfg.eval.best_metric, cfg.loss.label_smoothing) == (
        224,
        5,
        "accuracy",
        0.1,
    )
    # a run's resolved config.json reads back to the same config
    (tmp_path / "config.json").write_text(cfg.model_dump_json())
    assert load_train_config(tmp_path / "config.json") == cfg


@pytest.mark.parametrize(
    "text, message",
    [
        ("[optim]\nlrr = 1\n", "optim.lrr: Extra inputs are not permitted"),
        ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
        ("[optim]\nname = 'lamb'\n", "optim.name"),
        ("[model]\nfreeze_groups = 3\n", "freeze_steps"),
        ("[data\n", "cannot read config"),
    ],
)
def test_bad_configs_are_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_train_config(path)


def test_parse_override():
    assert parse_override("optim.betas=[0.9, 0.99]") == (["optim", "betas"], [0.9, 0.99])
    assert parse_override("data.shards=demo/shards") == (["data", "shards"], "demo/shards")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("optim.lr")


def test_each_line_names_where_its_value_came_from(tmp_path: Path, capsys):
    config = tmp_path / "run.toml"
    run = ["run", "--config", str(config), "--out", str(tmp_path / "run")]
    config.write_text("[optim]\nweight_decay = 0.01\n")
    assert main([*run, "--lr", "-1"]) == 2  # a bad flag over a good file
    assert (
        capsys.readouterr().err
        == "train run: error: (command line): optim.lr: Input should be greater than 0 (got -1.0)\n"
    )
    config.write_text("[optim]\nweight_decay = -1\n")
    assert main([*run, "--lr", "1e-3"]) == 2  # a bad file under a good flag
    assert (
        capsys.readouterr().err
        == f"train run: error: {config}: optim.weight_decay: Input should be greater than or equal to 0 (got -1)\n"
    )
    assert main([*run, "--lr", "-1"]) == 2  # both
    assert capsys.readouterr().err == (
        "train run: error: (command line): optim.lr: Input should be greater than 0 (got -1.0)\n"
        f"train run: error: {config}: optim.weight_decay: Input should be greater than or equal to 0 (got -1)\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_set_override_under_a_section_names_the_command_line(tmp_path: Path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("[optim]\nlr = 1e-3\nweight_decay = -1\n[schedule]\nepochs = 2\n")
    run = ["run", "--config", str(config), "--out", str(tmp_path / "run")]
    assert main([*run, "--set", "optim.lr=-1", "--set", "schedule.min_lr=-1"]) == 2
    assert capsys.readouterr().err == (
        "train run: error: (command line): optim.lr: Input should be greater than 0 (got -1)\n"
        f"train run: error: {config}: optim.weight_decay: Input should be greater than or equal to 0 (got -1)\n"
        "train run: error: (command line): schedule.min_lr: Input should be greater than or equal to 0 (got -1)\n"
    )
    assert main([*run, "--set", "optim={lr = -1, lrr = 2}"]) == 2  # the whole section: the file's optim is gone
    assert capsys.readouterr().err == (
        "train run: error: (command line): optim.lr: Input should be greater than 0 (got -1)\n"
        "train run: error: (command line): optim.lrr: Extra inputs are not permitted (got 2)\n"
    )
    config.write_text("[model]\nfreeze_groups = 2\n")
    assert main([*run, "--set", "model.freeze_steps=0"]) == 2  # the whole model holds both
    assert capsys.readouterr().err == (
        f"train run: error: {config} + (command line): (top level): "
        "Value error, model.freeze_groups needs model.freeze_steps > 0 (a frozen backbone never learns)\n"
    )
    assert not (tmp_path / "run").exists()
