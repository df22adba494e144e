from pathlib import Path

import pytest

from train.config import ConfigError, load_train_config, parse_override


def test_toml_with_overrides(tmp_path: Path):
    path = tmp_path / "train.toml"
    path.write_text('seed = 3\n[data]\nshards = "s"\nbatch_size = 32\n[optim]\nlr = 1e-4\n')
    cfg = load_train_config(path, overrides=["optim.lr=5e-6", "loss.class_weights=none"], values={"data.batch_size": 64, "seed": None})
    assert cfg.seed == 3 and cfg.optim.lr == 5e-6 and cfg.data.batch_size == 64
    assert cfg.loss.class_weights == "none" and cfg.data.shards == Path("s")
    # defaults follow the users' setup
    assert (cfg.data.image_size, cfg.eval.patience, cfg.eval.best_metric, cfg.loss.label_smoothing) == (224, 5, "accuracy", 0.1)
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
