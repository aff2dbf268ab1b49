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

    cases = {
        "no backbone weights": (train("o1", "model.checkpoint=null"), "randomly initialised vit_tiny_patch16_224"),
        "a timm name as backbone": (train("o2", "--backbone", "vit_small_patch16_224"), "--random-backbone"),
        "hostile backbone file": (train("o3", "--backbone", str(tmp / "evil.pth")), "refused"),
        "corrupt backbone file": (train("o4", "--backbone", str(tmp / "broken.pth")), "not a torch checkpoint"),
        "patch larger than the image": (train("o5", "--random-backbone", "model.checkpoint=null", "model.kwargs.patch_size=32"), "cannot run on a training batch"),
        "lr=.inf": ([*train("o6"), "train.lr=.inf"], "'train.lr' must be a finite number"),
        "non-UTF-8 run config": (["eval", "--run", str(run)], "config.yaml: not UTF-8"),
    }  # fmt: skip
    return run_named_console_cases("snell.cli", cases)


CASES = [
    "no backbone weights",
    "a timm name as backbone",
    "hostile backbone file",
    "corrupt backbone file",
    "patch larger than the image",
    "lr=.inf",
    "non-UTF-8 run config",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "snell", culprit)
