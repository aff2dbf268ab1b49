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
