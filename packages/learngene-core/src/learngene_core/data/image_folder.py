"""`image-folder`: any folder of class sub-folders of images, with optional val/test folders."""

from __future__ import annotations

from ..config import DataConfig
from .catalog import DATASETS
from .image_files import image_file_splits, scan_class_folders, scan_split_folders
from .paths import dataset_path, layout_error
from .splits import DatasetSplits

LAYOUT = "root/train/<class>/*.jpg|png|... plus optional root/val/<class>/ and root/test/<class>/, or just root/<class>/"
SOURCE = "put one sub-folder of images per class under data.path"


@DATASETS.register("image-folder")
def build_image_folder(
    cfg: DataConfig,
    seed: int,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    augment: bool = True,
    pool: bool = False,
) -> DatasetSplits:
    """Class-folder images at data.image_size (default 224); val/test folders that are absent are carved from train."""
    root = dataset_path(cfg, "image-folder", LAYOUT, SOURCE)
    if not root.is_dir():
        raise layout_error("image-folder", root, "a file instead of a folder", LAYOUT, SOURCE)
    found = scan_split_folders(root) if (root / "train").is_dir() else {"train": scan_class_folders(root)}
    if not found["train"]:
        raise layout_error("image-folder", root, "no training images in class folders", LAYOUT, SOURCE)
    return image_file_splits(
        "image-folder",
        found,
        image_size=cfg.image_size,
        augment=augment,
        auto_augment=cfg.augment.auto_augment,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        pool=pool,
        seed=seed,
    )
