"""Config loading: presets, YAML files, typed `key.sub=value` overrides and validation errors."""

from dataclasses import dataclass, field

import pytest

from learngene_core.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    load_config,
    preset_names,
    save_config,
)
from learngene_core.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------- presets


def test_preset_digits_vit_loads_into_experiment_config():
    cfg = load_config("digits-vit")
    assert isinstance(cfg, ExperimentConfig)
    assert isinstance(cfg.model, ModelConfig) and isinstance(cfg.data, DataConfig)
    assert isinstance(cfg.train, TrainConfig)
    assert cfg.model.source == "timm" and cfg.model.name == "vit_tiny_patch16_224"
    assert cfg.model.kwargs["patch_size"] == 4
    assert cfg.data.name == "digits" and cfg.data.image_size == 16
    assert cfg.train.lr == pytest.approx(2e-3) and isinstance(cfg.train.lr, float)


def test_unknown_preset_name_lists_the_presets():
    with pytest.raises(ConfigError) as info:
        load_config("digits-vitt")
    msg = str(info.value)
    assert "digits-vitt" in msg
    for name in preset_names():
        assert name in msg
    assert "did you mean 'digits-vit'" in msg


def test_missing_yaml_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "exp.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_a_directory_as_config_is_named_as_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a YAML file") as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = write(tmp_path / "bad.yaml", "train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


# ------------------------------------------------------------------------------------- overrides


def test_overrides_are_parsed_with_yaml_typing():
    cfg = load_config(
        "digits-vit",
        [
            "train.epochs=5",
            "train.lr=1e-3",  # PyYAML reads this as the string '1e-3'
            "train.label_smoothing=0.1",
            "train.progress=false",
            "train.max_grad_norm=null",
            "train.weight_decay=0",  # an int where a float is expected
            "data.classes=[3, 1, 2]",
            "data.path=/some/dir",
            "model.name=deit_tiny_patch16_224",
        ],
    )
    assert cfg.train.epochs == 5 and type(cfg.train.epochs) is int
    assert cfg.train.lr == 1e-3 and type(cfg.train.lr) is float
    assert cfg.train.label_smoothing == 0.1
    assert cfg.train.progress is False
    assert cfg.train.max_grad_norm is None
    assert cfg.train.weight_decay == 0.0 and type(cfg.train.weight_decay) is float
    assert cfg.data.classes == [3, 1, 2]
    assert cfg.data.path == "/some/dir"
    assert cfg.model.name == "deit_tiny_patch16_224"


def test_float_written_as_1e_minus_3_in_a_yaml_file_is_a_float(tmp_path):
    path = write(tmp_path / "exp.yaml", "train:\n  lr: 1e-3\n  min_lr_ratio: 5e-1\n")
    cfg = load_config(path)
    assert cfg.train.lr == 1e-3 and type(cfg.train.lr) is float
    assert cfg.train.min_lr_ratio == 0.5


def test_override_into_a_dict_field_keeps_its_other_entries():
    cfg = load_config("digits-vit", ["model.kwargs.depth=2", "data.options.flip=true"])
    assert cfg.model.kwargs["depth"] == 2
    assert cfg.model.kwargs["patch_size"] == 4 and cfg.model.kwargs["embed_dim"] == 64
    assert cfg.data.options == {"flip": True}


def test_overrides_do_not_mutate_between_loads():
    load_config("digits-vit", ["model.kwargs.depth=1"])
    assert load_config("digits-vit").model.kwargs["depth"] == 4


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("digits-vit", ["train.epochs"])


@pytest.mark.parametrize(
    ("override", "dotted", "suggestion"),
    [
        ("trian.lr=0.1", "trian", "train"),
        ("train.epoch=3", "train.epoch", "epochs"),
        ("model.kwarg.depth=2", "model.kwarg", "kwargs"),
    ],
)
def test_unknown_key_names_dotted_key_source_and_suggestion(override, dotted, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config("digits-vit", [override])
    msg = str(info.value)
    assert f"unknown key '{dotted}'" in msg
    assert "digits-vit" in msg  # the source
    assert f"did you mean '{suggestion}'" in msg


def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    path = write(tmp_path / "exp.yaml", "data:\n  batchsize: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "'data.batchsize'" in msg and "did you mean 'batch_size'" in msg


@pytest.mark.parametrize("override", ["train.epochs=abc", "train.epochs=true", "train.epochs=1.5"])
def test_wrong_type_names_the_key(override):
    with pytest.raises(ConfigError, match="'train.epochs' must be int"):
        load_config("digits-vit", [override])


def test_wrong_type_inside_a_list_names_the_item():
    with pytest.raises(ConfigError, match=r"'data.classes\[1\]' must be int"):
        load_config("digits-vit", ["data.classes=[0, x]"])


def test_bool_is_not_accepted_as_a_float():
    with pytest.raises(ConfigError, match="'train.lr' must be float"):
        load_config("digits-vit", ["train.lr=true"])


@pytest.mark.parametrize(
    ("override", "section", "detail"),
    [
        ("train.lr=-1", "train", "lr must be > 0"),
        ("data.channels=2", "data", "channels must be 1 or 3"),
        ("train.epochs=0", "train", "epochs must be > 0"),
        ("train.min_lr_ratio=1.5", "train", "min_lr_ratio"),
    ],
)
def test_out_of_range_value_is_a_config_error(override, section, detail):
    with pytest.raises(ConfigError) as info:
        load_config("digits-vit", [override])
    msg = str(info.value)
    assert f"'{section}'" in msg and detail in msg


def test_value_outside_a_literal_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        load_config("digits-vit", ["train.scheduler=foo"])
    msg = str(info.value)
    assert "'train.scheduler'" in msg and "'foo'" in msg
    assert "cosine" in msg and "linear" in msg and "constant" in msg


def test_section_given_a_scalar_is_a_config_error():
    with pytest.raises(ConfigError, match="'train' must be a mapping"):
        load_config("digits-vit", ["train=3"])


# ------------------------------------------------------------------------------------ round trip


def test_save_config_then_load_config_round_trips(tmp_path):
    cfg = load_config(
        "digits-vit",
        ["train.lr=1e-5", "data.classes=[1, 0]", "train.max_steps=7", "model.checkpoint=w.safetensors"],
    )
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert type(again.train.lr) is float
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write cleaned up


def test_default_experiment_config_round_trips(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(ExperimentConfig(), path)
    assert load_config(path) == ExperimentConfig()


# ----------------------------------------------------------------------- method packages' configs


@dataclass
class InheritSettings:
    layers: list[int] = field(default_factory=lambda: [0, 1])
    scale: float = 1.0

    def __post_init__(self):
        if not self.layers:
            raise ValueError("layers must not be empty")


@dataclass
class MethodExperiment:
    ancestor: ExperimentConfig = field(default_factory=ExperimentConfig)
    descendant: ExperimentConfig = field(default_factory=ExperimentConfig)
    inherit: InheritSettings = field(default_factory=InheritSettings)
    name: str = "method"


METHOD_YAML = """\
ancestor:
  model: {name: vit_small_patch16_224}
  train: {epochs: 2, lr: 1e-3}
descendant:
  data: {name: digits, batch_size: 16}
inherit:
  layers: [2, 3]
"""


def test_method_config_nesting_core_dataclasses_loads_and_validates(tmp_path):
    path = write(tmp_path / "method.yaml", METHOD_YAML)
    cfg = load_config(path, ["inherit.scale=5e-1", "descendant.train.epochs=4"], cls=MethodExperiment)
    assert isinstance(cfg, MethodExperiment)
    assert isinstance(cfg.ancestor, ExperimentConfig) and isinstance(cfg.descendant.train, TrainConfig)
    assert cfg.ancestor.model.name == "vit_small_patch16_224"
    assert cfg.ancestor.train.lr == 1e-3 and cfg.ancestor.train.epochs == 2
    assert cfg.descendant.data.batch_size == 16 and cfg.descendant.train.epochs == 4
    assert cfg.inherit == InheritSettings(layers=[2, 3], scale=0.5)
    assert cfg.descendant.model == ModelConfig()  # untouched sections keep their defaults


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("descendant.train.epoch=3", "unknown key 'descendant.train.epoch'"),
        ("ancestor.train.lr=-1", "'ancestor.train'"),
        ("inherit.layers=[a]", "'inherit.layers[0]' must be int"),
        ("inherit.layers=[]", "layers must not be empty"),
    ],
)
def test_method_config_errors_name_the_nested_key(tmp_path, override, expected):
    path = write(tmp_path / "method.yaml", METHOD_YAML)
    with pytest.raises(ConfigError) as info:
        load_config(path, [override], cls=MethodExperiment)
    msg = str(info.value)
    assert expected in msg and str(path) in msg


def test_method_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path / "method.yaml", METHOD_YAML), cls=MethodExperiment)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml", cls=MethodExperiment) == cfg


def test_a_nested_override_keeps_the_parent_factory_defaults_of_its_section():
    """`align.epochs=30` must not reset `align.enabled`, which the parent's default_factory set to False."""
    import dataclasses

    from learngene_core.config import from_dict

    @dataclasses.dataclass
    class Align:
        enabled: bool = True
        epochs: int = 5

    @dataclasses.dataclass
    class Stage:
        lr: float = 0.1
        align: Align = dataclasses.field(default_factory=lambda: Align(enabled=False, epochs=2))

    @dataclasses.dataclass
    class Top:
        stage: Stage = dataclasses.field(default_factory=lambda: Stage(lr=0.5))

    cfg = from_dict(Top, {"stage": {"align": {"epochs": 30}}})
    assert cfg.stage == Stage(lr=0.5, align=Align(enabled=False, epochs=30))
    assert from_dict(Top, {}).stage == Stage(lr=0.5, align=Align(enabled=False, epochs=2))
    assert from_dict(Top, {"stage": {"lr": 1.0}}).stage.align == Align(enabled=False, epochs=2)
