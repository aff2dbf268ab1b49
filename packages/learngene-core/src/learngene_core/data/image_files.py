"""Image files on disk: class-folder scanning, a PIL-backed dataset, and assembly into splits with timm transforms.

Shared by `image-folder`, `imagenet` and `mini-imagenet`, whose builders only differ in how they find files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from .partition import stratified_split
from .splits import DatasetSplits

Sample = tuple[Path, str]  # (image file, class name)
DEFAULT_IMAGE_SIZE = 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFiles(Dataset):
    """Images read with PIL as RGB and passed through `transform`, with integer labels in `.targets`."""

    def __init__(
        self, files: list[Path], targets: list[int], transform: Callable[[Image.Image], Tensor]
    ) -> None:
        self.files = files
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        return self.transform(rgb), torch.tensor(self.targets[index], dtype=torch.long)


def is_image(path: Path) -> bool:
    """Whether `path` has an image file extension (the ones torchvision's ImageFolder accepts)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def scan_class_folders(folder: Path) -> list[Sample]:
    """Every image under `folder/<class>/` (searched recursively), sorted so the order never depends on the OS."""
    samples: list[Sample] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        samples += [(f, class_dir.name) for f in sorted(class_dir.rglob("*")) if is_image(f) and f.is_file()]
    return samples


def scan_split_folders(root: Path) -> dict[str, list[Sample]]:
    """The samples of whichever of root/train, root/val and root/test exist."""
    return {
        part: scan_class_folders(root / part) for part in ("train", "val", "test") if (root / part).is_dir()
    }


def image_file_splits(
    name: str,
    found: dict[str, list[Sample]],
    *,
    image_size: int | None,
    augment: bool,
    auto_augment: str | None = None,
    val_fraction: float,
    test_fraction: float,
    pool: bool,
    seed: int,
) -> DatasetSplits:
    """Label the found splits by sorted class name, carve missing val/test from train, attach timm transforms.

    With `pool`, all found images are merged and re-split, for layouts whose splits hold different classes.
    `auto_augment` (a timm policy such as rand-m9-mstd0.5-inc1, `data.augment.auto_augment`) adds RandAugment to
    the training transform.
    """
    if auto_augment and not augment:
        raise DataError(f"data.augment.auto_augment needs data.options.augment=true for '{name}'")
    if pool:
        found = {"train": [sample for samples in found.values() for sample in samples]}
    class_names = sorted({label for _, label in found["train"]})
    for part in ("val", "test"):
        if part in found:
            _check_same_classes(name, part, class_names, {label for _, label in found[part]})
    index = {label: i for i, label in enumerate(class_names)}
    files = {part: [path for path, _ in samples] for part, samples in found.items()}
    targets = {part: [index[label] for _, label in samples] for part, samples in found.items()}
    carve_val = 0.0 if "val" in found else val_fraction
    carve_test = 0.0 if "test" in found else test_fraction
    if carve_val or carve_test:
        all_files, all_targets = files["train"], targets["train"]
        parts = stratified_split(all_targets, carve_val, carve_test, seed)
        for part, idx in zip(("train", "val", "test"), parts, strict=True):
            if part == "train" or part not in found:
                files[part] = [all_files[i] for i in idx]
                targets[part] = [all_targets[i] for i in idx]
    from timm.data import create_transform  # imported here: timm is slow to import and only needed now

    size = image_size or DEFAULT_IMAGE_SIZE
    eval_transform = create_transform(size)
    train_transform = (
        create_transform(size, is_training=True, auto_augment=auto_augment) if augment else eval_transform
    )
    return DatasetSplits(
        train=ImageFiles(files["train"], targets["train"], train_transform),
        val=ImageFiles(files.get("val", []), targets.get("val", []), eval_transform),
        test=ImageFiles(files.get("test", []), targets.get("test", []), eval_transform),
        task="classification",
        input_shape=(3, size, size),
        num_classes=len(class_names),
        class_names=class_names,
    )


def _check_same_classes(name: str, part: str, train_classes: list[str], classes: set[str]) -> None:
    if classes == set(train_classes):
        return
    extra = sorted(classes - set(train_classes))
    missing = sorted(set(train_classes) - classes)
    raise DataError(
        f"dataset '{name}': the {part} split's classes differ from train's "
        f"(only in {part}: {_some(extra)}; missing from {part}: {_some(missing)}); give every split the same "
        "class folders, or set data.options.pool=true to pool all images and re-split them"
    )


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit]) or "none"
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown
