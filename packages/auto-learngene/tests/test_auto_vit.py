"""A ViT ancestry whose blocks differ in MLP width (heur's widened collective model): condense, then a descendant."""

from __future__ import annotations

import json

import torch

from auto_learngene.cli import main as auto_main
from learngene_core.cli import main as learngene_main
from learngene_core.learngene import Learngene
from learngene_core.learngene.inherit import build_layer_descendant

MLP_HIDDEN = [192, 128, 128]


def test_widened_vit_ancestry_to_descendant(tmp_path):
    ancestry = tmp_path / "ancestry"
    overrides = ["model.name=vit_learngene", "model.kwargs.depth=3", f"model.kwargs.mlp_hidden={MLP_HIDDEN}",
                 "data.classes=[4,5]", "train.epochs=3", "train.progress=false"]  # fmt: skip
    assert (
        learngene_main(["train", "--config", "digits-ancestry", "--output-dir", str(ancestry), *overrides])
        == 0
    )
    run = tmp_path / "auto"
    condense = ["condense", "--config", "tiny", "--output-dir", str(run), f"ancestry.run={ancestry}", "method.k=2",
                "train.epochs=2", "method.max_layer_distance=null"]  # fmt: skip
    assert auto_main(condense) == 0
    learngene = Learngene.load(run / "learngene", "auto-learngene")
    assert learngene.arch["kwargs"]["mlp_hidden"] == MLP_HIDDEN

    model, inheritance, _ = build_layer_descendant(
        learngene, "learngene", num_classes=2, input_shape=(1, 16, 16)
    )
    state = model.state_dict()
    copied = {k for k, v in inheritance.items() if v == "copied"}
    assert copied == set(learngene.tensors) and {k.split(".")[1] for k in copied} == set(
        map(str, learngene.spec["layers"])
    )
    assert all(torch.equal(state[k], learngene.tensors[k]) for k in copied)
    assert [block.mlp.fc1.out_features for block in model.blocks] == MLP_HIDDEN

    out = tmp_path / "d67"
    argv = ["train", "--learngene", str(run / "learngene"), "--config", "tiny-descendant", "--output-dir", str(out),
            "train.epochs=8"]  # fmt: skip
    assert auto_main(argv) == 0
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "val"]  # fmt: skip
    assert losses[-1] < losses[0]


def test_a_vit_descendant_on_other_image_sizes_inherits_the_same_blocks(condensed_dir, tmp_path):
    """Allowed by design: a layer learngene holds whole ViT blocks, which do not depend on the number of
    patches; the position embeddings (which do) are never inherited but fresh, as the patch embedding and head."""
    learngene = Learngene.load(condensed_dir / "learngene", "auto-learngene")
    assert learngene.manifest["input_shape"] == [1, 16, 16]
    assert not any(k.startswith(("pos_embed", "patch_embed")) for k in learngene.tensors)
    model, inheritance, _ = build_layer_descendant(
        learngene, "learngene", num_classes=2, input_shape=(1, 32, 32)
    )
    assert model.patch_embed.img_size == (32, 32)  # more patches, so more (fresh) position embeddings
    copied = {k for k, v in inheritance.items() if v == "copied"}
    assert copied == set(learngene.tensors)
    assert all(torch.equal(model.state_dict()[k], learngene.tensors[k]) for k in copied)
    argv = ["train", "--learngene", str(condensed_dir / "learngene"), "--config", "tiny-descendant",
            "--output-dir", str(tmp_path / "d32"), "data.image_size=32", "train.epochs=1"]  # fmt: skip
    assert auto_main(argv) == 0
