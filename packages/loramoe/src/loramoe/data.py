"""Tokenised instruction datasets: prompt tokens masked out of the loss, batches carry `task_types`.

A sample is `prompt + [eos] + answer + [eos]` (the reference appends `</s>` to the prompt; with a Hugging Face
tokenizer that has one, a BOS token comes first), truncated to `data.seq_len`; labels are -100 over the
prompt. Batches are `(inputs, labels)` with `inputs = {input_ids, attention_mask, task_types}`, right-padded,
so the core Trainer's loaders and `accelerate` handle them as any other batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from learngene_core.config import DataConfig
from learngene_core.data import DatasetSplits
from learngene_core.data.partition import random_split
from learngene_core.data.tokenizers import ByteTokenizer, HFTokenizer, load_tokenizer
from learngene_core.errors import DataError
from learngene_core.registry import did_you_mean

from .records import Record, read_records, split_files
from .synthetic import synthetic_tasks

IGNORE = -100
DATASET_NAMES = ["synthetic-tasks", "instructions"]
Tokenizer = ByteTokenizer | HFTokenizer


class PromptCodec:
    """Turns records into token ids the same way for training, evaluation and `loramoe generate`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        self.eos = int(tokenizer.eos_id)
        bos = getattr(getattr(tokenizer, "tokenizer", None), "bos_token_id", None)
        self.bos = [int(bos)] if bos is not None else []
        self.pad = self.eos

    def prompt_ids(self, source: str) -> list[int]:
        return self.bos + self.tok.encode([source])[0].tolist() + [self.eos]

    def answer_ids(self, text: str) -> list[int]:
        return self.tok.encode([text])[0].tolist() + [self.eos]

    def decode(self, ids: list[int]) -> str:
        if self.eos in ids:
            ids = ids[: ids.index(self.eos)]
        return self.tok.decode(ids)


class InstructionDataset(Dataset):
    """Records as `({"input_ids", "task_types"}, labels)` items of at most `seq_len` tokens."""

    def __init__(self, records: list[Record], codec: PromptCodec, seq_len: int) -> None:
        self.records, self.items = [], []
        self.dropped = 0
        for record in records:
            prompt = codec.prompt_ids(record.source)
            ids = (prompt + codec.answer_ids(record.output))[:seq_len]
            labels = ([IGNORE] * len(prompt) + ids[len(prompt) :])[:seq_len]
            if all(label == IGNORE for label in labels):  # the prompt alone fills seq_len
                self.dropped += 1
                continue
            self.records.append(record)
            self.items.append((torch.tensor(ids), torch.tensor(labels)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ids, labels = self.items[index]
        return {"input_ids": ids, "task_types": torch.tensor(self.records[index].task_type)}, labels

    def task_types(self) -> list[int]:
        return [r.task_type for r in self.records]


@dataclass
class Collator:
    """Right-pads a list of items to the longest one; attention_mask marks real tokens."""

    pad_id: int

    def __call__(
        self, items: list[tuple[dict[str, torch.Tensor], torch.Tensor]]
    ) -> tuple[dict, torch.Tensor]:
        length = max(len(labels) for _, labels in items)
        ids = torch.full((len(items), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), length), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), length), dtype=torch.long)
        for i, (inputs, lab) in enumerate(items):
            n = len(lab)
            ids[i, :n], labels[i, :n], mask[i, :n] = inputs["input_ids"], lab, 1
        task_types = torch.stack([inputs["task_types"] for inputs, _ in items])
        return {"input_ids": ids, "attention_mask": mask, "task_types": task_types}, labels


@dataclass
class InstructionData:
    """The splits of an instruction dataset, its codec and a description line."""

    splits: DatasetSplits
    codec: PromptCodec


def build_instruction_data(cfg: DataConfig, seed: int, num_task_types: int) -> InstructionData:
    """`synthetic-tasks` (generated) or `instructions` (files at data.path), tokenised and split."""
    options = dict(cfg.options)
    tokenizer_dir = options.pop("tokenizer", None)
    val_fraction = float(options.pop("val_fraction", 0.1))
    if cfg.name == "synthetic-tasks":
        allowed = {"num_samples", "num_facts", "knowledge_fraction"}
        _check_options(options, allowed, cfg.name)
        train, test = synthetic_tasks(seed, **options)
        parts: dict[str, list[Record]] = {"train": train, "test": test}
        source = "synthetic-tasks"
    elif cfg.name == "instructions":
        _check_options(options, {"test_fraction"}, cfg.name)
        if cfg.path is None:
            raise DataError(
                "data.name=instructions needs data.path=<folder with train.json/test.json or a file>"
            )
        files = split_files(Path(cfg.path))
        parts = {part: [r for f in fs for r in read_records(f, num_task_types)] for part, fs in files.items()}
        if "test" not in parts:
            parts = _carve(parts, "test", float(options.get("test_fraction", 0.1)), seed)
        source = str(cfg.path)
    else:
        raise DataError(
            f"unknown dataset '{cfg.name}'{did_you_mean(cfg.name, DATASET_NAMES)}; "
            f"known: {', '.join(DATASET_NAMES)}"
        )
    if "val" not in parts:
        parts = _carve(parts, "val", val_fraction, seed)
    codec = PromptCodec(load_tokenizer(tokenizer_dir))
    sets = {
        part: InstructionDataset(parts.get(part, []), codec, cfg.seq_len) for part in ("train", "val", "test")
    }
    if len(sets["train"]) == 0:
        raise DataError(f"{source}: no training record fits data.seq_len={cfg.seq_len}")
    kept = {part: kept_per_task_type(parts.get(part, []), sets[part], num_task_types) for part in sets}
    warn_vanished_task_types(kept, cfg.seq_len)
    description = f"{cfg.name}: seq_len {cfg.seq_len}, records kept (prompt fits) per split " + "; ".join(
        f"{part} {sum(k for k, _ in kept[part])}/{sum(n for _, n in kept[part])} (task types "
        + ", ".join(f"{t}: {k}/{n}" for t, (k, n) in enumerate(kept[part]))
        + ")"
        for part in sets
    )
    splits = DatasetSplits(
        train=sets["train"],
        val=sets["val"],
        test=sets["test"],
        task="causal-lm",
        input_shape=(cfg.seq_len,),
        vocab_size=codec.tok.vocab_size,
        description=description,
    )
    return InstructionData(splits, codec)


def kept_per_task_type(
    records: list[Record], dataset: InstructionDataset, num_task_types: int
) -> list[tuple[int, int]]:
    """(kept, read) records of each task type: `dataset` drops those whose prompt fills data.seq_len."""
    read = np.bincount([r.task_type for r in records], minlength=num_task_types)
    kept = np.bincount(dataset.task_types(), minlength=num_task_types)
    return [(int(k), int(n)) for k, n in zip(kept, read, strict=True)]


def warn_vanished_task_types(kept: dict[str, list[tuple[int, int]]], seq_len: int) -> None:
    """Warn when every record of a task type in a split is dropped (its prompts are longer than seq_len)."""
    for part, counts in kept.items():
        for task_type, (k, n) in enumerate(counts):
            if n and not k:
                warnings.warn(
                    f"data.seq_len={seq_len} drops all {n} {part} records of task type {task_type} (their "
                    f"prompts are longer); {'the balancing loss never sees it, ' if part == 'train' else ''}"
                    "raise data.seq_len",
                    UserWarning,
                    stacklevel=3,
                )


def _check_options(options: dict[str, Any], allowed: set[str], name: str) -> None:
    for key in options:
        if key not in allowed | {"tokenizer", "val_fraction"}:
            known = sorted(allowed | {"tokenizer", "val_fraction"})
            raise DataError(
                f"unknown option data.options.{key} for '{name}'{did_you_mean(key, known)}; known: "
                + ", ".join(known)
            )


def _carve(parts: dict[str, list[Record]], part: str, fraction: float, seed: int) -> dict[str, list[Record]]:
    """Move a seeded `fraction` of the train records into split `part`."""
    train = parts["train"]
    keep, taken, _ = random_split(len(train), fraction, 0.0, seed)
    return {**parts, "train": [train[i] for i in keep], part: [train[i] for i in taken]}


def build_loaders(splits: DatasetSplits, cfg: DataConfig, seed: int, pad_id: int) -> tuple[DataLoader, ...]:
    """Train (shuffled, seeded) / val / test loaders with dynamic right padding."""
    common = {"num_workers": cfg.num_workers, "collate_fn": Collator(pad_id)}
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(splits.train, batch_size=cfg.batch_size, shuffle=True, generator=generator, **common)
    size = cfg.eval_batch_size or cfg.batch_size
    val = DataLoader(splits.val, batch_size=size, shuffle=False, **common)
    test = DataLoader(splits.test, batch_size=size, shuffle=False, **common)
    return train, val, test
