"""Per-layer stage layouts given on the command line, and the errors for layouts SWS cannot expand."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from learngene_core.learngene import BLOCK_TENSORS, Learngene


@pytest.fixture(scope="module")
def learngene(learngene_dir) -> Learngene:
    return Learngene.load(learngene_dir, "sws")


def assert_blocks_follow(state: dict[str, torch.Tensor], learngene: Learngene, layout: list[int], exact=True):
    """Every block i of `state` is the learngene block of stage layout[i] (and of no other stage)."""
    stages = range(len(learngene.spec["stages"]))
    for i, stage in enumerate(layout):
        for name in BLOCK_TENSORS:
            got = state[f"blocks.{i}.{name}"]
            same = {
                s
                for s in stages
                if (torch.equal if exact else lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-7))(
                    got, learngene.tensors[f"stage{s}.{name}"]
                )
            }
            assert same == {stage}, f"layer {i} ({name}) equals stages {same}, expected {stage}"


@pytest.mark.parametrize(
    "flag, layout",
    [
        ("--stages", [0, 0, 1, 2]),
        ("--layout", [0, 2, 2, 2]),
        ("--stages", [1]),
        ("--stages", [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]),
    ],
)
def test_expand_honours_an_explicit_stage_per_layer(
    sws_cli, learngene, learngene_dir, tmp_path, flag, layout
):
    out = tmp_path / "d"
    text = ",".join(map(str, layout))
    result = sws_cli(
        "expand", "--learngene", learngene_dir, "--depth", len(layout), flag, text, "--output-dir", out
    )
    assert result.code == 0, result.err
    assert f"layout {layout}" in result.out
    config = json.loads((out / "config.json").read_text())
    assert config["layout"] == layout and config["kwargs"]["depth"] == len(layout)
    state = load_file(str(out / "model.safetensors"))
    assert not any(k.startswith(f"blocks.{len(layout)}.") for k in state)
    assert_blocks_follow(state, learngene, layout)


def test_train_starts_from_the_explicit_stages(sws_cli, learngene, learngene_dir, tmp_path):
    out = tmp_path / "t"
    result = sws_cli(
        "train", "--init", f"learngene:{learngene_dir}", "--depth", 2, "--stages", "0,2",
        "--config", "tiny-descendant", "--output-dir", out,
        "train.progress=false", "train.max_steps=1", "train.lr=1e-12",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads((out / "final" / "metadata.json").read_text())["layout"] == [0, 2]
    # one step at lr 1e-12 moves nothing measurably: the trained weights are still the chosen stages
    assert_blocks_follow(load_file(str(out / "final" / "model.safetensors")), learngene, [0, 2], exact=False)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--depth", "4", "--stages", "0,1,2,3"], ["stage 3", "3 stages"]),
        (["--depth", "2", "--stages=-1,0"], ["stage -1", "3 stages"]),
        (["--depth", "4", "--stages", "0,2,1,1"], ["[0, 2, 1, 1]", "earlier stage"]),
        (["--depth", "4", "--stages", "0,1,2"], ["3 entries", "--depth is 4"]),
        (["--depth", "2", "--stages", "0,1,2"], ["3 entries", "--depth is 2"]),
        (["--depth", "0"], ["--depth must be >= 1"]),
        (["--depth", "0", "--stages", ""], ["--depth must be >= 1"]),
        (["--depth", "2", "--stages", "0,x"], ["comma-separated integers", "0,x"]),
    ],
    ids=[
        "stage-too-big",
        "negative-stage",
        "decreasing",
        "too-short",
        "too-long",
        "depth-0",
        "depth-0-empty",
        "not-int",
    ],
)
def test_expand_rejects_a_bad_layout_with_one_error_line_and_exit_2(
    sws_cli, learngene_dir, tmp_path, args, expected
):
    out = tmp_path / "d"
    result = sws_cli("expand", "--learngene", learngene_dir, *args, "--output-dir", out)
    assert result.code == 2
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("sws: error: "), line
    for text in expected:
        assert text in line, line
    assert result.out == ""
    assert not out.exists()


def test_train_rejects_a_decreasing_layout_before_writing_anything(sws_cli, learngene_dir, tmp_path):
    out = tmp_path / "t"
    result = sws_cli(
        "train", "--init", f"learngene:{learngene_dir}", "--depth", 2, "--stages", "2,1",
        "--config", "tiny-descendant", "--output-dir", out,
    )  # fmt: skip
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("sws: error: ")
    assert "earlier stage" in result.err_lines[0]
    assert not out.exists()


@pytest.mark.parametrize("stages", ["[3,0]", "[]", "[2,-1]"])
def test_extract_rejects_stages_that_are_empty_or_hold_an_empty_stage(
    sws_cli, ancestry_dir, tmp_path, stages
):
    out = tmp_path / "lg"
    result = sws_cli(
        "extract", "--config", "tiny", "--output-dir", out, f"ancestry.run={ancestry_dir}",
        "train.progress=false", f"method.stages={stages}",
    )  # fmt: skip
    assert result.code == 2
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("sws: error: ") and "config" in line
    assert "method.stages" in line, line  # the full key, as for every other config error
    assert not out.exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("method.stages=3", "'method.stages' must be a list"),
        ("method.stage=[1]", "unknown key 'method.stage'"),
    ],
)
def test_extract_names_the_key_of_a_mistyped_method_section(
    sws_cli, ancestry_dir, tmp_path, override, expected
):
    result = sws_cli(
        "extract",
        "--config",
        "tiny",
        "--output-dir",
        tmp_path / "lg",
        f"ancestry.run={ancestry_dir}",
        override,
    )
    assert result.code == 2 and len(result.err_lines) == 1
    assert expected in result.err_lines[0]


def test_compare_takes_a_layout_per_depth_from_the_flag_and_the_config(sws_cli, learngene_dir, tmp_path):
    out = tmp_path / "cmp"
    result = sws_cli(
        "compare", "--learngene", learngene_dir, "--depths", "2,3", "--layouts", "2:1,2",
        "--config", "tiny-descendant", "--output-dir", out,
        "train.progress=false", "train.epochs=1", "data.samples_per_class=2",
    )  # fmt: skip
    assert result.code == 0, result.err
    for init in ("learngene", "scratch"):
        assert json.loads((out / f"depth2-{init}" / "final" / "metadata.json").read_text())["layout"] == [
            1,
            2,
        ]
        default = json.loads((out / f"depth3-{init}" / "final" / "metadata.json").read_text())["layout"]
        assert default == [0, 1, 2]  # 3 layers of 3 stages: one each


def test_compare_rejects_a_bad_layout_of_one_depth_before_training(sws_cli, learngene_dir, tmp_path):
    out = tmp_path / "cmp"
    result = sws_cli(
        "compare", "--learngene", learngene_dir, "--depths", "2", "--config", "tiny-descendant",
        "--output-dir", out, "descendant.layouts.2=[2,0]",
    )  # fmt: skip
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert "[2, 0]" in result.err and "earlier stage" in result.err
    assert not out.exists()
