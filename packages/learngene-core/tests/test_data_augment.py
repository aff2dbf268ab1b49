"""`data.augment`: DeiT's training augmentations from timm (RandAugment, random erasing, Mixup/CutMix, repeated
augmentation), on the training loader only, off by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.data.distributed_sampler import RepeatAugSampler

from learngene_core.config import DataConfig, ExperimentConfig, from_dict, load_config
from learngene_core.data import build_dataloaders, build_datasets
from learngene_core.errors import ConfigError, DataError
from learngene_core.experiment import train

pytestmark = pytest.mark.usefixtures("single_thread")

DEIT = {"re_prob": 0.25, "mixup": 0.8, "cutmix": 1.0, "repeats": 3}


def digits(augment: dict | None = None, **kwargs) -> DataConfig:
    return from_dict(DataConfig, {"name": "digits", "image_size": 16, "augment": augment or {}, **kwargs})


def loaders(cfg: DataConfig, seed: int = 0):
    return build_dataloaders(build_datasets(cfg, seed), cfg, seed)


def test_augmentation_is_off_by_default_and_eval_loaders_never_augment():
    train_loader, val_loader, _ = loaders(digits(DEIT))
    _, targets = next(iter(val_loader))
    assert targets.dtype == torch.long  # val: plain labels
    plain_train, _, _ = loaders(digits())
    x, y = next(iter(plain_train))
    assert y.dtype == torch.long and y.ndim == 1 and not plain_train.drop_last


def test_mixup_cutmix_give_class_probabilities_and_mixed_images():
    cfg = digits({"mixup": 0.8, "cutmix": 1.0})
    train_loader, _, _ = loaders(cfg)
    assert train_loader.drop_last  # timm's Mixup needs even batches
    x, y = next(iter(train_loader))
    assert y.shape == (64, 10) and torch.allclose(y.sum(1), torch.ones(64))
    assert (y.max(1).values < 1).any()  # some targets are a mix of two classes
    plain_x, _ = next(iter(loaders(digits())[0]))
    assert not torch.equal(x, plain_x)


def test_random_erasing_alone_erases_patches_and_keeps_labels():
    torch.manual_seed(0)
    erased, labels = next(iter(loaders(digits({"re_prob": 1.0}))[0]))
    plain, plain_labels = next(iter(loaders(digits())[0]))
    assert torch.equal(labels, plain_labels)  # same shuffle, labels untouched
    changed = (erased != plain).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # every image gets a patch (an erased patch rarely equals the image)


def test_repeated_augmentation_sampler_repeats_each_image_in_a_row():
    train_loader, _, _ = loaders(digits({"repeats": 3}, batch_size=30))
    assert isinstance(train_loader.sampler, RepeatAugSampler)
    indices = list(train_loader.sampler)
    assert (
        len(indices) == len(train_loader.dataset) // 256 * 256
    )  # about one dataset's worth (DeiT rounds to 256)
    assert all(indices[i] == indices[i + 1] == indices[i + 2] for i in range(0, 30, 3))
    x, _ = next(iter(train_loader))
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # tensors: no per-image transform to vary


def test_odd_batch_with_mixup_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="batch_size must be even"):
        digits({"mixup": 0.8}, batch_size=25)


def test_rand_augment_on_tensor_data_is_one_error_naming_the_key():
    with pytest.raises(DataError, match="data.augment.auto_augment"):
        loaders(digits({"auto_augment": "rand-m9-mstd0.5-inc1"}))


def write_images(folder: Path, count: int, color: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), color).save(folder / f"{i}.png")


def test_rand_augment_joins_the_timm_training_transform_of_file_datasets(tmp_path):
    write_images(tmp_path / "a", 6, (255, 0, 0))
    write_images(tmp_path / "b", 6, (0, 0, 255))
    policy = {"auto_augment": "rand-m9-mstd0.5-inc1"}
    splits = build_datasets(
        from_dict(
            DataConfig, {"name": "image-folder", "path": str(tmp_path), "image_size": 16, "augment": policy}
        ),
        0,
    )
    assert "RandAugment" in repr(splits.train.transform)
    assert "RandAugment" not in repr(splits.val.transform)
    x, _ = splits.train[0]
    assert x.shape == (3, 16, 16)
    plain = build_datasets(
        from_dict(DataConfig, {"name": "image-folder", "path": str(tmp_path), "image_size": 16}), 0
    )
    assert "RandAugment" not in repr(plain.train.transform)


def test_loss_falls_on_digits_with_the_deit_batch_augmentations(tmp_path):
    """Mixed targets reach the loss (cross-entropy on class probabilities, label smoothing on top)."""
    overrides = ["train.epochs=8", "model.kwargs.depth=2", "train.progress=false", "train.label_smoothing=0.1",
                 *(f"data.augment.{k}={v}" for k, v in DEIT.items())]  # fmt: skip
    cfg = load_config("digits-vit", overrides, ExperimentConfig)
    metrics = train(cfg, tmp_path / "run")
    assert metrics["accuracy"] > 0.3  # 10 classes: chance is 0.1 (measured: 0.41 after these 8 epochs)
