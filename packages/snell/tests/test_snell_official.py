"""Official SNELL checkpoints (separate q/k/v, `additional_*.learnable.In_Qs/Out_Qs`, `shared_coeff_fc`) import.

The official layout is built here from its description: a (d_in, d_out) update `sum_h c_h cdist(In_Qs[h],
Out_Qs[h])`, applied as `x @ W`, pruned by zeroing `|W| <= torch.quantile(|W|, s)` and multiplying the kept
entries by `|W|`. The imported model must give the outputs of a plain ViT whose weights are W0 + W^T.
"""

from __future__ import annotations

import json
import os

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


def official_state(vit, rank, sparsity, seed=0):
    """A state dict in the official layout for timm ViT `vit` (its weights, random factors)."""
    g = torch.Generator().manual_seed(seed)
    names = ("In_Qs", "Out_Qs") if sparsity > 0 else ("In_Qs_1", "Out_Qs_1")
    state = {}
    for key, tensor in vit.state_dict().items():
        if ".attn.qkv." in key:
            for part, chunk in zip("qkv", tensor.chunk(3), strict=True):
                state[key.replace(".qkv.", f".{part}.")] = chunk.clone()
        else:
            state[key] = tensor.clone()
    for i, block in enumerate(vit.blocks):
        dim, hidden = block.attn.proj.in_features, block.mlp.fc1.out_features
        shapes = {"attn.additional_q": (dim, dim), "attn.additional_k": (dim, dim),
                  "attn.additional_v": (dim, dim), "attn.additional_proj": (dim, dim),
                  "mlp.additional_fc1": (dim, hidden), "mlp.additional_fc2": (hidden, dim)}  # fmt: skip
        for module, (d_in, d_out) in shapes.items():
            prefix = f"blocks.{i}.{module}.learnable."
            state[prefix + names[0]] = torch.randn(2, d_in, rank // 2, generator=g) * 0.3
            state[prefix + names[1]] = torch.randn(2, d_out, rank // 2, generator=g) * 0.3
            state[prefix + "shared_coeff_fc"] = COEFF.clone()
    return state


def merged_reference(vit, state, sparsity):
    """A plain copy of `vit` with W0 + W^T in every tuned linear: the official model's eval-mode function."""
    plain = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2,
                              num_heads=2, num_classes=5).eval()  # fmt: skip
    plain.load_state_dict(vit.state_dict())
    names = ("In_Qs", "Out_Qs") if sparsity > 0 else ("In_Qs_1", "Out_Qs_1")

    def delta(prefix):
        return reference_update(state[prefix + names[0]], state[prefix + names[1]], sparsity).T

    with torch.no_grad():
        for i, block in enumerate(plain.blocks):
            p = f"blocks.{i}."
            block.attn.qkv.weight += torch.cat([delta(f"{p}attn.additional_{x}.learnable.") for x in "qkv"])
            block.attn.proj.weight += delta(f"{p}attn.additional_proj.learnable.")
            block.mlp.fc1.weight += delta(f"{p}mlp.additional_fc1.learnable.")
            block.mlp.fc2.weight += delta(f"{p}mlp.additional_fc2.learnable.")
    return plain


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9])
def test_imported_model_computes_the_official_update(make_backbone, images, sparsity):
    source = make_backbone("vit", seed=1)  # the "trained" official backbone and head
    state = official_state(source, rank=4, sparsity=sparsity)
    model = get_snell_model(make_backbone("vit", seed=2), SnellConfig(rank=4, sparsity=sparsity)).eval()
    summary = load_official_state(model, state)
    assert summary["branches"] == 8 and summary["sparse"] == (sparsity > 0)
    expected = merged_reference(source, state, sparsity)(images)
    with torch.no_grad():
        got = model(images)
        assert (got - source.eval()(images)).abs().max() > 1e-3  # the branches matter
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


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
