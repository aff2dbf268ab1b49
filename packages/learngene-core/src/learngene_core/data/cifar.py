"""`cifar100`: the CIFAR-100 "python version" pickles, read with a restricted unpickler, val carved from train."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .catalog import DATASETS
from .partition import stratified_split
from .paths import dataset_path, layout_error
from .safe_pickle import safe_load
from .splits import DatasetSplits
from .tensors import TensorImages, channel_mean_std

LAYOUT = "the folder cifar-100-python/ with files train, test and meta (data.path may be it or its parent)"
SOURCE = (
    "download the CIFAR-100 python version from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it and set data.path=<folder>"
)


@DATASETS.register("cifar100")
def build_cifar100(
    cfg: DataConfig,
    seed: int,
    *,
    label_kind: Literal["fine", "coarse"] = "fine",
    val_fraction: float = 0.1,
    augment: bool = True,
) -> DatasetSplits:
    """CIFAR-100 with fine (100) or coarse (20) labels; train gets random crop + flip when `augment`."""
    from torchvision.transforms import v2  # imported here: torchvision is slow to import

    root = dataset_path(cfg, "cifar100", LAYOUT, SOURCE)
    folder = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
    missing = [name for name in ("train", "test", "meta") if not (folder / name).is_file()]
    if missing:
        raise layout_error("cifar100", root, f"no file {', '.join(missing)}", LAYOUT, SOURCE)
    names = _load(folder / "meta", f"{label_kind}_label_names")[f"{label_kind}_label_names"]
    train_images, train_labels = _load_split(folder / "train", label_kind, len(names))
    test_images, test_labels = _load_split(folder / "test", label_kind, len(names))
    train_idx, val_idx, _ = stratified_split(train_labels, val_fraction, 0.0, seed)
    mean, std = channel_mean_std(train_images[train_idx])
    normalize = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize((mean / 255).tolist(), (std / 255).tolist())]
    )
    train_transform = (
        v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), normalize])
        if augment
        else normalize
    )
    return DatasetSplits(
        train=TensorImages(train_images[train_idx], [train_labels[i] for i in train_idx], train_transform),
        val=TensorImages(train_images[val_idx], [train_labels[i] for i in val_idx], normalize),
        test=TensorImages(test_images, test_labels, normalize),
        task="classification",
        input_shape=(3, 32, 32),
        num_classes=len(names),
        class_names=[str(name) for name in names],
    )


def _load_split(file: Path, label_kind: str, num_classes: int) -> tuple[torch.Tensor, list[int]]:
    """uint8 images (N, 3, 32, 32) and integer labels of one CIFAR-100 batch file."""
    batch = _load(file, "data", f"{label_kind}_labels")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = [int(label) for label in batch[f"{label_kind}_labels"]]
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{file}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}"
        )
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise DataError(f"{file}: label {bad[0]} is outside 0..{num_classes - 1}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), labels


def _load(file: Path, *keys: str) -> dict[str, Any]:
    """Unpickle a CIFAR file safely and check it is a dict holding `keys`."""
    try:
        with open(file, "rb") as handle:
            content = safe_load(handle)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{file}: refusing to unpickle ({exc}); CIFAR-100 files hold only arrays and lists"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{file}: not a CIFAR-100 python pickle ({type(exc).__name__}: {exc})") from None
    missing = [key for key in keys if not isinstance(content, dict) or key not in content]
    if missing:
        raise DataError(f"{file}: not a CIFAR-100 python pickle (no '{missing[0]}' entry)")
    return content
