"""`vtab-1k`: one VTAB-1k task in the image-list layout (train800val200.txt, test.txt: `path label` per line).

The task folder holds the list files and the images they name (paths relative to the folder). Protocol
`train800val200` (the benchmark's): train on all 1000 images, report test; val is val200.txt (a subset of the
training images, a sanity check) or, without it, test. Protocol `tune`: train800 / val200 / test for choosing
hyperparameters. Images are resized straight to data.image_size (default 224) without cropping or augmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..config import DataConfig, read_utf8
from ..errors import DataError
from .catalog import DATASETS
from .image_files import DEFAULT_IMAGE_SIZE, ImageFiles
from .paths import dataset_path, layout_error
from .splits import DatasetSplits

VTAB_TASKS = (
    "cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397",
    "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy",
    "clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi",
    "smallnorb_ele",
)  # fmt: skip
LAYOUT = "a VTAB-1k task folder with train800val200.txt and test.txt (lines 'relative/image/path label')"
SOURCE = (
    "use the extracted VTAB-1k of the SSF/NOAH releases; set data.path=<vtab-1k root> data.options.task=NAME"
)


def read_image_list(folder: Path, list_name: str) -> tuple[list[Path], list[int]]:
    """The (files, labels) named by `folder/list_name`, one `path label` per line; DataError on bad lines."""
    path = folder / list_name
    files, labels = [], []
    for number, line in enumerate(read_utf8(path, DataError).splitlines(), 1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        try:
            labels.append(int(label))
        except ValueError:
            raise DataError(f"{path}:{number}: expected 'image/path label', got {line.strip()!r}") from None
        if not name:
            raise DataError(f"{path}:{number}: expected 'image/path label', got {line.strip()!r}")
        files.append(folder / name)
    if not files:
        raise DataError(f"{path} lists no images")
    return files, labels


Listed = tuple[list[Path], list[int]]


def listed_image_splits(train: Listed, val: Listed, test: Listed, image_size: int | None) -> DatasetSplits:
    """Classification splits from (image paths, integer labels) lists, resized straight to image_size."""
    num_classes = max(max(train[1]), max(test[1])) + 1
    size = image_size or DEFAULT_IMAGE_SIZE
    transform = image_transform(size)
    return DatasetSplits(
        train=ImageFiles(*train, transform),
        val=ImageFiles(*val, transform),
        test=ImageFiles(*test, transform),
        task="classification",
        input_shape=(3, size, size),
        num_classes=num_classes,
        class_names=[str(c) for c in range(num_classes)],
    )


def image_transform(size: int):
    """Resize straight to size x size (no crop, no augmentation) and normalise with ImageNet statistics."""
    import torch
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        ]
    )


@DATASETS.register("vtab-1k")
def build_vtab(
    cfg: DataConfig,
    seed: int,
    *,
    task: str | None = None,
    protocol: Literal["train800val200", "tune"] = "train800val200",
) -> DatasetSplits:
    """A VTAB-1k task from its image lists: data.path is the vtab-1k root (with options.task) or a task folder."""
    root = dataset_path(cfg, "vtab-1k", LAYOUT, SOURCE)
    folder = root / task if task else root
    if task and not folder.is_dir():
        known = [t for t in VTAB_TASKS if (root / t).is_dir()]
        raise layout_error(
            "vtab-1k", root, f"no task folder '{task}' (found: {', '.join(known) or 'none'})", LAYOUT, SOURCE
        )
    lists = ("train800.txt", "val200.txt") if protocol == "tune" else ("train800val200.txt",)
    missing = [n for n in (*lists, "test.txt") if not (folder / n).is_file()]
    if missing:
        raise layout_error("vtab-1k", folder, f"no {', '.join(missing)}", LAYOUT, SOURCE)
    train = read_image_list(folder, lists[0])
    test = read_image_list(folder, "test.txt")
    if protocol == "tune" or (folder / "val200.txt").is_file():
        val = read_image_list(folder, "val200.txt")
    else:
        val = test
    return listed_image_splits(train, val, test, cfg.image_size)
