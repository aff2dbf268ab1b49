"""A stitched descendant as a standalone model: the front instance's first blocks, a stitch layer, the end's rest.

`stitched_forward` is the one forward of every descendant, used both by the pool (on whole instances) and by
`StitchedViT` (on the parts it keeps). A `StitchedViT` holds exactly the parts it runs, so its parameter count
is patch/position embedding (front) + front blocks + stitch layer + end blocks + final norm and head (end).
On disk: `model.safetensors` + `descendant.json`; `load_descendant(dir)` rebuilds it with timm alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from learngene_core.checkpoint import WEIGHTS_NAME, load_model_weights, save_weights, write_dir_atomically
from learngene_core.learngene import VIT_NAME

from .manifest import read_manifest

DESCENDANT_CONFIG = "descendant.json"
FORMAT = "learngene-pool-descendant"
VERSION = 1


def stitch_layer(in_dim: int, out_dim: int) -> nn.Module:
    """Linear(in_dim -> out_dim), or Identity when the widths are equal."""
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)


def stitched_forward(
    front: VisionTransformer,
    last_front: int,
    stitch: nn.Module,
    end: VisionTransformer,
    last_end_skipped: int,
    x,
) -> torch.Tensor:
    """front embedding + blocks 0..last_front -> stitch -> end blocks last_end_skipped+1.. -> end norm and head."""
    x = front.patch_embed(x)
    x = front._pos_embed(x)
    x = front.patch_drop(x)
    x = front.norm_pre(x)
    for block in front.blocks[: last_front + 1]:
        x = block(x)
    x = stitch(x)
    for block in end.blocks[last_end_skipped + 1 :]:
        x = block(x)
    x = end.norm(x)
    return end.forward_head(x)


class StitchedViT(nn.Module):
    """A descendant: `front` keeps its embedding and blocks, `end` its blocks, final norm and head."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.front = timm.create_model(
            VIT_NAME, pretrained=False, **{**spec["front"], "depth": spec["front_blocks"]}
        )
        self.end = timm.create_model(
            VIT_NAME, pretrained=False, **{**spec["end"], "depth": spec["end_blocks"]}
        )
        self.stitch = stitch_layer(self.front.embed_dim, self.end.embed_dim)
        # drop what each side never runs, so the parameters are exactly the descendant's
        self.front.norm, self.front.fc_norm, self.front.head = nn.Identity(), nn.Identity(), nn.Identity()
        self.end.patch_embed, self.end.norm_pre = nn.Identity(), nn.Identity()
        self.end.pos_embed = self.end.cls_token = self.end.reg_token = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stitched_forward(self.front, len(self.front.blocks) - 1, self.stitch, self.end, -1, x)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for `num_classes` classes (fine-tuning on another label set)."""
        self.end.reset_classifier(num_classes)
        self.spec = {**self.spec, "end": {**self.spec["end"], "num_classes": num_classes}}


def build_descendant(spec: dict[str, Any]) -> StitchedViT:
    """A freshly initialised descendant of `spec` (the `spec` of a descendant.json)."""
    return StitchedViT(spec)


def save_descendant(model: StitchedViT, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` and `descendant.json` into a new directory, atomically."""

    def fill(tmp: Path) -> None:
        save_weights(model, tmp / WEIGHTS_NAME)
        config = {"format": FORMAT, "version": VERSION, "spec": model.spec, **(extra or {})}
        (tmp / DESCENDANT_CONFIG).write_text(json.dumps(config, indent=2))

    return write_dir_atomically(Path(directory), fill)


def load_descendant(directory: str | Path) -> StitchedViT:
    """Rebuild a saved descendant (no pool needed): `learngene_pool.load_descendant("runs/d5")`."""
    config = read_manifest(
        directory, DESCENDANT_CONFIG, FORMAT, VERSION, "a descendant", "write one with `init`", {"spec": dict}
    )
    model = build_descendant(config["spec"])
    load_model_weights(model, Path(directory) / WEIGHTS_NAME, strict=True)
    return model
