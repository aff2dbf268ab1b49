"""Typed configs: YAML presets + `key.sub=value` overrides, validated before any work starts.

A config is a tree of dataclasses. `load_config` reads a preset name or a YAML path, applies overrides and
builds the dataclass tree with `from_dict`, which rejects unknown keys, wrong types and bad values with one
message naming the key and the file. Method packages define their own dataclasses (nesting the core ones)
and reuse the same loader.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .errors import CheckpointError, ConfigError
from .registry import did_you_mean

C = TypeVar("C")


@dataclass
class ModelConfig:
    """Which network to build: any timm model, or a Hugging Face causal LM from a config or a local path."""

    source: Literal["timm", "hf"] = "timm"
    # timm: a model name such as vit_tiny_patch16_224. hf: a model_type such as llama/gpt2, or a local directory.
    name: str = "vit_tiny_patch16_224"
    # timm: constructor arguments (img_size, patch_size, depth, embed_dim, num_heads, ...). hf: config fields.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Optional local weights file (safetensors or torch state dict) loaded after building the model.
    checkpoint: str | None = None


@dataclass
class AugmentConfig:
    """DeiT's training augmentations, from timm; all off by default (`data.augment`).

    RandAugment runs per image on datasets read from files (imagenet, image-folder, mini-imagenet, fgvc);
    random erasing, Mixup/CutMix and repeated augmentation run on the batches of any image classification data.
    """

    auto_augment: str | None = None  # timm policy, e.g. rand-m9-mstd0.5-inc1 (DeiT's RandAugment)
    re_prob: float = 0.0  # random erasing probability per image (DeiT: 0.25)
    re_mode: Literal["const", "rand", "pixel"] = "pixel"
    re_count: int = 1
    mixup: float = 0.0  # Mixup alpha (DeiT: 0.8; 0 disables)
    cutmix: float = 0.0  # CutMix alpha (DeiT: 1.0; 0 disables)
    mixup_prob: float = 1.0  # probability of mixing a batch at all
    mixup_switch_prob: float = 0.5  # probability of CutMix instead of Mixup when both are on
    repeats: int = 1  # repeated augmentation: each image this many times per epoch, shuffled (DeiT: 3)

    def __post_init__(self) -> None:
        for name in ("re_prob", "mixup_prob", "mixup_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        _check_positive(self, "re_count", "repeats")

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (targets become class probabilities)."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0


@dataclass
class DataConfig:
    """Which dataset to load and how to batch it; see `learngene list` for the registered names."""

    name: str = "digits"
    path: str | None = None  # root directory or file of a dataset on disk
    image_size: int | None = None  # resize images to this square size (None: the dataset's own size)
    channels: int | None = None  # force 1 or 3 input channels (None: the dataset's own)
    batch_size: int = 64
    eval_batch_size: int | None = None  # None: same as batch_size
    num_workers: int = 0
    classes: list[int] | None = None  # keep only these labels, relabelled 0..k-1 in this order
    samples_per_class: int | None = None  # cap training samples per class (few-shot transfer)
    seq_len: int = 64  # text datasets: tokens per sample
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training augmentations (timm's)

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size", "seq_len")
        if self.augment.mixes and self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even with augment.mixup/cutmix (timm's Mixup), got {self.batch_size}"
            )
        _check_positive(self, "image_size", "eval_batch_size", "samples_per_class", optional=True)
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TrainConfig:
    """Optimisation, schedule, evaluation and checkpointing of the core Trainer."""

    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs when set)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    label_smoothing: float = 0.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    eval_every: int | None = None  # optimizer steps between evaluations (None: once per epoch)
    checkpoint_every: int | None = None  # optimizer steps between `last` checkpoints (None: once per epoch)
    log_every: int = 10  # optimizer steps between train-loss records
    best_metric: str = "accuracy"  # validation metric that selects the `best` checkpoint
    best_mode: Literal["max", "min"] = "max"
    # what best/, final/ and checkpoints/last/ hold: every weight, or only the trainable parameters and the
    # buffers (parameter-efficient tuning of a big frozen base: no copy of the base per checkpoint)
    checkpoint_weights: Literal["all", "trainable"] = "all"
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "grad_accum_steps", "log_every")
        _check_positive(self, "max_steps", "eval_every", "checkpoint_every", optional=True)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


@dataclass
class ExperimentConfig:
    """What `learngene train` runs: a model trained from scratch on a dataset."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)


MAX_SEED = 2**32 - 1  # numpy's seeding accepts 0 .. 2**32 - 1


def check_seed(seed: int) -> None:
    """A seed numpy, torch and python all accept (ValueError naming `seed` otherwise)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")


def _check_positive(obj: Any, *names: str, optional: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None and optional:
            continue
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


# --------------------------------------------------------------------------------------------- validation


def from_dict(
    cls: type[C], data: Any, *, source: str = "config", prefix: str = "", defaults: C | None = None
) -> C:
    """Build dataclass `cls` from plain data, failing with one ConfigError naming the key and `source`.

    Keys that `data` leaves out keep their values in `defaults` (when given) or the class defaults. A
    nested section starts from the parent field's default instance, so `align.epochs=30` changes only
    `epochs` of an `align` whose `default_factory` sets other values, never resets them to the class's.
    """
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}'{did_you_mean(str(key), list(fields))}; "
                f"valid keys here: {', '.join(fields)}"
            )
    kwargs = {f.name: getattr(defaults, f.name) for f in fields.values()} if defaults is not None else {}
    for key, value in data.items():
        section_default = _section_default(fields[key], hints[key], defaults)
        if section_default is not None and isinstance(value, dict):
            kwargs[key] = from_dict(
                hints[key], value, source=source, prefix=f"{prefix}{key}.", defaults=section_default
            )
        else:
            kwargs[key] = _convert(hints[key], value, source, f"{prefix}{key}")
    try:
        if isinstance(kwargs.get("seed"), int):  # every config's seed, whichever package defines the config
            check_seed(kwargs["seed"])
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        section = f"'{prefix.rstrip('.')}'" if prefix else "config"
        message = str(exc)
        if message.split(" ", 1)[0] in fields:  # "lr must be > 0" -> "train.lr must be > 0"
            message = prefix + message
        raise ConfigError(f"{source}: bad value in {section}: {message}") from None


def _section_default(field: dataclasses.Field, tp: Any, defaults: Any) -> Any:
    """The instance a nested dataclass section starts from: the parent's value, else the field's default."""
    if not dataclasses.is_dataclass(tp):
        return None
    if defaults is not None:
        value = getattr(defaults, field.name)
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        value = None if field.default is dataclasses.MISSING else field.default
    return value if isinstance(value, tp) else None


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, source, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return (
            [_convert(args[0], item, source, f"{key}[{i}]") for i, item in enumerate(value)]
            if args
            else value
        )
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # `.nan` passes `lr <= 0` checks; `.inf` passes every bound
                raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} for '{key}'")
    raise ConfigError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")


# -------------------------------------------------------------------------------------------- loading


def preset_names(package: str = "learngene_core.configs") -> list[str]:
    """Names of the YAML presets shipped in `package`."""
    root = resources.files(package)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_yaml(config: str | Path, package: str = "learngene_core.configs") -> tuple[dict, str]:
    """Read a YAML file path, or the preset of that name in `package`; return (data, source label)."""
    path = Path(config)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ConfigError(f"config {path} is a directory, not a YAML file")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text, source = read_utf8(path, ConfigError), str(path)
    else:
        names = preset_names(package)
        if str(config) not in names:
            raise ConfigError(
                f"no config file or preset named '{config}'{did_you_mean(str(config), names)}; "
                f"presets: {', '.join(names)}"
            )
        text, source = resources.files(package).joinpath(f"{config}.yaml").read_text(), f"preset '{config}'"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return data, source


def read_utf8(path: Path, error: type[Exception] = ConfigError) -> str:
    """The UTF-8 text of `path`; `error` naming the file when it is not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_json_file(path: str | Path, error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """A JSON object from a side file (metadata, manifest, adapter config); `error` naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text: not a JSON file") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); is it truncated?") from None
    if not isinstance(data, dict):
        raise error(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def read_yaml_file(path: Path, error: type[Exception] = ConfigError) -> Any:
    """The YAML data of a side file such as a run's config.yaml; `error` naming the file if it is unreadable."""
    try:
        return yaml.safe_load(read_utf8(path, error))
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `key.sub=value` applied (value parsed as YAML)."""
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[leaf] = value
    return data


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def load_config(
    config: str | Path,
    overrides: list[str] | None = None,
    cls: type[C] = ExperimentConfig,  # type: ignore[assignment]
    package: str = "learngene_core.configs",
) -> C:
    """Load a preset name or YAML path into `cls`, applying `key.sub=value` overrides first."""
    data, source = read_yaml(config, package)
    data = apply_overrides(data, overrides or [])
    source = f"{source} (with overrides)" if overrides else source
    return from_dict(cls, data, source=source)


def to_dict(config: Any) -> dict:
    """Plain-data view of a config dataclass (what `save_config` writes)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run can be reproduced from its output dir."""
    from .checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))
