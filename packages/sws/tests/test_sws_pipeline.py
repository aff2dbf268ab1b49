"""The SWS pipeline end to end: extraction by distillation, the learngene files, descendants that learn faster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm

from learngene_core.errors import CheckpointError
from learngene_core.learngene import VIT_NAME, Learngene
from learngene_core.learngene.extract import AUX_RUN

# A budget where a descendant's first epoch shows what it inherited: 1 epoch (4 steps of 25 images) at a
# constant lr. Measured with the session learngene over seeds 0-7 at depth 2: learngene - scratch val accuracy
# after the epoch was 0.08 to 0.25 (seed 0: 0.11); with the default cosine decay to 0 within the one epoch,
# 0.00 to 0.17.
ONE_EPOCH = ["train.progress=false", "train.epochs=1", "train.scheduler=constant"]
MARGIN = 0.05


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def val_accuracies(run_dir: Path) -> list[float]:
    return [r["accuracy"] for r in records(run_dir / "metrics.jsonl") if r["split"] == "val"]


@pytest.fixture(scope="module")
def one_epoch_runs(sws_cli, learngene_dir, tmp_path_factory) -> dict[str, Path]:
    """`sws train` for 1 epoch at depth 2 (seed 0) from the learngene and from scratch."""
    root = tmp_path_factory.mktemp("one-epoch")
    runs = {}
    for init, extra in (
        ("learngene", [f"learngene:{learngene_dir}"]),
        ("scratch", ["scratch", "--learngene", learngene_dir]),
    ):
        out = root / init
        result = sws_cli(
            "train",
            "--init",
            *extra,
            "--depth",
            2,
            "--config",
            "tiny-descendant",
            "--output-dir",
            out,
            *ONE_EPOCH,
        )
        assert result.code == 0, result.err
        assert f"{init} descendant, depth 2" in result.out
        runs[init] = out
    return runs


@pytest.fixture(scope="module")
def comparison(sws_cli, learngene_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    result = sws_cli(
        "compare", "--learngene", learngene_dir, "--depths", "2,3", "--config", "tiny-descendant",
        "--output-dir", out, *ONE_EPOCH,
    )  # fmt: skip
    assert result.code == 0, result.err
    return out, result.out


def test_extraction_distils_the_ancestry_kd_loss_falls(learngene_dir):
    kd = [r["kd_loss"] for r in records(learngene_dir / AUX_RUN / "metrics.jsonl") if "kd_loss" in r]
    assert len(kd) >= 5
    assert kd[-1] < 0.5 * kd[0], kd
    assert min(kd[len(kd) // 2 :]) < min(kd[: len(kd) // 2]), kd  # still improving in the second half
    test = [r for r in records(learngene_dir / AUX_RUN / "metrics.jsonl") if r["split"] == "test"]
    assert test and test[-1]["accuracy"] > 0.6  # the aux net learned the ancestry's task (chance: 0.2)


def test_manifest_records_method_stages_aux_layout_arch_and_a_learngene_smaller_than_the_ancestry(
    learngene_dir, ancestry_dir
):
    manifest = json.loads((learngene_dir / "manifest.json").read_text())
    assert manifest["method"] == "sws"
    assert manifest["formula_version"] == 1 and "stage" in manifest["formula"]
    assert manifest["spec"] == {"stages": [1, 2, 1]}
    assert manifest["aux_layout"] == [0, 1, 1, 2]
    assert manifest["num_classes"] == 5
    assert manifest["arch"] == {
        "embed_dim": 64, "num_heads": 4, "mlp_ratio": 2.0, "patch_size": 4, "img_size": 16, "in_chans": 1,
        "qkv_bias": True, "class_token": False, "global_pool": "avg",
    }  # fmt: skip
    sizes = manifest["parameters"]
    ancestry = timm.create_model(
        VIT_NAME, pretrained=False, num_classes=5, **{**manifest["arch"], "depth": 4}
    )
    block = sum(p.numel() for p in ancestry.blocks[0].parameters())
    assert sizes["ancestry"] == sum(p.numel() for p in ancestry.parameters())
    assert sizes["learngene"] == Learngene.load(learngene_dir).num_parameters()
    inherited = (
        2 * 64 + 16 * 64 + (16 + 1) * 64
    )  # fc_norm, pos_embed (16 patches), patch_embed (4x4x1 + bias)
    assert sizes["learngene"] == 3 * block + inherited
    assert sizes["learngene"] < sizes["ancestry"]
    assert str(ancestry_dir) in manifest["ancestry"]["source"]


def test_learngene_descendant_beats_scratch_after_one_epoch(one_epoch_runs):
    learngene, scratch = (val_accuracies(one_epoch_runs[init]) for init in ("learngene", "scratch"))
    assert len(learngene) == len(scratch) == 1
    assert learngene[0] >= scratch[0] + MARGIN, (learngene, scratch)
    metadata = {
        init: json.loads((one_epoch_runs[init] / "final" / "metadata.json").read_text())
        for init in one_epoch_runs
    }
    assert metadata["learngene"]["parameters"] == metadata["scratch"]["parameters"]  # same architecture
    default = [0, 1]  # aux layers 0 and 2 of the aux layout [0, 1, 1, 2]
    assert metadata["learngene"]["layout"] == metadata["scratch"]["layout"] == default


def test_compare_writes_json_plot_and_a_table_row_per_depth_and_init(comparison):
    out, stdout = comparison
    rows = json.loads((out / "compare.json").read_text())
    assert sorted((r["depth"], r["init"]) for r in rows) == [
        (2, "learngene"),
        (2, "scratch"),
        (3, "learngene"),
        (3, "scratch"),
    ]
    for depth in (2, 3):
        pair = [r for r in rows if r["depth"] == depth]
        assert pair[0]["parameters"] == pair[1]["parameters"]
        assert all(len(r["val_curve"]) == 1 for r in pair)
    assert (out / "compare.png").stat().st_size > 1000
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| depth | init |")
    for depth in (2, 3):
        for init in ("learngene", "scratch"):
            assert any(line.startswith(f"| {depth} | {init} |") for line in table), table


def test_compare_trains_the_same_descendants_as_sws_train_at_the_same_seed(comparison, one_epoch_runs):
    out, _ = comparison
    rows = {(r["depth"], r["init"]): r for r in json.loads((out / "compare.json").read_text())}
    for init in ("learngene", "scratch"):
        assert rows[(2, init)]["val_curve"] == val_accuracies(one_epoch_runs[init]), init


def test_sws_learngene_is_refused_where_a_tleg_learngene_is_expected(learngene_dir):
    with pytest.raises(CheckpointError, match="sws learngene, not tleg"):
        Learngene.load(learngene_dir, method="tleg")
    assert Learngene.load(learngene_dir, method="sws").method == "sws"


def test_expand_refuses_a_non_empty_output_dir_and_leaves_it_untouched(sws_cli, learngene_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = sws_cli("expand", "--learngene", learngene_dir, "--depth", 3, "--output-dir", out)
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("sws: error: ")
    assert "not empty" in result.err_lines[0]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert not any(p.name.startswith(f".{out.name}.") for p in tmp_path.iterdir())  # no leftovers beside it
