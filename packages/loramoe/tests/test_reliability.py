"""Bad inputs through the `loramoe` console script: one `loramoe: error:` line naming the culprit, exit 2.

The table runs in one fresh interpreter (`run_named_console_cases`), so torch and transformers are imported once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from learngene_core.testing import (
    HostilePickle,
    assert_probe_changes_nothing,
    one_error_line,
    run_named_console_cases,
    tiny_lm_config,
)
from loramoe.cli import main


def train(out: Path, *overrides: str) -> list[str]:
    return ["train", "--config", "tiny", "--output-dir", str(out), "train.progress=false", *overrides]


def _hostile_base(directory: Path) -> Path:
    """A Hugging Face model directory whose pytorch_model.bin would run code when unpickled unsafely."""
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_config(tiny_lm_config("llama", 1)).save_pretrained(directory)
    os.remove(directory / "model.safetensors")
    torch.save({"model.embed_tokens.weight": HostilePickle()}, directory / "pytorch_model.bin")
    return directory


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    peft_like = tmp / "peft-adapter"
    peft_like.mkdir()
    (peft_like / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    truncated = tmp / "truncated"
    truncated.mkdir()
    (truncated / "adapter_config.json").write_text('{"method": "loramoe", "num_exp')
    hostile_base = _hostile_base(tmp / "hostile-base")
    adapter = tmp / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"method": "loramoe", "extra": {}}))
    gen = ["generate", "--prompt", "hi", "--adapter"]
    cases = {
        "eval.batch_size=0": (train(tmp / "r1", "eval.batch_size=0"), "eval.batch_size must be >= 1"),
        "seed=-1": (train(tmp / "r2", "seed=-1"), "seed must be in [0,"),
        "lr=.nan": (train(tmp / "r3", "train.lr=.nan"), "'train.lr' must be a finite number"),
        "output dir is a file": (train(tmp / "peft-adapter" / "adapter_config.json"), "is a file"),
        "non-loramoe adapter": ([*gen, str(peft_like)], 'is not a loramoe adapter config'),
        "truncated adapter_config.json": ([*gen, str(truncated)], "adapter_config.json is not valid JSON"),
        "adapter without a base model": ([*gen, str(adapter)], "records no base model; pass --base"),
        "hostile .bin base model": ([*gen, str(adapter), "--base", str(hostile_base)], "refused"),
        "heads that do not split the keys": (train(tmp / "r4", "model.kwargs.num_key_value_heads=3"), "the model (LoraMoEModel) cannot run on a training batch"),
    }  # fmt: skip
    return run_named_console_cases("loramoe.cli", cases, cwd=str(tmp))


CASES = [
    "eval.batch_size=0",
    "seed=-1",
    "lr=.nan",
    "output dir is a file",
    "non-loramoe adapter",
    "truncated adapter_config.json",
    "adapter without a base model",
    "hostile .bin base model",
    "heads that do not split the keys",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "loramoe", culprit)


def test_the_check_before_step_1_changes_no_weight(tmp_path):
    """The Trainer runs loramoe's loss (routers capturing their gates) once in eval mode before step 1: the
    adapter it trains is the same, bit for bit, as without that check."""
    argv = ["train", "--config", "tiny", "train.progress=false", "train.max_steps=3", "loramoe.dropout=0.1"]
    assert_probe_changes_nothing(main, argv, tmp_path)
