"""`jsonl-text`: documents from JSON lines (or a JSON list), joined with end-of-text and cut into seq_len blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .catalog import DATASETS
from .json_records import read_json_records
from .partition import random_split
from .paths import dataset_path, layout_error
from .splits import DatasetSplits
from .text import TokenBlocks, cut_blocks
from .tokenizers import ByteTokenizer, HFTokenizer, load_tokenizer

LAYOUT = (
    "a .jsonl file of one JSON object per line or a .json list of objects, each with a text field, "
    "or a folder with train.jsonl and optional val.jsonl and test.jsonl"
)
SOURCE = 'export your corpus as lines like {"text": "..."} and set data.path=<file or folder>'
SUFFIXES = (".jsonl", ".json")


@DATASETS.register("jsonl-text")
def build_jsonl_text(
    cfg: DataConfig,
    seed: int,
    *,
    text_field: str = "text",
    tokenizer: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DatasetSplits:
    """Byte-level (or local HF `tokenizer`) blocks of data.seq_len tokens; missing val/test carved from train blocks."""
    files = _split_files(dataset_path(cfg, "jsonl-text", LAYOUT, SOURCE))
    tok = load_tokenizer(tokenizer)
    blocks = {part: _blocks(file, text_field, tok, cfg.seq_len) for part, file in files.items()}
    carve_val = 0.0 if "val" in blocks else val_fraction
    carve_test = 0.0 if "test" in blocks else test_fraction
    if carve_val or carve_test:
        pool = blocks["train"]
        parts = random_split(len(pool), carve_val, carve_test, seed)
        for part, idx in zip(("train", "val", "test"), parts, strict=True):
            if part == "train" or part not in files:
                blocks[part] = pool[torch.from_numpy(idx)]
    empty = torch.zeros(0, cfg.seq_len, dtype=torch.long)
    return DatasetSplits(
        train=TokenBlocks(blocks["train"]),
        val=TokenBlocks(blocks.get("val", empty)),
        test=TokenBlocks(blocks.get("test", empty)),
        task="causal-lm",
        input_shape=(cfg.seq_len,),
        vocab_size=tok.vocab_size,
    )


def _split_files(path: Path) -> dict[str, Path]:
    """The file of each split: `path` itself as train, or {train,val,test}.jsonl|.json inside a folder."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise layout_error("jsonl-text", path, f"a '{path.suffix}' file", LAYOUT, SOURCE)
        return {"train": path}
    files = {}
    for part in ("train", "val", "test"):
        candidates = [path / f"{part}{suffix}" for suffix in SUFFIXES if (path / f"{part}{suffix}").is_file()]
        if candidates:
            files[part] = candidates[0]
    if "train" not in files:
        raise layout_error("jsonl-text", path, "no train.jsonl", LAYOUT, SOURCE)
    return files


def _blocks(file: Path, field: str, tok: ByteTokenizer | HFTokenizer, seq_len: int) -> torch.Tensor:
    """All documents of `file`, each followed by end-of-text, as (N, seq_len) blocks; DataError if N is 0."""
    ids = tok.encode(read_texts(file, field))
    eos = np.array([tok.eos_id], dtype=np.int64)
    stream = torch.from_numpy(np.concatenate([part for doc in ids for part in (doc, eos)]))
    blocks = cut_blocks(stream, seq_len)
    if len(blocks) == 0:
        raise DataError(f"{file}: only {len(stream)} tokens, fewer than data.seq_len={seq_len}")
    return blocks


def read_texts(file: Path, field: str) -> list[str]:
    """The `field` string of every record of a .jsonl file (one object per line) or a .json list of objects."""
    located = read_json_records(file)
    texts = []
    for where, record in located:
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise DataError(
                f"{where}: no string field '{field}' (set data.options.text_field=<name> to read another)"
            )
        texts.append(text)
    if not texts:
        raise DataError(f"{file}: no records")
    return texts
