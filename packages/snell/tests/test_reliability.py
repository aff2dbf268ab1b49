"""Bad inputs through the `snell` console script: one `snell: error:` line naming the culprit, exit code 2.

The table runs in one fresh interpreter (`run_named_console_cases`), so torch is imported once for all cases.
"""

from __future__ import annotations

import pytest
import torch

from learngene_core.testing import HostilePickle, one_error_line, run_named_console_cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    torch.save({"state_dict": {"w": HostilePickle()}}, tmp / "evil.pth")
    (tmp / "broken.pth").write_bytes(b"PK\x03\x04 a truncated zip")
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp / "plain.pth")  # no SNELL branches
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(b"model:\n  name: caf\xe9\n")

    def train(out: str, *args: str) -> list[str]:
        """`snell train` with flags (--x) first and key=value overrides last, as argparse wants them."""
        flags = [a for a in args if "=" not in a]
        overrides = [a for a in args if "=" in a]
        return [
            "train",
            "--config",
            "tiny",
            *flags,
            "--output-dir",
            str(tmp / out),
            "train.progress=false",
            *overrides,
        ]

    def import_official(out: str, *overrides: str) -> list[str]:
        return ["import-official", "--checkpoint", str(tmp / "plain.pth"), "--config", "tiny", "--output-dir",
                str(tmp / out), "model.checkpoint=null", *overrides]  # fmt: skip

    convnext = "model.kwargs={dims: [8, 16, 32, 64], depths: [1, 1, 1, 1]}"  # convnext_atto: conv_mlp=True
    swin_v2 = "model.kwargs={patch_size: 2, window_size: 4, embed_dim: 16, depths: [1, 1], num_heads: [1, 2]}"
    cases = {
        "no backbone weights": (train("o1", "model.checkpoint=null"), "randomly initialised vit_tiny_patch16_224"),
        "a timm name as backbone": (train("o2", "--backbone", "vit_small_patch16_224"), "--random-backbone"),
        "hostile backbone file": (train("o3", "--backbone", str(tmp / "evil.pth")), "refused"),
        "corrupt backbone file": (train("o4", "--backbone", str(tmp / "broken.pth")), "not a torch checkpoint"),
        "patch larger than the image": (train("o5", "--random-backbone", "model.checkpoint=null", "model.kwargs.patch_size=32"), "cannot run on a training batch"),
        "lr=.inf": ([*train("o6"), "train.lr=.inf"], "'train.lr' must be a finite number"),
        "non-UTF-8 run config": (["eval", "--run", str(run)], "config.yaml: not UTF-8"),
        "official file of no known layout": (import_official("o7"), "not an official SNELL checkpoint"),
        "official ConvNeXt with conv_mlp": (import_official("o8", "model.name=convnext_atto", convnext), "ConvNeXt with conv_mlp=True (1x1-conv MLPs) is not supported"),
        "official Swin V2": (import_official("o9", "model.name=swinv2_tiny_window8_256", swin_v2), "Swin V2 (SwinTransformerV2) is not supported"),
        "image size other than the backbone's": (train("o10", "data.image_size=32"), "was pre-trained on 16x16 images (17 position embeddings) but data.image_size gives 32x32 (65): set data.image_size=16"),
        "compare on another image size": (["compare", "--config", "tiny", "--output-dir", str(tmp / "o11"), "data.image_size=8"], "set data.image_size=16"),
    }  # fmt: skip
    results = run_named_console_cases("snell.cli", cases)
    assert not any((tmp / out).exists() for out in ("o7", "o8", "o9", "o10", "o11"))  # nothing written
    return results


CASES = [
    "no backbone weights",
    "a timm name as backbone",
    "hostile backbone file",
    "corrupt backbone file",
    "patch larger than the image",
    "lr=.inf",
    "non-UTF-8 run config",
    "official file of no known layout",
    "official ConvNeXt with conv_mlp",
    "official Swin V2",
    "image size other than the backbone's",
    "compare on another image size",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "snell", culprit)
