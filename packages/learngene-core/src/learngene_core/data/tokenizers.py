"""Tokenisers for text datasets: byte-level (no files needed) or a local Hugging Face tokenizer directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 plus end-of-text id 256; round-trips any text with a vocabulary of 257."""

    vocab_size = 257
    eos_id = 256

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text."""
        return [np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, skipping end-of-text ids."""
        return bytes(int(i) for i in ids if int(i) != self.eos_id).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local directory only (never the network)."""

    def __init__(self, directory: str) -> None:
        from transformers import AutoTokenizer

        if not Path(directory).is_dir():
            raise DataError(f"data.options.tokenizer='{directory}' is not a local tokenizer directory")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cannot load a tokenizer from data.options.tokenizer='{directory}': {exc}"
            ) from None
        if self.tokenizer.eos_token_id is None:
            raise DataError(f"the tokenizer in data.options.tokenizer='{directory}' has no eos_token")
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.vocab_size = len(self.tokenizer)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, without special tokens."""
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [np.asarray(row, dtype=np.int64) for row in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`."""
        return self.tokenizer.decode(list(ids))


def load_tokenizer(directory: str | None) -> ByteTokenizer | HFTokenizer:
    """The byte tokenizer when `directory` is None, else the Hugging Face tokenizer saved there."""
    return ByteTokenizer() if directory is None else HFTokenizer(directory)
