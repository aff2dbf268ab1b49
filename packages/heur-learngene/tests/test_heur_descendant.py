"""Descendants: inherited layers + fresh rest + new head, trained on a few samples of unseen digits."""

from __future__ import annotations

import json

import torch

from heur_learngene.cli import main
from learngene_core.learngene import Learngene
from learngene_core.learngene.inherit import build_layer_descendant


def test_descendant_starts_from_the_learngene_layers(collective_dir):
    learngene = Learngene.load(collective_dir / "learngene", "heur-learngene")
    model, inheritance, mapping = build_layer_descendant(
        learngene, "learngene", num_classes=2, input_shape=(1, 16, 16)
    )
    state = model.state_dict()
    copied = {k for k, v in inheritance.items() if v == "copied"}
    assert copied == set(learngene.tensors)
    assert all(torch.equal(state[k], learngene.tensors[k]) for k in copied)
    assert mapping == {m: m for m in learngene.spec["layers"]}


def test_descendant_learns_unseen_digits_from_ten_images_per_class(collective_dir, tmp_path, capsys):
    out = tmp_path / "d67"
    code = main(["train", "--learngene", str(collective_dir / "learngene"), "--config", "tiny-descendant",
                 "--output-dir", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "copied" in printed and "<- ancestry layer" in printed
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["split"] == "val"]  # fmt: skip
    assert losses[-1] < losses[0]
    assert json.loads(printed.strip().splitlines()[-1])["accuracy"] > 0.6


def test_expand_prints_the_inheritance_map_like_tleg(collective_dir, tmp_path, capsys):
    out = tmp_path / "expanded"
    code = main(["expand", "--learngene", str(collective_dir / "learngene"), "--num-classes", "4",
                 "--output-dir", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "inheritance: 32 tensors: 6 copied, 26 fresh" in printed
    inheritance = json.loads((out / "inheritance.json").read_text())
    assert sorted(k for k, v in inheritance.items() if v == "copied") == sorted(
        Learngene.load(collective_dir / "learngene").tensors
    )


def test_a_descendant_on_other_image_sizes_inherits_the_same_layers(collective_dir, tmp_path):
    """Allowed by design: the inherited convs hold no tensor that depends on the image size and the VGG pools
    globally before its (fresh) head, so a descendant on 32x32 images (the collective model saw 16x16) gets the
    learngene layers exactly and trains."""
    learngene = Learngene.load(collective_dir / "learngene", "heur-learngene")
    assert learngene.manifest["input_shape"] == [1, 16, 16]
    model, inheritance, _ = build_layer_descendant(
        learngene, "learngene", num_classes=2, input_shape=(1, 32, 32)
    )
    copied = {k for k, v in inheritance.items() if v == "copied"}
    assert copied == set(learngene.tensors)
    assert all(torch.equal(model.state_dict()[k], learngene.tensors[k]) for k in copied)
    code = main(["train", "--learngene", str(collective_dir / "learngene"), "--config", "tiny-descendant",
                 "--output-dir", str(tmp_path / "d32"), "data.image_size=32", "train.epochs=1"])  # fmt: skip
    assert code == 0
