"""Tests of learngene_core.data: built-in datasets, generic options, on-disk layouts and their errors (all offline)."""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learngene_core.config import DataConfig
from learngene_core.data import DATASETS, DatasetSplits, build_dataloaders, build_datasets
from learngene_core.data.partition import stratified_split
from learngene_core.data.tokenizers import ByteTokenizer
from learngene_core.errors import DataError
from learngene_core.testing import write_fake_cifar100


def build(name: str, seed: int = 0, **fields) -> DatasetSplits:
    return build_datasets(DataConfig(name=name, **fields), seed)


def items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(inputs), torch.stack(targets)


# ------------------------------------------------------------------------------------------------ built-ins


@pytest.mark.parametrize(
    ("name", "sizes", "shape", "num_classes"),
    [("digits", (1078, 180, 539), (1, 8, 8), 10), ("synthetic-images", (700, 100, 200), (3, 32, 32), 10)],
)
def test_image_builtins_shapes_dtypes_labels_and_sizes(name, sizes, shape, num_classes):
    splits = build(name)
    assert splits.task == "classification"
    assert (len(splits.train), len(splits.val), len(splits.test)) == sizes
    assert splits.input_shape == shape and splits.num_classes == num_classes and splits.vocab_size is None
    assert splits.description.startswith(f"{name}: {sizes[0]}/{sizes[1]}/{sizes[2]} train/val/test")
    for dataset in (splits.train, splits.val, splits.test):
        x, y = dataset[0]
        assert x.shape == shape and x.dtype == torch.float32
        assert y.shape == () and y.dtype == torch.long
        assert set(dataset.targets) == set(range(num_classes))


def test_digits_is_normalised_with_train_statistics():
    x, _ = items(build("digits").train)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_digits_split_is_stratified_disjoint_and_seeded():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    train, val, test = stratified_split(labels, 0.1, 0.3, seed=0)
    assert (
        len(np.intersect1d(train, val))
        == len(np.intersect1d(train, test))
        == len(np.intersect1d(val, test))
        == 0
    )
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))
    overall = Counter(labels.tolist())
    for part, fraction in ((val, 0.1), (test, 0.3)):
        counts = Counter(labels[part].tolist())
        assert all(abs(counts[c] - fraction * overall[c]) <= 1 for c in overall)

    first, again, other = build("digits", seed=0), build("digits", seed=0), build("digits", seed=1)
    assert torch.equal(items(first.test)[0], items(again.test)[0])
    assert first.train.targets == again.train.targets
    assert not torch.equal(items(first.test)[0], items(other.test)[0])


def test_synthetic_images_options_and_learnable_signal():
    splits = build(
        "synthetic-images", options={"num_classes": 3, "num_samples": 60, "image_size": 8, "channels": 1}
    )
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 3
    x, y = items(splits.train)
    means = torch.stack([x[y == c].mean(0) for c in range(3)])  # nearest class mean beats chance by far
    predicted = ((x[:, None] - means[None]) ** 2).flatten(2).sum(-1).argmin(1)
    assert (predicted == y).float().mean() > 0.9


def test_synthetic_text_shapes_determinism_and_sparse_chain():
    splits = build(
        "synthetic-text", seq_len=16, options={"vocab_size": 32, "num_samples": 100, "branching": 2}
    )
    assert splits.task == "causal-lm" and splits.input_shape == (16,) and splits.vocab_size == 32
    assert splits.num_classes is None and (len(splits.train), len(splits.val), len(splits.test)) == (
        80,
        10,
        10,
    )
    x, y = items(splits.train)
    assert x.dtype == torch.long and x.shape == (80, 16) and torch.equal(x, y) and x.max() < 32
    successors: dict[int, set[int]] = {}
    for a, b in zip(x[:, :-1].flatten().tolist(), x[:, 1:].flatten().tolist(), strict=True):
        successors.setdefault(a, set()).add(b)
    assert max(len(s) for s in successors.values()) <= 2
    again = build(
        "synthetic-text", seq_len=16, options={"vocab_size": 32, "num_samples": 100, "branching": 2}
    )
    other = build(
        "synthetic-text", seed=1, seq_len=16, options={"vocab_size": 32, "num_samples": 100, "branching": 2}
    )
    assert torch.equal(items(again.train)[0], x) and not torch.equal(items(other.train)[0], x)


# --------------------------------------------------------------------------------------------- generic options


def test_classes_keeps_and_relabels_in_given_order():
    full, picked = build("digits"), build("digits", classes=[7, 3])
    assert picked.num_classes == 2 and picked.class_names == ["7", "3"]
    for part in ("train", "val", "test"):
        x, y = items(getattr(full, part))
        keep = (y == 7) | (y == 3)
        px, py = items(getattr(picked, part))
        assert torch.equal(px, x[keep]) and torch.equal(py, (y[keep] == 3).long())
    assert picked.description.split(", ")[1] == "2 classes"


def test_classes_rejects_unknown_and_repeated_labels():
    with pytest.raises(DataError, match="label 10 is not a class"):
        build("digits", classes=[1, 10])
    with pytest.raises(DataError, match="listed twice"):
        build("digits", classes=[1, 1])


def test_samples_per_class_caps_train_only_and_is_seeded():
    full, capped = build("digits"), build("digits", samples_per_class=5)
    assert Counter(capped.train.targets) == dict.fromkeys(range(10), 5)
    assert (len(capped.val), len(capped.test)) == (len(full.val), len(full.test))
    assert capped.train.targets == build("digits", samples_per_class=5).train.targets
    assert not torch.equal(
        items(capped.train)[0], items(build("digits", seed=1, samples_per_class=5).train)[0]
    )


def test_image_size_and_channels_change_shapes():
    splits = build("digits", image_size=16, channels=3, classes=[0, 1])
    assert splits.input_shape == (3, 16, 16)
    x, _ = splits.val[0]
    assert x.shape == (3, 16, 16) and torch.equal(x[0], x[2])
    gray = build("synthetic-images", channels=1, image_size=8, options={"num_samples": 50})
    assert gray.input_shape == (1, 8, 8) and gray.test[0][0].shape == (1, 8, 8)
    assert "1x8x8" in gray.description


def test_text_rejects_image_options():
    with pytest.raises(DataError, match=r"data\.classes applies to image classification"):
        build("synthetic-text", classes=[0])


# ---------------------------------------------------------------------------------------------- registry/options


def test_unknown_dataset_and_option_are_data_errors():
    with pytest.raises(DataError, match="unknown dataset 'digit' \\(did you mean 'digits'\\?\\)"):
        build("digit")
    with pytest.raises(
        DataError, match="dataset 'digits' has no option 'foo'; options: val_fraction, test_fraction"
    ):
        build("digits", options={"foo": 1})
    with pytest.raises(DataError, match=r"data\.options\.val_fraction"):
        build("digits", options={"val_fraction": "lots"})
    with pytest.raises(DataError, match=r"data\.options\.val_fraction must be in \[0, 1\)"):
        build("digits", options={"val_fraction": 1.5})
    assert {"digits", "synthetic-images", "synthetic-text", "cifar100", "image-folder"} <= set(DATASETS)


def test_learngene_list_reads_every_dataset_and_its_description_from_the_source():
    """`learngene list` reads the registrations without importing them (no torch); it sees the registry."""
    from learngene_core.cli import DATASET_SOURCES
    from learngene_core.registry import declared_entries

    declared = declared_entries(DATASET_SOURCES.glob("*.py"), "DATASETS")
    assert declared == {name: DATASETS.get(name).__doc__.strip().splitlines()[0] for name in DATASETS}


def test_declared_entries_finds_decorated_and_called_registrations_only(tmp_path):
    from learngene_core.registry import declared_entries

    (tmp_path / "a.py").write_text(
        'from x import MODELS, OTHER\n\n@MODELS.register("b")\nclass B:\n    """Bee.\n\n    More."""\n\n'
        '@OTHER.register("c")\ndef c(): ...\n\nMODELS.register("a")(lambda: 1)\nMODELS.get("d")\n'
    )
    assert declared_entries([tmp_path / "a.py"], "MODELS") == {"a": "", "b": "Bee."}


# ---------------------------------------------------------------------------------------------------- loaders


def test_dataloaders_shuffle_train_by_seed_only():
    splits = build("digits")
    cfg = DataConfig(batch_size=32, eval_batch_size=100)
    train, val, test = build_dataloaders(splits, cfg, seed=0)
    first = next(iter(train))[1]
    assert torch.equal(first, next(iter(build_dataloaders(splits, cfg, seed=0)[0]))[1])
    assert not torch.equal(first, next(iter(build_dataloaders(splits, cfg, seed=1)[0]))[1])
    x, y = next(iter(val))
    assert x.shape == (100, 1, 8, 8) and y.tolist() == splits.val.targets[:100]
    assert len(test) == 6 and not train.drop_last


# ------------------------------------------------------------------------------------------------- CIFAR-100


write_fake_cifar = write_fake_cifar100


def test_fake_cifar100_loads_with_labels_and_names(tmp_path):
    write_fake_cifar(tmp_path)
    splits = build("cifar100", path=str(tmp_path), options={"augment": False})
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 10)
    assert splits.class_names == ["apple", "bee", "cup", "dog", "eel"] and splits.num_classes == 5
    x, y = items(splits.test)
    assert (
        x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [i % 5 for i in range(10)]
    )
    coarse = build("cifar100", path=str(tmp_path / "cifar-100-python"), options={"label_kind": "coarse"})
    assert coarse.class_names == ["food", "animal"] and set(coarse.train.targets) == {0, 1}
    assert coarse.train[0][0].shape == (3, 32, 32)
    with pytest.raises(DataError, match="label_kind"):
        build("cifar100", path=str(tmp_path), options={"label_kind": "medium"})


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar100_refuses_pickles_with_disallowed_globals(tmp_path):
    folder = write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": _Exploit(marker)}, protocol=2))
    with pytest.raises(DataError, match=r"meta: refusing to unpickle .*system' is not allowed"):
        build("cifar100", path=str(tmp_path))
    assert not marker.exists()


def test_cifar100_wrong_layout_names_missing_files(tmp_path):
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(DataError, match=r"no file train, test, meta .*data\.path"):
        build("cifar100", path=str(tmp_path))


# ---------------------------------------------------------------------------------------------- image folders


def write_images(folder: Path, count: int, color: tuple[int, int, int], suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), color).save(folder / f"{i}{suffix}")


def test_image_folder_train_only_is_carved_and_loads(tmp_path):
    write_images(tmp_path / "train" / "cat", 10, (255, 0, 0))
    write_images(tmp_path / "train" / "dog", 10, (0, 0, 255), ".jpg")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    splits = build("image-folder", path=str(tmp_path), image_size=16)
    assert splits.class_names == ["cat", "dog"] and splits.input_shape == (3, 16, 16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 2, 2)
    assert Counter(splits.val.targets) == {0: 1, 1: 1}
    x, y = items(splits.test)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    reds = x[y == 0][:, 0].mean() > x[y == 0][:, 2].mean()  # eval transform keeps colours: cat is red
    assert reds


def test_image_folder_flat_classes_and_explicit_splits(tmp_path):
    write_images(tmp_path / "flat" / "a", 5, (10, 10, 10))
    write_images(tmp_path / "flat" / "b", 5, (200, 200, 200))
    flat = build("image-folder", path=str(tmp_path / "flat"), image_size=8, channels=1)
    assert flat.num_classes == 2 and flat.train[0][0].shape == (1, 8, 8)
    for part, count in (("train", 4), ("val", 2), ("test", 3)):
        write_images(tmp_path / "split" / part / "a", count, (0, 0, 0))
        write_images(tmp_path / "split" / part / "b", count, (9, 9, 9))
    split = build("image-folder", path=str(tmp_path / "split"), image_size=8, options={"augment": False})
    assert (len(split.train), len(split.val), len(split.test)) == (8, 4, 6)


def test_image_folder_rejects_mismatched_class_sets(tmp_path):
    write_images(tmp_path / "train" / "a", 3, (0, 0, 0))
    write_images(tmp_path / "train" / "b", 3, (0, 0, 0))
    write_images(tmp_path / "val" / "a", 2, (0, 0, 0))
    write_images(tmp_path / "val" / "c", 2, (0, 0, 0))
    with pytest.raises(DataError, match=r"only in val: c; missing from val: b.*pool=true"):
        build("image-folder", path=str(tmp_path))


def test_imagenet_folder_layout_and_flat_val_error(tmp_path):
    for wnid in ("n01", "n02"):
        write_images(tmp_path / "train" / wnid, 6, (0, 0, 0), ".JPEG")
        write_images(tmp_path / "val" / wnid, 2, (0, 0, 0), ".JPEG")
    splits = build("imagenet", path=str(tmp_path), image_size=16, options={"val_fraction": 0.2})
    assert splits.class_names == ["n01", "n02"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (
        10,
        2,
        4,
    )  # official val is the test split
    write_images(tmp_path / "val", 1, (0, 0, 0), ".JPEG")
    with pytest.raises(DataError, match=r"val/ holds images directly.*class folders"):
        build("imagenet", path=str(tmp_path))


def write_mini_imagenet_csv(root: Path, classes: dict[str, list[str]]) -> None:
    for part, labels in classes.items():
        with open(root / f"{part}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            for label in labels:
                for i in range(3):
                    name = f"{label}{part}{i}.jpg"
                    Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / "images" / name)
                    writer.writerow([name, label])


def test_mini_imagenet_csv_layout_loads_and_pools_disjoint_classes(tmp_path):
    (tmp_path / "same" / "images").mkdir(parents=True)
    write_mini_imagenet_csv(tmp_path / "same", {p: ["n2", "n1"] for p in ("train", "val", "test")})
    splits = build("mini-imagenet", path=str(tmp_path / "same"), image_size=16)
    assert splits.class_names == ["n1", "n2"] and splits.input_shape == (3, 16, 16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 6, 6)
    assert splits.train[0][0].shape == (3, 16, 16)

    (tmp_path / "fewshot" / "images").mkdir(parents=True)
    write_mini_imagenet_csv(tmp_path / "fewshot", {"train": ["n1", "n2"], "val": ["n3"], "test": ["n4"]})
    with pytest.raises(DataError, match="classes differ from train's"):
        build("mini-imagenet", path=str(tmp_path / "fewshot"))
    pooled = build(
        "mini-imagenet", path=str(tmp_path / "fewshot"), options={"pool": True, "test_fraction": 0.3}
    )
    assert pooled.num_classes == 4 and len(pooled.train) + len(pooled.val) + len(pooled.test) == 12


def test_mini_imagenet_csv_missing_image_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "train.csv").write_text("filename,label\nghost.jpg,n1\n")
    with pytest.raises(DataError, match=r"missing from .*ghost\.jpg"):
        build("mini-imagenet", path=str(tmp_path))


# -------------------------------------------------------------------------------------------------- JSON text


def test_jsonl_text_byte_tokenizer_round_trips(tmp_path):
    docs = {
        "train": ["héllo world 🙂", "second document", "third!"],
        "val": ["validation text"],
        "test": ["test"],
    }
    for part, texts in docs.items():
        lines = [json.dumps({"body": text, "id": i}) for i, text in enumerate(texts)]
        (tmp_path / f"{part}.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    splits = build("jsonl-text", path=str(tmp_path), seq_len=4, options={"text_field": "body"})
    assert splits.task == "causal-lm" and splits.vocab_size == 257 and splits.input_shape == (4,)
    stream = [i for text in docs["train"] for i in [*text.encode("utf-8"), 256]]
    x, y = items(splits.train)
    assert x.dtype == torch.long and torch.equal(x, y)
    assert x.flatten().tolist() == stream[: len(x) * 4] and len(x) == len(stream) // 4
    assert (
        ByteTokenizer().decode(items(splits.val)[0].flatten().tolist()) == "validation text"
    )  # 15 bytes + EOS
    assert len(splits.test) == 1


def test_json_list_file_is_carved(tmp_path):
    file = tmp_path / "corpus.json"
    file.write_text(json.dumps([{"text": "x" * 50} for _ in range(8)]))
    splits = build("jsonl-text", path=str(file), seq_len=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (41, 5, 5)  # 408 tokens -> 51 blocks
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"content": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: no string field 'text'"):
        build("jsonl-text", path=str(bad), seq_len=2)


def test_jsonl_text_with_local_hf_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "<eos>": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>", unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tok")
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"text": "hello world"}) for _ in range(10)))
    cfg = {
        "path": str(tmp_path / "corpus.jsonl"),
        "seq_len": 3,
        "options": {"tokenizer": str(tmp_path / "tok")},
    }
    splits = build("jsonl-text", **cfg)
    assert splits.vocab_size == 4 and (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 1)
    assert items(splits.train)[0].unique().tolist() == [1, 2, 3]
    with pytest.raises(
        DataError, match=r"data\.options\.tokenizer='/no/such/dir' is not a local tokenizer directory"
    ):
        build("jsonl-text", path=cfg["path"], options={"tokenizer": "/no/such/dir"})


# ------------------------------------------------------------------------------------------------ missing paths


@pytest.mark.parametrize("name", ["cifar100", "image-folder", "imagenet", "mini-imagenet", "jsonl-text"])
def test_missing_dataset_paths_are_explained(tmp_path, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        build(name, path=str(missing))
    message = str(info.value)
    assert str(missing) in message and "data.path" in message and "\n" not in message
    with pytest.raises(DataError, match=rf"dataset '{name}' needs data\.path=<path>"):
        build(name)
