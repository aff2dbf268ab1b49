"""The spec's identities on a pool built from a real (tiny) distillation: instance alone = the instance, parameter
counts are the sum of the parts, `ours` = transpose of the mean distillation projection, exports reload exactly."""

from __future__ import annotations

import json

import pytest
import torch

from learngene_core.checkpoint import load_model_weights, load_weights
from learngene_core.config import load_config
from learngene_core.experiment import prepare_run
from learngene_core.models import count_parameters
from learngene_pool.aux import read_aux
from learngene_pool.build import assemble_pool, load_pool
from learngene_pool.cli import main
from learngene_pool.config import BuildConfig
from learngene_pool.descendant import load_descendant
from learngene_pool.stitch_init import block_features

PACKAGE = "learngene_pool.configs"


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def pool(pool_dir):
    return load_pool(pool_dir)[0]


def test_pool_orders_instances_by_width_and_has_the_spec_config_count(pool, pool_dir):
    manifest = json.loads((pool_dir / "pool.json").read_text())
    assert [i["width"] for i in manifest["instances"]] == [32, 64]  # given wide first, ordered narrow first
    assert len(pool.configs) == 2 + (1 + 3 * (3 - 1))
    assert manifest["configs"][2] == {
        "id": 2,
        "front": 0,
        "end": 1,
        "front_block": 0,
        "end_block": 0,
        "stitch": 0,
    }


@pytest.mark.parametrize("index", [0, 1])
def test_an_instance_alone_config_equals_that_instance(pool, index):
    x = images()
    with torch.no_grad():
        assert torch.equal(pool.run(index, x), pool.instances[index](x))


def test_a_stitched_descendant_has_exactly_the_parameters_of_its_parts(pool):
    for cfg in pool.configs:
        front, end = pool.instances[cfg.front], pool.instances[cfg.end]
        parts = numel(front.patch_embed) + front.pos_embed.numel()
        parts += sum(numel(front.blocks[i]) for i in range(cfg.front_block + 1))
        parts += numel(pool.stitch_of(cfg))
        parts += sum(numel(end.blocks[i]) for i in range(cfg.end_block + 1, pool.depth))
        parts += numel(end.norm) + numel(end.fc_norm) + numel(end.head)
        assert count_parameters(pool.descendant(cfg.id)) == parts, cfg


def test_every_descendant_computes_what_the_pool_computes_for_its_config(pool):
    x = images()
    with torch.no_grad():
        for cfg in pool.configs:
            torch.testing.assert_close(pool.descendant(cfg.id).eval()(x), pool.run(cfg.id, x), rtol=0, atol=0)


def test_ours_init_is_the_transpose_of_the_narrow_models_mean_distillation_projection(narrow_dir, wide_dir):
    cfg = load_config("tiny-build", [f"aux=[{narrow_dir},{wide_dir}]"], BuildConfig, PACKAGE)
    pool, _ = assemble_pool(cfg, prepare_run(cfg))
    manifest = read_aux(narrow_dir)
    assert manifest["block_projections"] == ["blocks.0", "blocks.1", "blocks.2"]  # [front,end] of 3 blocks
    tensors = load_weights(narrow_dir / "projections.safetensors")
    projections = [tensors[f"{name}.weight"] for name in manifest["block_projections"]]
    assert projections[0].shape == (32, 64)  # teacher (64) -> student (32)
    assert not torch.equal(projections[0], projections[1])  # learned separately
    expected = torch.stack(projections).mean(0).T
    for layer in pool.stitches["0-1"]:
        assert layer.weight.shape == (64, 32)
        torch.testing.assert_close(layer.weight, expected, rtol=0, atol=0)
        assert torch.count_nonzero(layer.bias) == 0


def test_lstsq_init_fits_the_end_features_better_than_ours(narrow_dir, wide_dir):
    errors = {}
    for mode in ("ours", "lstsq"):
        cfg = load_config(
            "tiny-build", [f"aux=[{narrow_dir},{wide_dir}]", f"stitch_init={mode}"], BuildConfig, PACKAGE
        )
        run = prepare_run(cfg)
        pool, _ = assemble_pool(cfg, run)
        pool.eval()
        x = next(iter(run.loaders[0]))[0]  # digits the fit saw (its first 100 training images)
        narrow, wide = (block_features(instance, x) for instance in pool.instances)
        with torch.no_grad():
            errors[mode] = sum(
                torch.nn.functional.mse_loss(
                    pool.stitch_of(c)(narrow[c.front_block]), wide[c.end_block]
                ).item()
                for c in pool.configs[2:]
            )
    assert errors["lstsq"] < errors["ours"]


def test_an_exported_descendant_reloads_to_the_same_outputs(pool, pool_dir, tmp_path, capsys):
    out = tmp_path / "descendant"
    assert main(["init", "--pool", str(pool_dir), "--config-id", "4", "--output-dir", str(out)]) == 0
    config = json.loads((out / "descendant.json").read_text())
    assert config["config_id"] == 4 and set(config["spec"]) == {"front", "end", "front_blocks", "end_blocks"}
    model = load_descendant(out).eval()  # one call, no pool
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model(x), pool.run(4, x), rtol=0, atol=0)
    assert "load_descendant" in capsys.readouterr().out


def test_instance_weights_in_the_pool_start_from_the_aux_models(narrow_dir, wide_dir):
    cfg = load_config("tiny-build", [f"aux=[{wide_dir},{narrow_dir}]"], BuildConfig, PACKAGE)
    pool, _ = assemble_pool(cfg, prepare_run(cfg))
    import timm

    reference = timm.create_model("vit_tiny_patch16_224", **read_aux(narrow_dir)["timm_kwargs"])
    load_model_weights(reference, narrow_dir / "final")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(pool.instances[0].state_dict()[name], tensor), name
