"""The config building blocks (read a file, apply overrides, validate) and the ingest/shards loader built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pawpipe.common.config import ConfigError, apply_overrides, load_config, read_config_file, validate


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(0.1, gt=0.0)
    name: str = "adamw"


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    optim: Inner = Inner()


class NeedsOne(BaseModel):
    a: int | None = None
    b: int | None = None

    @model_validator(mode="after")
    def _one(self) -> NeedsOne:
        if self.a is None and self.b is None:
            raise ValueError("expected one of a or b")
        return self


def test_read_config_file_toml_and_json(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('seed = 3\n[optim]\nlr = 1e-4\nname = "sgd"\n')
    (tmp_path / "c.json").write_text('{"seed": 3, "optim": {"lr": 0.0001, "name": "sgd"}}')
    expected = {"seed": 3, "optim": {"lr": 1e-4, "name": "sgd"}}
    assert read_config_file(tmp_path / "c.toml") == expected
    assert read_config_file(str(tmp_path / "c.json")) == expected
    (tmp_path / "t.json").write_text("seed = 3\n")
    assert read_config_file(tmp_path / "t.json", allow_json=False) == {"seed": 3}  # TOML whatever the name


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("bad.toml", "[data\n", "Expected ']' at the end of a table declaration (at line 1, column 6)"),
        ("bad.json", '{"seed": ', "Expecting value: line 1 column 10 (char 9)"),
        ("missing.toml", None, "[Errno 2] No such file or directory: '{path}'"),
    ],
)
def test_read_config_file_errors_name_the_file(tmp_path: Path, name: str, text: str | None, reason: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    reason = reason.format(path=path)
    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    assert str(error.value) == f"{path}: cannot read config: {reason}"
    assert error.value.reason == reason and error.value.details == []


def test_apply_overrides_dotted_keys_into_sections() -> None:
    doc = {"seed": 3, "optim": {"lr": 1e-4}}
    applied = apply_overrides(doc, {"optim.name": "sgd", "seed": None, "data.loader.kind": "torch", "optim.lr": 0.5})
    assert doc == {"seed": 3, "optim": {"lr": 0.5, "name": "sgd"}, "data": {"loader": {"kind": "torch"}}}
    assert applied == ["optim.name", "data.loader.kind", "optim.lr"]  # what validate takes as overridden
    apply_overrides(doc, {"optim": {"lr": 2.0}})  # a whole section replaced
    assert doc == {"seed": 3, "optim": {"lr": 2.0}, "data": {"loader": {"kind": "torch"}}}


def test_apply_overrides_refuses_a_value_as_a_section() -> None:
    doc = {"seed": 3}
    with pytest.raises(ConfigError) as error:
        apply_overrides(doc, {"seed.x": 1})
    assert str(error.value) == "--set seed.x: 'seed' is not a section"


def test_validate_returns_the_model() -> None:
    assert validate(Outer, {"seed": 2, "optim": {"lr": 0.5}}, source="c.toml") == Outer(seed=2, optim=Inner(lr=0.5))


def test_validate_lists_every_error_one_line_each() -> None:
    with pytest.raises(ConfigError) as error:
        validate(Outer, {"seed": "x", "optim": {"lr": -1, "lrr": 1}}, source="c.toml")
    assert str(error.value).split("\n") == [
        "c.toml: seed: Input should be a valid integer, unable to parse string as an integer (got 'x')",
        "c.toml: optim.lr: Input should be greater than 0 (got -1)",
        "c.toml: optim.lrr: Extra inputs are not permitted (got 1)",
    ]
    assert [d["loc"] for d in error.value.details] == [("seed",), ("optim", "lr"), ("optim", "lrr")]
    assert error.value.reason == ""


class Span(BaseModel):
    lo: int = 0
    hi: int = 1

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.lo > self.hi:
            raise ValueError("expected lo <= hi")
        return self


class Keeps(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: float = Field(0.5, gt=0.0)
    keep_min: int = Field(1, ge=1)
    span: Span = Span()

    @model_validator(mode="after")
    def _fits(self) -> Keeps:
        if self.keep_min > 10 * self.keep:
            raise ValueError("keep_min above 10 x keep")
        return self


def test_validate_names_the_command_line_for_overridden_fields() -> None:
    doc = {"seed": "x", "optim": {"lr": -1, "lrr": 2}}
    with pytest.raises(ConfigError) as error:
        validate(Outer, doc, source="c.toml", overridden=["optim.lr", "optim.lrr"])
    assert str(error.value).split("\n") == [
        "c.toml: seed: Input should be a valid integer, unable to parse string as an integer (got 'x')",
        "(command line): optim.lr: Input should be greater than 0 (got -1)",
        "(command line): optim.lrr: Extra inputs are not permitted (got 2)",
    ]
    with pytest.raises(ConfigError) as error:  # a field under an overridden section came with it
        validate(Outer, {"seed": "x", "optim": {"lr": -1}}, source="c.toml", overridden=["optim"])
    assert str(error.value).split("\n") == [
        "c.toml: seed: Input should be a valid integer, unable to parse string as an integer (got 'x')",
        "(command line): optim.lr: Input should be greater than 0 (got -1)",
    ]


def test_validate_names_both_sources_for_a_whole_holding_an_override() -> None:
    with pytest.raises(ConfigError) as error:  # the model validator judges the file's keep and the flag's keep_min
        validate(Keeps, {"keep": 0.1, "keep_min": 5}, source="c.toml", overridden=["keep_min"])
    assert str(error.value) == "c.toml + (command line): (top level): Value error, keep_min above 10 x keep"
    with pytest.raises(ConfigError) as error:  # without a file the command line is the one source
        validate(Keeps, {"keep": 0.1, "keep_min": 5}, source="(command line)", overridden=["keep_min"])
    assert str(error.value) == "(command line): (top level): Value error, keep_min above 10 x keep"
    with pytest.raises(ConfigError) as error:  # a section holding an override; a key that only starts like one
        validate(
            Keeps,
            {"keep": 0.1, "keep_min": 0, "span": {"lo": 3, "hi": 2}},
            source="c.toml",
            overridden=["keep", "span.hi"],
        )
    assert str(error.value).split("\n") == [
        "c.toml: keep_min: Input should be greater than or equal to 1 (got 0)",
        "c.toml + (command line): span: Value error, expected lo <= hi (got {'lo': 3, 'hi': 2})",
    ]


def test_load_config_composes_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("seed = 3\n[optim]\nlr = 1e-4\n")
    assert load_config(path, {"seed": None, "optim": {"name": "sgd"}}, Outer) == Outer(seed=3, optim=Inner(name="sgd"))
    assert load_config(None, {"seed": 5}, Outer) == Outer(seed=5)


def test_validate_names_a_whole_model_error_top_level() -> None:
    with pytest.raises(ConfigError) as error:  # a model validator's input is the whole document: not repeated
        validate(NeedsOne, {}, source="c.toml")
    assert str(error.value) == "c.toml: (top level): Value error, expected one of a or b"
    assert [d["loc"] for d in error.value.details] == [()]


def test_load_config_read_errors_keep_their_one_line_form(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ValueError) as error:
        load_config(str(bad), {}, Outer)
    assert type(error.value) is ValueError
    assert str(error.value) == f"config {bad}: Expected ']' at the end of a table declaration (at line 1, column 6)"
    json_file = tmp_path / "c.json"
    json_file.write_text('{"seed": 1}')
    with pytest.raises(ValueError) as error:  # ingest and shards read TOML only, whatever the suffix
        load_config(json_file, {}, Outer)
    assert str(error.value) == f"config {json_file}: Invalid statement (at line 1, column 1)"


def test_load_config_lists_every_invalid_field(tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.toml"
    invalid.write_text('seed = "x"\n[optim]\nlr = -1\n')
    with pytest.raises(ConfigError) as error:
        load_config(invalid, {"optim.lrr": 1}, Outer)
    assert str(error.value).split("\n") == [
        f"{invalid}: seed: Input should be a valid integer, unable to parse string as an integer (got 'x')",
        f"{invalid}: optim.lr: Input should be greater than 0 (got -1)",
        "(command line): optim.lrr: Extra inputs are not permitted (got 1)",
    ]
    with pytest.raises(ConfigError) as error:
        load_config(None, {"optim": 3}, Outer)
    assert str(error.value) == "(command line): optim: Input should be a valid dictionary or instance of Inner (got 3)"
    with pytest.raises(ConfigError) as error:
        load_config(None, {}, NeedsOne)
    assert str(error.value) == "(command line): (top level): Value error, expected one of a or b"
