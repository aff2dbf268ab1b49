"""Bad inputs through the `tleg` console script: one `tleg: error:` line naming the culprit, exit code 2.

The table runs in one fresh interpreter (`run_named_console_cases`), so torch is imported once for all cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from learngene_core.testing import copy_with, one_error_line, run_named_console_cases
from tleg.cli import main

ARCH = {"embed_dim": 64, "num_heads": 4, "mlp_ratio": 4.0, "in_chans": 1, "patch_size": 4, "img_size": 16}


def _learngene_dir(root: Path, manifest: bytes) -> Path:
    root.mkdir()
    (root / "manifest.json").write_bytes(manifest)
    return root


def _damaged_copy(learngene_dir: Path, root: Path, key: str) -> Path:
    """The learngene with tensor `key` cut to its first row (a damaged or hand-edited file)."""
    root.mkdir()
    (root / "manifest.json").write_bytes((learngene_dir / "manifest.json").read_bytes())
    tensors = load_file(learngene_dir / "learngene.safetensors")
    tensors[key] = tensors[key][:1].clone()
    save_file(tensors, str(root / "learngene.safetensors"))
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory, ancestry_dir, learngene_dir):
    tmp = tmp_path_factory.mktemp("bad")
    good = {"method": "tleg", "arch": ARCH, "spec": {}, "num_classes": 5}
    no_patch = {**good, "arch": {k: v for k, v in ARCH.items() if k != "patch_size"}}
    lgs = {
        "truncated": _learngene_dir(tmp / "truncated", json.dumps(good)[:40].encode()),
        "list": _learngene_dir(tmp / "list", b"[1, 2]"),
        "latin1": _learngene_dir(tmp / "latin1", b'{"method": "tleg\xe9"}'),
        "no-patch": _learngene_dir(tmp / "no-patch", json.dumps(no_patch).encode()),
        "string-width": _learngene_dir(
            tmp / "string-width", json.dumps({**good, "arch": {**ARCH, "embed_dim": "64"}}).encode()
        ),
        # before: broadcast silently into every block (theta_A + i/L theta_B), or a size-mismatch traceback
        "cut-block-tensor": _damaged_copy(learngene_dir, tmp / "cut-block-tensor", "A.attn.proj.bias"),
        "cut-inherited-tensor": _damaged_copy(
            learngene_dir, tmp / "cut-inherited", "inherited.fc_norm.weight"
        ),
    }
    meta = json.loads((ancestry_dir / "final" / "metadata.json").read_text())
    odd_meta = {
        name: copy_with(
            ancestry_dir, tmp / name, {"final/metadata.json": json.dumps({**meta, **change}).encode()}
        )
        for name, change in (
            ("shape-string", {"input_shape": "x"}),
            ("shape-number", {"input_shape": 16}),
            ("negative-classes", {"num_classes": -2}),
        )
    }
    ancestry = tmp / "ancestry"
    ancestry.mkdir()
    (ancestry / "config.yaml").write_bytes(b"model:\n  name: caf\xe9\n")
    (tmp / "a-file").write_text("x")

    def expand(lg: str) -> list[str]:
        return ["expand", "--learngene", str(lgs[lg]), "--depth", "3", "--output-dir", str(tmp / "out")]

    extract = ["extract", "--config", "tiny", "--output-dir"]
    cases = {
        "truncated manifest": (expand("truncated"), "manifest.json is not valid JSON"),
        "manifest is a list": (expand("list"), "manifest.json holds a JSON list"),
        "non-UTF-8 manifest": (expand("latin1"), "not UTF-8"),
        "manifest without arch.patch_size": (expand("no-patch"), "'arch.patch_size' is missing"),
        "manifest with a string width": (expand("string-width"), "'arch.embed_dim' is missing or not an integer"),
        "misshaped learngene tensor": (expand("cut-block-tensor"), "learngene tensor 'A.attn.proj.bias' has shape (1,), but its manifest's architecture needs (64,)"),
        "misshaped inherited tensor": (expand("cut-inherited-tensor"), "the learngene gives fc_norm.weight of shape (1,), but its manifest's architecture needs (64,)"),
        "descendant from a misshaped learngene": (["train", "--init", f"learngene:{lgs['cut-block-tensor']}", "--depth", "2", "--config", "tiny-descendant", "--output-dir", str(tmp / "d1")], "learngene tensor 'A.attn.proj.bias' has shape (1,)"),
        "ancestry input_shape not a list": ([*extract, str(tmp / "lg5"), f"ancestry.run={odd_meta['shape-string']}"], "shape-string/final/metadata.json: 'input_shape' is 'x', not a list of positive integers"),
        "ancestry input_shape a number": ([*extract, str(tmp / "lg7"), f"ancestry.run={odd_meta['shape-number']}"], "'input_shape' is 16, not a list of positive integers"),
        "ancestry with negative classes": ([*extract, str(tmp / "lg6"), f"ancestry.run={odd_meta['negative-classes']}"], "'num_classes' is -2, not a positive integer"),
        "non-UTF-8 ancestry config": ([*extract, str(tmp / "lg1"), f"ancestry.run={ancestry}"], "config.yaml: not UTF-8"),
        "extract lr=.inf": ([*extract, str(tmp / "lg2"), "train.lr=.inf"], "'train.lr' must be a finite number"),
        "extract into a file": ([*extract, str(tmp / "a-file"), f"ancestry.run={ancestry}"], "a-file is a file"),
        "ancestry trained on other images": ([*extract, str(tmp / "lg3"), f"ancestry.run={ancestry_dir}", "data.image_size=32"], "the teacher (VisionTransformer) cannot run on a training batch (inputs (2, 1, 32, 32))"),
        "aux patch larger than the image": ([*extract, str(tmp / "lg4"), f"ancestry.run={ancestry_dir}", "model.kwargs.patch_size=32"], "the student (AuxNet) cannot run on a training batch (inputs (2, 1, 16, 16))"),
    }  # fmt: skip
    return run_named_console_cases("tleg.cli", cases)


CASES = [
    "truncated manifest",
    "manifest is a list",
    "non-UTF-8 manifest",
    "manifest without arch.patch_size",
    "manifest with a string width",
    "misshaped learngene tensor",
    "misshaped inherited tensor",
    "descendant from a misshaped learngene",
    "ancestry input_shape not a list",
    "ancestry input_shape a number",
    "ancestry with negative classes",
    "non-UTF-8 ancestry config",
    "extract lr=.inf",
    "extract into a file",
    "ancestry trained on other images",
    "aux patch larger than the image",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "tleg", culprit)


def test_an_extraction_stopped_by_nan_loss_reruns_in_place(tmp_path, capsys, ancestry_dir):
    out = str(tmp_path / "lg")
    extract = ["extract", "--config", "tiny", "--output-dir", out, f"ancestry.run={ancestry_dir}"]
    quick = ["method.aux_depth=2", "train.max_steps=2", "train.progress=false"]
    assert main([*extract, *quick, "train.lr=1e30"]) == 2
    assert "loss became nan" in capsys.readouterr().err
    assert main([*extract, *quick]) == 0  # the same command, a sane lr: no "not empty", no --resume needed
    assert (Path(out) / "manifest.json").is_file()
