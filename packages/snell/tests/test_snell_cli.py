"""`snell` console script in-process on the tiny preset: train, eval, merge, compare, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from learngene_core.checkpoint import load_weights, save_weights
from learngene_core.cli import main as learngene_main
from learngene_core.testing import assert_one_error_line, assert_resume_is_exact
from snell.backbone import resolve_checkpoint
from snell.cli import main

FAST = ["train.epochs=2", "train.eval_every=4", "train.checkpoint_every=100", "train.log_every=1"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "snell", *culprits)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snell") / "run"
    assert main(["train", "--config", "tiny", "--output-dir", str(out), *FAST]) == 0
    return out


def test_train_writes_a_run_with_an_adapter_and_a_falling_loss(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert train[-1] < train[0]
    assert (tiny_run / "adapter" / "adapter_model.safetensors").is_file()
    meta = json.loads((tiny_run / "final" / "metadata.json").read_text())
    assert meta["snell"]["trainable"] == meta["trainable_parameters"]


def test_base_weights_are_bit_identical_to_the_backbone_after_training(tiny_run):
    backbone = load_weights(resolve_checkpoint("package:tiny-vit-digits04.safetensors"))
    trained = load_weights(tiny_run / "final" / "model.safetensors")
    frozen = {n: t for n, t in backbone.items() if not n.startswith("head.") and n != "cls_token"}
    for name, tensor in frozen.items():
        key = f"model.{name}"
        if key not in trained:  # wrapped linears live under base_layer
            stem, _, leaf = key.rpartition(".")
            key = f"{stem}.base_layer.{leaf}"
        assert torch.equal(trained[key], tensor), name
    assert len(frozen) > 40


def test_eval_reports_the_final_test_accuracy(capsys, tiny_run):
    code, out, _ = run(capsys, "eval", "--run", tiny_run)
    assert code == 0
    reported = json.loads(out.strip().splitlines()[-1])
    final = json.loads((tiny_run / "final" / "metadata.json").read_text())["metrics"]
    assert reported["accuracy"] == pytest.approx(final["accuracy"])


def test_merge_writes_a_plain_timm_checkpoint_that_learngene_eval_scores_the_same(capsys, tiny_run, tmp_path):
    out = tmp_path / "merged"
    code, _, err = run(capsys, "merge", "--run", tiny_run, "--output-dir", out)
    assert code == 0, err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["max_abs_diff_vs_unmerged"] < 1e-5
    model = timm.create_model("vit_tiny_patch16_224", **meta["model"]["kwargs"], img_size=16, in_chans=1,
                              num_classes=5)  # fmt: skip
    model.load_state_dict(load_weights(out / "model.safetensors"))  # strict: a plain timm ViT
    assert learngene_main(["eval", "--config", str(out / "config.yaml"), "--checkpoint", str(out)]) == 0
    merged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    final = json.loads((tiny_run / "final" / "metadata.json").read_text())["metrics"]
    assert merged["accuracy"] == pytest.approx(final["accuracy"])


def test_compare_prints_a_table_of_the_methods(capsys, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = run(
        capsys, "compare", "--config", "tiny", "--methods", "snell,linear-probe", "--output-dir", out,
        "train.epochs=1", "train.checkpoint_every=100",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in rows] == ["snell", "linear-probe"]
    assert rows[0]["trainable_parameters"] > rows[1]["trainable_parameters"]
    assert "| snell |" in stdout and "| linear-probe |" in stdout


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("snell.rank=7", "snell.rank"),
        ("snell.sparsity=1.0", "snell.sparsity"),
        ("snell.target_modules=[query]", "candidates"),
        ("snell.kernel=gauss", "gauss"),
    ],
)
def test_bad_settings_are_one_line_errors_and_write_nothing(capsys, tmp_path, override, culprit):
    out = tmp_path / "out"
    code, _, err = run(capsys, "train", "--config", "tiny", "--output-dir", out, override)
    assert_user_error(code, err, culprit)
    assert not out.exists() or not any(out.iterdir())


def test_a_checkpoint_of_another_backbone_is_a_one_line_error(capsys, tmp_path):
    other = tmp_path / "convnext.safetensors"
    save_weights(timm.create_model("convnext_atto", dims=(8, 16, 32, 64), depths=(1, 1, 1, 1)), other)
    out = tmp_path / "out"
    code, _, err = run(capsys, "train", "--config", "tiny", "--backbone", other, "--output-dir", out)
    assert_user_error(code, err, str(other), "not a checkpoint of this backbone")
    assert not out.exists()


def test_existing_outputs_are_left_untouched(capsys, tiny_run):
    before = {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}
    code, _, err = run(capsys, "train", "--config", "tiny", "--output-dir", tiny_run, "snell.rank=4")
    assert_user_error(code, err, str(tiny_run))
    assert before == {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}


def test_unknown_backbone_name_suggests_a_timm_model(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", "tiny", "--backbone", "vit_tiny_patch16_22",
                       "--output-dir", tmp_path / "o")  # fmt: skip
    assert_user_error(code, err, "vit_tiny_patch16_22", "did you mean")


def test_every_paper_preset_loads(capsys):
    from learngene_core.config import preset_names
    from snell.experiment import PRESETS, load_snell_config

    names = preset_names(PRESETS)
    assert len([n for n in names if n.startswith("vtab-")]) == 19
    assert len([n for n in names if n.startswith("fgvc-")]) == 5
    cifar = load_snell_config("vtab-cifar")
    assert (cifar.snell.rank, cifar.snell.sparsity, cifar.data.batch_size) == (32, 0.9, 16)
    assert cifar.train.epochs == 200 and cifar.train.lr == 1e-3


def test_train_interrupted_after_a_checkpoint_resumes_exactly(tmp_path):
    argv = ["train", "--config", "tiny", "train.epochs=2", "train.checkpoint_every=2", "train.eval_every=4"]
    assert_resume_is_exact(main, argv, tmp_path, list(range(3, 9)))  # 4 steps an epoch; adapter/ included


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "tiny", "model.checkpoint=null"],
        ["--config", "tiny", "--backbone", "vit_tiny_patch16_224"],
        ["--config", "vtab-cifar", "data.path=nowhere"],
    ],
)
def test_a_backbone_without_weights_is_refused_naming_the_expected_one(capsys, tmp_path, args):
    out = tmp_path / "out"
    code, _, err = run(capsys, "train", *args, "--output-dir", out)
    assert_user_error(code, err, "randomly initialised", "--random-backbone")
    if "vtab-cifar" in args:
        assert "ViT-B_16.npz" in err
    assert not out.exists()


def test_random_backbone_flag_allows_random_weights():
    from snell.cli import _apply_backbone, build_parser
    from snell.experiment import check_backbone, load_snell_config

    args = build_parser().parse_args(
        [
            "train",
            "--config",
            "tiny",
            "--backbone",
            "vit_tiny_patch16_224",
            "--random-backbone",
            "--output-dir",
            "o",
        ]
    )
    cfg = load_snell_config("tiny", _apply_backbone(args, []))
    assert cfg.model.checkpoint is None and cfg.random_backbone
    check_backbone(cfg)  # allowed: no error
    assert all(load_snell_config(name).expected_checkpoint for name in ("vtab-cifar", "fgvc-cub"))
