"""`build_datasets`: run the registered builder, then apply the dataset-independent options of DataConfig."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from .catalog import call_builder
from .image_files import ImageFiles
from .partition import cap_per_class
from .splits import DatasetSplits
from .transforms import ImageAdapter
from .views import ClassView

_CLASSIFICATION_KEYS = ("classes", "samples_per_class", "image_size", "channels")


def build_datasets(cfg: DataConfig, seed: int) -> DatasetSplits:
    """Build dataset `cfg.name` deterministically for `seed`, applying classes/samples_per_class/image_size/channels."""
    splits = call_builder(cfg.name, cfg, seed)
    if cfg.augment.auto_augment and not isinstance(splits.train, ImageFiles):
        raise DataError(
            f"data.augment.auto_augment (RandAugment) needs images read from files (imagenet, image-folder, "
            f"mini-imagenet, fgvc); '{cfg.name}' holds tensors: use re_prob/mixup/cutmix/repeats"
        )
    if splits.task == "classification":
        splits = _apply_classification_options(splits, cfg, seed)
    else:
        for key in _CLASSIFICATION_KEYS:
            if getattr(cfg, key) is not None:
                raise DataError(
                    f"data.{key} applies to image classification only; '{cfg.name}' is {splits.task}"
                )
    if len(splits.train) == 0:  # type: ignore[arg-type]
        raise DataError(f"dataset '{cfg.name}' has no training samples (check data.classes and data.path)")
    if splits.task == "classification" and (splits.num_classes or 0) < 2:
        names = f" ({', '.join(splits.class_names)})" if splits.class_names else ""
        raise DataError(
            f"dataset '{cfg.name}' has {splits.num_classes} class{names}: a classifier needs at least two "
            "(every prediction would be right); check data.path and data.classes"
        )
    return replace(splits, description=splits.describe(cfg.name))


def _apply_classification_options(splits: DatasetSplits, cfg: DataConfig, seed: int) -> DatasetSplits:
    assert splits.num_classes is not None
    label_map = None if cfg.classes is None else _label_map(cfg.classes, splits.num_classes, cfg.name)
    adapter, input_shape = _adapter(splits.input_shape, cfg)
    views = {}
    for part in ("train", "val", "test"):
        dataset = getattr(splits, part)
        targets = dataset.targets
        indices = np.arange(len(targets))
        if label_map is not None:
            indices = np.asarray([i for i, t in enumerate(targets) if int(t) in label_map], dtype=np.int64)
        if part == "train" and cfg.samples_per_class is not None:
            indices = indices[cap_per_class([targets[i] for i in indices], cfg.samples_per_class, seed)]
        if label_map is not None or adapter is not None or len(indices) != len(targets):
            dataset = ClassView(dataset, indices, label_map, adapter)
        views[part] = dataset
    if label_map is None:
        return replace(splits, **views, input_shape=input_shape)
    names = splits.class_names
    return replace(
        splits,
        **views,
        input_shape=input_shape,
        num_classes=len(label_map),
        class_names=None if names is None else [names[c] for c in label_map],
    )


def _label_map(classes: Sequence[int], num_classes: int, name: str) -> dict[int, int]:
    """Old label -> new label for `data.classes`, which lists old labels in their new order."""
    if not classes:
        raise DataError("data.classes is empty; list at least one label or leave it unset")
    label_map: dict[int, int] = {}
    for label in classes:
        if not 0 <= label < num_classes:
            raise DataError(
                f"data.classes: label {label} is not a class of '{name}' (labels 0..{num_classes - 1})"
            )
        if label in label_map:
            raise DataError(f"data.classes: label {label} is listed twice")
        label_map[label] = len(label_map)
    return label_map


def _adapter(shape: tuple[int, ...], cfg: DataConfig) -> tuple[ImageAdapter | None, tuple[int, ...]]:
    """The image adapter for data.image_size/channels (None when it would change nothing) and the new shape."""
    if cfg.image_size is None and cfg.channels is None:
        return None, shape
    if len(shape) != 3:
        raise DataError(
            f"data.image_size/channels apply to (C, H, W) images; '{cfg.name}' has inputs of shape {shape}"
        )
    adapter = ImageAdapter(cfg.image_size, cfg.channels)
    new_shape = adapter.output_shape(shape)
    return (adapter if new_shape != tuple(shape) else None), new_shape
