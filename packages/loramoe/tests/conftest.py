"""Shared fixtures: tiny Llama / GPT-2 causal LMs built from configs, and one short `loramoe train` run."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)
from loramoe.cli import main as loramoe_main

VOCAB = 97


def _llama(seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def _gpt2(seed: int = 0):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
                     eos_token_id=0)  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.fixture
def make_lm():
    """`make_lm("llama" | "gpt2", seed=0)`: a fresh tiny causal LM in eval mode (same seed, same weights)."""

    def make(kind: str = "llama", seed: int = 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _llama(seed) if kind == "llama" else _gpt2(seed)

    return make


@pytest.fixture
def ids():
    return torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))


TINY_RUN = ["train.max_steps=24", "train.progress=false", "data.options.num_samples=320", "train.log_every=4"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A `loramoe train --config tiny` run directory (24 steps)."""
    out = tmp_path_factory.mktemp("loramoe") / "run"
    assert loramoe_main(["train", "--config", "tiny", "--output-dir", str(out), *TINY_RUN]) == 0
    return out
