"""`imagenet-r`: ImageNet-R's 200 class folders of renditions, split 80/20 train/test by seed (DualPrompt style)."""

from __future__ import annotations

from ..config import DataConfig
from .catalog import DATASETS
from .image_files import image_file_splits, scan_class_folders
from .paths import dataset_path, layout_error
from .splits import DatasetSplits

LAYOUT = (
    "root/<wnid>/*.jpg class folders (the extracted imagenet-r/ folder; data.path may be it or its parent)"
)
SOURCE = "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar, extract it and set data.path=<folder>"


@DATASETS.register("imagenet-r")
def build_imagenet_r(
    cfg: DataConfig,
    seed: int,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    augment: bool = True,
) -> DatasetSplits:
    """ImageNet-R renditions at data.image_size (default 224); test carved per class from the one folder set."""
    root = dataset_path(cfg, "imagenet-r", LAYOUT, SOURCE)
    folder = root / "imagenet-r" if (root / "imagenet-r").is_dir() else root
    if not folder.is_dir():
        raise layout_error("imagenet-r", root, "a file instead of a folder", LAYOUT, SOURCE)
    samples = scan_class_folders(folder)
    if not samples:
        raise layout_error("imagenet-r", folder, "no images in <wnid>/ class folders", LAYOUT, SOURCE)
    return image_file_splits(
        "imagenet-r",
        {"train": samples},
        image_size=cfg.image_size,
        augment=augment,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        pool=False,
        seed=seed,
    )
