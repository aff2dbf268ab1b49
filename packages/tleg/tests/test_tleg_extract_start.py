"""`extract(..., start=learngene)` continues a distillation from a learngene instead of a fresh aux net."""

from __future__ import annotations

import pytest
import torch

from learngene_core.config import load_config
from learngene_core.errors import ConfigError
from learngene_core.learngene import ExtractConfig, extract
from tleg import TLEG

AUX_DEPTH = 4  # the session learngene's (conftest)
SHORT = ["train.max_steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.progress=false"]


def _cfg(ancestry_dir, *overrides: str) -> ExtractConfig:
    return load_config(
        "tiny", [f"ancestry.run={ancestry_dir}", f"method.aux_depth={AUX_DEPTH}", *SHORT, *overrides],
        ExtractConfig, "tleg.configs",
    )  # fmt: skip


def test_extract_from_a_start_learngene_without_a_step_size_keeps_every_tensor_bit_for_bit(
    tmp_path, ancestry_dir, learngene
):
    still = ["train.lr=1e-30", "seed=7"]  # steps far below float32's resolution: nothing moves
    continued, _ = extract(TLEG(), _cfg(ancestry_dir, *still), tmp_path / "lg", start=learngene)
    assert continued.tensors.keys() == learngene.tensors.keys()
    for name, tensor in learngene.tensors.items():
        assert torch.equal(continued.tensors[name], tensor), name  # learngene, inherited parts and head
    fresh, _ = extract(TLEG(), _cfg(ancestry_dir, *still), tmp_path / "fresh")
    assert not torch.equal(fresh.tensors["inherited.patch_embed.proj.weight"], learngene.tensors[
        "inherited.patch_embed.proj.weight"])  # fmt: skip


def test_extract_from_a_start_learngene_of_another_width_is_a_config_error(tmp_path, ancestry_dir, learngene):
    cfg = _cfg(ancestry_dir, "model.kwargs.embed_dim=32")
    with pytest.raises(ConfigError, match="start learngene does not fit"):
        extract(TLEG(), cfg, tmp_path / "lg", start=learngene)
