import dataclasses
import json

import pytest

from tutorfinetune import ConfigError, TrainConfig, as_list


def test_defaults_round_trip_through_json():
    cfg = TrainConfig(lr=2e-5, eval_sets=("dev", "in-distribution"), max_train_examples=64)
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["eval_sets"] == ["dev", "in-distribution"]


def test_papermill_style_values_are_coerced():
    cfg = TrainConfig(lr="5e-5", num_epochs=2, max_steps="100", batch_size=16.0, group_by_length="false",
                      eval_sets="['dev', 'shift:games']", max_train_examples="None", precision="fp32")
    assert cfg.lr == 5e-5 and isinstance(cfg.lr, float)
    assert cfg.num_epochs == 2.0 and isinstance(cfg.num_epochs, float)
    assert cfg.max_steps == 100 and cfg.batch_size == 16 and isinstance(cfg.batch_size, int)
    assert cfg.group_by_length is False
    assert cfg.eval_sets == ("dev", "shift:games")
    assert cfg.max_train_examples is None


@pytest.mark.parametrize("field,value,fragment", [
    ("batch_size", 16.5, "batch_size must be an integer"),
    ("batch_size", "sixteen", "batch_size must be an integer"),
    ("lr", "fast", "lr must be a number"),
    ("lr", True, "boolean"),
    ("max_length", 4, "max_length must be >= 8"),
    ("precision", "fp8", "precision must be one of"),
    ("warmup", 1.5, "warmup"),
    ("lr", float("nan"), "finite"),
])
def test_bad_values_are_rejected_with_the_field_named(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**{field: value})


def test_unknown_field_suggests_the_close_name():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"batchsize": 8})


def test_frozen_and_replace():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert cfg.replace(lr="1e-4").lr == 1e-4


def test_as_list_reads_notebook_parameters():
    assert as_list("[0, 1, 2]") == [0, 1, 2]
    assert as_list("0,1") == [0, 1]
    assert as_list(3) == [3]
    assert as_list("['minilm']", str) == ["minilm"]
    with pytest.raises(ConfigError):
        as_list("[0, 'a']")
