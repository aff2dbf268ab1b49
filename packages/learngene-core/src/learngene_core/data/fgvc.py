"""`fgvc`: a fine-grained dataset (CUB, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars) from a local path.

Two layouts: VPT-style annotations (train.json / val.json / test.json, each mapping an image path relative to
the dataset folder, or to options.image_root, to an integer label), or class folders (train/<class>/...,
optional val/ and test/, missing splits carved from train).
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import read_json_file
from ..config import DataConfig
from ..errors import DataError
from .catalog import DATASETS
from .image_files import image_file_splits, scan_split_folders
from .paths import dataset_path, layout_error
from .splits import DatasetSplits
from .vtab import listed_image_splits

FGVC_TASKS = ("cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars")
LAYOUT = "train.json/val.json/test.json ({'image/path': label}) or train/<class>/ (+ val/, test/) folders"
SOURCE = "download the dataset and set data.path=<fgvc root> data.options.task=NAME (or data.path=<dataset folder>)"


def _read_annotations(path: Path, image_root: Path) -> tuple[list[Path], list[int]]:
    mapping = read_json_file(path, DataError)
    if not mapping:
        raise DataError(f"{path}: expected a non-empty mapping of image path to label")
    files, labels = [], []
    for name, label in sorted(mapping.items()):
        if isinstance(label, bool) or not isinstance(label, int):
            raise DataError(f"{path}: label of {name!r} must be an integer, got {label!r}")
        files.append(image_root / name)
        labels.append(label)
    return files, labels


@DATASETS.register("fgvc")
def build_fgvc(
    cfg: DataConfig,
    seed: int,
    *,
    task: str | None = None,
    image_root: str | None = None,
    val_fraction: float = 0.1,
    augment: bool = False,
) -> DatasetSplits:
    """FGVC images resized to data.image_size (default 224): JSON annotations or class folders."""
    root = dataset_path(cfg, "fgvc", LAYOUT, SOURCE)
    folder = root / task if task else root
    if task and not folder.is_dir():
        known = [t for t in FGVC_TASKS if (root / t).is_dir()]
        raise layout_error(
            "fgvc", root, f"no dataset folder '{task}' (found: {', '.join(known) or 'none'})", LAYOUT, SOURCE
        )
    if (folder / "train.json").is_file():
        missing = [n for n in ("test.json",) if not (folder / n).is_file()]
        if missing:
            raise layout_error("fgvc", folder, "train.json but no test.json", LAYOUT, SOURCE)
        images = folder / image_root if image_root else folder
        train = _read_annotations(folder / "train.json", images)
        test = _read_annotations(folder / "test.json", images)
        val = _read_annotations(folder / "val.json", images) if (folder / "val.json").is_file() else test
        return listed_image_splits(train, val, test, cfg.image_size)
    if not (folder / "train").is_dir():
        raise layout_error("fgvc", folder, "neither train.json nor a train/ folder", LAYOUT, SOURCE)
    found = scan_split_folders(folder)
    if not found["train"]:
        raise layout_error("fgvc", folder, "no images in train/<class>/ folders", LAYOUT, SOURCE)
    return image_file_splits(
        "fgvc",
        found,
        image_size=cfg.image_size,
        augment=augment,
        auto_augment=cfg.augment.auto_augment,
        val_fraction=val_fraction,
        test_fraction=0.1,
        pool=False,
        seed=seed,
    )
