"""Configs: typos and wrong types are errors naming the key; overrides parse as YAML; builtins resolve."""

import pytest

from ftpdet.config import load_config
from ftpdet.errors import ConfigError


def test_unknown_key_is_named_with_a_close_match(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'train.lrr' \(did you mean 'lr'\?\)"):
        load_config(p)


def test_unknown_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trian:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"'train.epochs': .*integer.*'many'"):
        load_config(p)


def test_overrides_parse_values_as_yaml():
    cfg = load_config(None, ["train.lr=3e-4", "model.strides=[8,16,32,64]", "data.photometric=false"])
    assert cfg.train.lr == 3e-4 and cfg.model.strides == [8, 16, 32, 64] and cfg.data.photometric is False
    with pytest.raises(ConfigError, match="unknown key 'train.nope'"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.lr"])


def test_bad_strides_and_missing_file():
    with pytest.raises(ConfigError, match="strides must be one of"):
        load_config(None, ["model.strides=[8,32]"])
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config("nope.yaml")


def test_invalid_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        load_config(p)


def test_builtin_configs_load_and_root_fills_paths():
    cfg = load_config("demo_student", ["data.root=/d"])
    assert cfg.model.backbone == "mobilenet_v3_small"
    assert cfg.data.train_ann == "/d/annotations/instances_train.json" and cfg.data.val_images == "/d/val"
    teacher = load_config("demo_teacher")
    assert teacher.model.backbone == "resnet18"
