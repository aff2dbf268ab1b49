"""Official SNELL checkpoints (separate q/k/v, `additional_*.learnable.In_Qs/Out_Qs`, `shared_coeff_fc`) import.

The official layout is built here from its description: a (d_in, d_out) update `sum_h c_h cdist(In_Qs[h],
Out_Qs[h])`, applied as `x @ W`, pruned by zeroing `|W| <= torch.quantile(|W|, s)` and multiplying the kept
entries by `|W|`. The imported model must give the outputs of a plain ViT whose weights are W0 + W^T.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from learngene_core.errors import CheckpointError
from snell import SnellConfig, get_snell_model
from snell.cli import main
from snell.official import import_official, load_official_state

COEFF = torch.tensor([0.1, -0.1]).view(2, 1, 1)


def reference_update(in_qs, out_qs, sparsity):
    """The official (d_in, d_out) update from its description."""
    w = (COEFF * torch.cdist(in_qs, out_qs)).sum(0)
    if sparsity == 0:
        return w
    limit = torch.quantile(w.abs().flatten(), sparsity)
    return w * F.threshold(w.abs(), float(limit), 0.0)


def official_base(model, kind):
    """`model`'s weights under the official code's names for backbone `kind` (see snell.official)."""
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.clone()
        if kind == "vit" and ".attn.qkv." in key:  # separate q, k, v linears
            for part, chunk in zip("qkv", tensor.chunk(3), strict=True):
                state[key.replace(".qkv.", f".{part}.")] = chunk.clone()
            continue
        if kind == "swin":  # patch merging at the end of the previous stage; head without .fc
            key = re.sub(
                r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", key
            )
            key = re.sub(r"^head\.fc\.", "head.", key)
        if kind == "convnext":  # named stem and downsample modules
            key = re.sub(r"^stem\.0\.", "stem.proj.", key)
            key = re.sub(r"^stem\.1\.", "stem.norm.", key)
            key = re.sub(r"\.downsample\.0\.", ".downsample.norm.", key)
            key = re.sub(r"\.downsample\.1\.", ".downsample.proj.", key)
        state[key] = tensor
    if kind == "swin":  # the original Swin kept its index and mask buffers in the state dict
        for name, buffer in model.named_buffers():
            if name.endswith(("relative_position_index", "attn_mask")):
                state[name] = buffer.clone()
    return state


def tuned_linears(model):
    """{official tuning-module prefix: (timm linear, its official update's (d_in, d_out), q/k/v index or None)}."""
    found = {}
    for name, module in model.named_modules():
        if name.endswith(".attn") and hasattr(module, "qkv"):
            dim = module.qkv.in_features
            for i, part in enumerate("qkv"):
                found[f"{name}.additional_{part}.learnable."] = (f"{name}.qkv", (dim, dim), i)
            found[f"{name}.additional_proj.learnable."] = (f"{name}.proj", (dim, dim), None)
        if name.endswith(".mlp") and hasattr(module, "fc1"):
            fc1, fc2 = module.fc1, module.fc2
            found[f"{name}.additional_fc1.learnable."] = (
                f"{name}.fc1",
                (fc1.in_features, fc1.out_features),
                None,
            )
            found[f"{name}.additional_fc2.learnable."] = (
                f"{name}.fc2",
                (fc2.in_features, fc2.out_features),
                None,
            )
    return found


def official_state(model, rank, sparsity, seed=0, kind="vit"):
    """A state dict in the official layout for timm model `model` of backbone `kind` (its weights, random
    factors)."""
    g = torch.Generator().manual_seed(seed)
    names = ("In_Qs", "Out_Qs") if sparsity > 0 else ("In_Qs_1", "Out_Qs_1")
    state = official_base(model, kind)
    for prefix, (_, (d_in, d_out), _) in tuned_linears(model).items():
        state[prefix + names[0]] = torch.randn(2, d_in, rank // 2, generator=g) * 0.3
        state[prefix + names[1]] = torch.randn(2, d_out, rank // 2, generator=g) * 0.3
        state[prefix + "shared_coeff_fc"] = COEFF.clone()
    return state


def merged_reference(model, state, sparsity):
    """A plain copy of `model` with W0 + W^T in every tuned linear: the official model's eval-mode function."""
    plain = copy.deepcopy(model).eval()
    names = ("In_Qs", "Out_Qs") if sparsity > 0 else ("In_Qs_1", "Out_Qs_1")
    with torch.no_grad():
        for prefix, (linear, (_, d_out), part) in tuned_linears(plain).items():
            delta = reference_update(state[prefix + names[0]], state[prefix + names[1]], sparsity).T
            weight = plain.get_submodule(linear).weight
            rows = slice(None) if part is None else slice(part * d_out, (part + 1) * d_out)
            weight[rows] += delta
    return plain


def swin_with_shifted_windows(seed):
    """A tiny Swin whose second blocks shift their windows (the original Swin stored their attention masks)."""
    torch.manual_seed(seed)
    return timm.create_model("swin_tiny_patch4_window7_224", img_size=32, patch_size=2, window_size=4, embed_dim=16,
                             depths=(2, 2), num_heads=(1, 2), num_classes=5)  # fmt: skip


@pytest.mark.parametrize(("kind", "branches"), [("vit", 8), ("swin", 16), ("convnext", 8)])
@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9])
def test_imported_model_computes_the_official_update(
    make_backbone, images, tmp_path, kind, branches, sparsity
):
    build = swin_with_shifted_windows if kind == "swin" else lambda seed: make_backbone(kind, seed=seed)
    source = build(1)  # the "trained" official backbone and head
    state = official_state(source, rank=4, sparsity=sparsity, kind=kind)
    assert kind != "swin" or any(k.endswith("attn_mask") for k in state)
    torch.save(state, tmp_path / "official.pth")  # as the official code saves it, read without running code
    model = get_snell_model(build(2), SnellConfig(rank=4, sparsity=sparsity)).eval()
    summary = import_official(model, tmp_path / "official.pth")
    assert summary["branches"] == branches and summary["sparse"] == (sparsity > 0)
    assert summary["base_tensors"] == len(source.state_dict())  # every timm tensor, under its timm name
    expected = merged_reference(source, state, sparsity)(images)
    with torch.no_grad():
        got = model(images)
        assert (got - source.eval()(images)).abs().max() > 1e-3  # the branches matter
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_an_official_swin_of_another_window_size_is_refused_not_resized(make_backbone):
    state = official_state(make_backbone("swin"), rank=4, sparsity=0.5, kind="swin")
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    state[key] = torch.zeros(9, state[key].shape[1])  # a 2x2 window's table
    model = get_snell_model(make_backbone("swin"), SnellConfig(rank=4, sparsity=0.5))
    with pytest.raises(CheckpointError, match="relative_position_bias_table"):
        load_official_state(model, state)


def test_an_official_file_into_a_swin_v2_is_refused_by_name(make_backbone):
    """The Python API refuses it too, before reading a tensor (the CLI case is in test_reliability)."""
    swin_v2 = timm.create_model("swinv2_tiny_window8_256", img_size=32, patch_size=2, window_size=4,
                                embed_dim=16, depths=(1, 1), num_heads=(1, 2), num_classes=5)  # fmt: skip
    state = official_state(make_backbone("swin"), rank=4, sparsity=0.5, kind="swin")
    with pytest.raises(CheckpointError, match=r"Swin V2 \(SwinTransformerV2\) is not supported"):
        load_official_state(get_snell_model(swin_v2, SnellConfig(rank=4, sparsity=0.5)), state)


def test_sparsity_that_does_not_match_the_factors_is_refused(make_backbone):
    state = official_state(make_backbone("vit"), rank=4, sparsity=0.5)
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=4, sparsity=0.0))
    with pytest.raises(CheckpointError, match="snell.sparsity"):
        load_official_state(model, state)


def test_other_rank_or_coefficients_are_refused_by_name(make_backbone):
    state = official_state(make_backbone("vit"), rank=4, sparsity=0.5)
    with pytest.raises(CheckpointError, match="snell.rank=8"):
        load_official_state(get_snell_model(make_backbone("vit"), SnellConfig(rank=8, sparsity=0.5)), state)
    state["blocks.0.mlp.additional_fc1.learnable.shared_coeff_fc"] = COEFF * 2
    with pytest.raises(CheckpointError, match="shared_coeff_fc"):
        load_official_state(get_snell_model(make_backbone("vit"), SnellConfig(rank=4, sparsity=0.5)), state)


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(make_backbone, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {"x": torch.ones(1)}, "extra": Payload()}, tmp_path / "evil.pth")
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=4))
    with pytest.raises(CheckpointError, match="refused .*posix.system"):
        import_official(model, tmp_path / "evil.pth")
    assert not marker.exists()


def tiny_preset_backbone():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=64, depth=4, num_heads=4,
                             mlp_ratio=2.0, num_classes=5, in_chans=1)  # fmt: skip


def test_cli_imports_into_a_run_that_eval_and_merge_read(capsys, tmp_path):
    state = official_state(tiny_preset_backbone(), rank=8, sparsity=0.5)
    torch.save(state, tmp_path / "official.pth")
    out = tmp_path / "run"
    assert main(["import-official", "--checkpoint", str(tmp_path / "official.pth"), "--config", "tiny",
                 "--output-dir", str(out)]) == 0  # fmt: skip
    assert "imported 16 SNELL branches" in capsys.readouterr().out
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] <= 1.0
    assert main(["merge", "--run", str(out), "--output-dir", str(tmp_path / "merged")]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert (
        main(
            [
                "import-official",
                "--checkpoint",
                str(tmp_path / "official.pth"),
                "--config",
                "tiny",
                "--output-dir",
                str(out),
            ]
        )
        == 2
    )  # fmt: skip  (an existing run is never overwritten)
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["import-official", "--checkpoint", str(tmp_path / "official.pth"), "--config", "tiny",
                 "--output-dir", str(tmp_path / "r2"), "snell.sparsity=0"]) == 2  # fmt: skip
    assert "snell.sparsity" in capsys.readouterr().err


def test_cli_imports_an_official_swin_into_a_run_that_eval_reads(capsys, tmp_path):
    torch.manual_seed(0)
    kwargs = dict(patch_size=2, window_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2])
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=16, in_chans=1, num_classes=5, **kwargs)
    torch.save(official_state(swin, rank=8, sparsity=0.5, kind="swin"), tmp_path / "official.pth")
    overrides = [
        "model.name=swin_tiny_patch4_window7_224",
        f"model.kwargs={json.dumps(kwargs)}",
        "model.checkpoint=null",
    ]
    out = tmp_path / "run"
    assert main(["import-official", "--checkpoint", str(tmp_path / "official.pth"), "--config", "tiny",
                 "--output-dir", str(out), *overrides]) == 0  # fmt: skip
    assert "imported 16 SNELL branches and 63 backbone tensors" in capsys.readouterr().out
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] <= 1.0
