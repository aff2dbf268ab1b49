"""`imagenet` and `mini-imagenet`: ImageNet-style class folders, and mini-ImageNet's images/ + CSV layout.

When there is no test split, the labelled val folder is the test set and val is carved from train, so model
selection never looks at the reported numbers.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..config import DataConfig, read_utf8
from ..errors import DataError
from .catalog import DATASETS
from .image_files import Sample, image_file_splits, is_image, scan_split_folders
from .paths import dataset_path, layout_error
from .splits import DatasetSplits

FOLDER_LAYOUT = "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (optionally root/test/<wnid>/)"
IMAGENET_SOURCE = (
    "request ILSVRC-2012 from https://image-net.org/download.php, extract it and set data.path=<root>"
)
CSV_LAYOUT = "root/images/*.jpg with root/train.csv (and optionally val.csv, test.csv) of filename,label rows"
MINI_SOURCE = "build mini-ImageNet from ImageNet with the split CSVs of Ravi & Larochelle (2017) and set data.path=<root>"


@DATASETS.register("imagenet")
def build_imagenet(
    cfg: DataConfig, seed: int, *, val_fraction: float = 0.01, augment: bool = True, pool: bool = False
) -> DatasetSplits:
    """ILSVRC-2012 class folders at data.image_size (default 224); test = official val, val carved from train."""
    root = dataset_path(cfg, "imagenet", FOLDER_LAYOUT, IMAGENET_SOURCE)
    found = _folder_layout("imagenet", root, FOLDER_LAYOUT, IMAGENET_SOURCE)
    return image_file_splits(
        "imagenet",
        found,
        image_size=cfg.image_size,
        augment=augment,
        auto_augment=cfg.augment.auto_augment,
        val_fraction=val_fraction,
        test_fraction=0.0,
        pool=pool,
        seed=seed,
    )


@DATASETS.register("mini-imagenet")
def build_mini_imagenet(
    cfg: DataConfig,
    seed: int,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    augment: bool = True,
    pool: bool = False,
) -> DatasetSplits:
    """mini-ImageNet from class folders or images/ + CSVs; `pool` re-splits few-shot splits with disjoint classes."""
    layout = f"{CSV_LAYOUT}, or {FOLDER_LAYOUT}"
    root = dataset_path(cfg, "mini-imagenet", layout, MINI_SOURCE)
    if (root / "train.csv").is_file():
        found = _csv_layout(root, layout)
    else:
        found = _folder_layout("mini-imagenet", root, layout, MINI_SOURCE)
    return image_file_splits(
        "mini-imagenet",
        found,
        image_size=cfg.image_size,
        augment=augment,
        auto_augment=cfg.augment.auto_augment,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        pool=pool,
        seed=seed,
    )


def _folder_layout(name: str, root: Path, layout: str, source: str) -> dict[str, list[Sample]]:
    """Samples of root/{train,val,test}/<wnid>/; without a test folder the val folder becomes the test split."""
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise layout_error(name, root, f"no {part}/ folder", layout, source)
    if any(is_image(f) and f.is_file() for f in (root / "val").iterdir()):
        raise layout_error(
            name,
            root,
            "val/ holds images directly (arrange a flat ImageNet val folder into val/<wnid>/ class folders first, "
            "e.g. with the widely used valprep.sh script)",
            layout,
            source,
        )
    found = scan_split_folders(root)
    if not found["train"]:
        raise layout_error(name, root, "no images in train/<wnid>/ folders", layout, source)
    if "test" not in found:
        found["test"] = found.pop("val")
    return found


def _csv_layout(root: Path, layout: str) -> dict[str, list[Sample]]:
    """Samples listed in root/{train,val,test}.csv (columns filename,label) of images in root/images/."""
    images = root / "images"
    if not images.is_dir():
        raise layout_error("mini-imagenet", root, "train.csv but no images/ folder", layout, MINI_SOURCE)
    found = {}
    for part in ("train", "val", "test"):
        table = root / f"{part}.csv"
        if table.is_file():
            found[part] = _read_csv(table, images)
    return found


def _read_csv(table: Path, images: Path) -> list[Sample]:
    """(image path, label) rows of one split CSV, checking the columns and that every image exists."""
    reader = csv.DictReader(io.StringIO(read_utf8(table, DataError), newline=""))
    if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
        raise DataError(f"{table}: expected a header with columns filename,label, got {reader.fieldnames}")
    samples = [(images / row["filename"], row["label"]) for row in reader]
    missing = [path for path, _ in samples if not path.is_file()]
    if missing:
        raise DataError(
            f"{table}: {len(missing)} listed images are missing from {images}, e.g. {missing[0].name}"
        )
    if not samples:
        raise DataError(f"{table}: no rows")
    return samples
