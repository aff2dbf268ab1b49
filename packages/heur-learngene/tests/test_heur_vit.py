"""The ViT backbone end to end: a widened timm ViT collective model -> learngene blocks -> a trained descendant."""

from __future__ import annotations

import json

import torch

from heur_learngene.cli import main
from learngene_core.learngene import Learngene
from learngene_core.learngene.inherit import build_layer_descendant


def test_vit_stream_to_descendant(tmp_path):
    run = tmp_path / "vit"
    assert main(["collective", "--config", "tiny-vit", "--output-dir", str(run), "train.epochs=2"]) == 0
    learngene = Learngene.load(run / "learngene", "heur-learngene")
    # before tasks 1 and 2, blocks 0 and 1 grew from 128 to floor(1.5 * 128) MLP hidden units
    assert learngene.arch["kwargs"]["mlp_hidden"] == [192, 192, 128, 128, 128, 128]
    blocks = {int(name.split(".")[1]) for name in learngene.tensors}
    assert blocks == set(learngene.spec["layers"]) and len(blocks) == 2

    model, inheritance, _ = build_layer_descendant(
        learngene, "learngene", num_classes=2, input_shape=(1, 16, 16)
    )
    state = model.state_dict()
    copied = {k for k, v in inheritance.items() if v == "copied"}
    assert copied == set(learngene.tensors)
    assert all(torch.equal(state[k], learngene.tensors[k]) for k in copied)
    assert [block.mlp.fc1.out_features for block in model.blocks] == [192, 192, 128, 128, 128, 128]

    out = tmp_path / "d67"
    argv = ["train", "--learngene", str(run / "learngene"), "--config", "tiny-descendant", "--output-dir", str(out),
            "train.epochs=8"]  # fmt: skip
    assert main(argv) == 0
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "val"]  # fmt: skip
    assert losses[-1] < losses[0]
