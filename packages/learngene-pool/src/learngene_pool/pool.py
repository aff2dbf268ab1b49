"""The pool: instances (the blocks of the auxiliary models, ordered by width) and the stitch layers between them.

In training every forward samples one config uniformly from `train_ids` (SN-Net style: one descendant per step);
in eval it runs `active` (set it, or use `with pool.using(cfg_id):`). `descendant(cfg_id)` copies a config out as a
standalone `StitchedViT`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import timm
import torch
from torch import nn

from learngene_core.errors import ConfigError
from learngene_core.learngene import VIT_NAME

from .descendant import StitchedViT, stitch_layer, stitched_forward
from .stitching import StitchConfig, stitch_configs, stitch_pairs


def pair_key(front: int, end: int) -> str:
    return f"{front}-{end}"


class LearngenePool(nn.Module):
    """Instances built from timm kwargs (same depth, ordered by width) + d-1 stitch layers per instance pair."""

    def __init__(
        self, instance_kwargs: list[dict[str, Any]], nearest: bool = False, train_ids: list[int] | None = None
    ) -> None:
        super().__init__()
        self.instance_kwargs = [dict(kw) for kw in instance_kwargs]
        self.instances = nn.ModuleList(
            timm.create_model(VIT_NAME, pretrained=False, **kw) for kw in instance_kwargs
        )
        depths = {len(m.blocks) for m in self.instances}
        if len(depths) != 1:
            raise ConfigError(
                f"pool instances must share one depth for paired stitching, got depths {sorted(depths)}"
            )
        self.depth = depths.pop()
        self.nearest = nearest
        self.configs = stitch_configs(len(self.instances), self.depth, nearest)
        self.stitches = nn.ModuleDict(
            {
                pair_key(i, j): nn.ModuleList(
                    stitch_layer(self.instances[i].embed_dim, self.instances[j].embed_dim)
                    for _ in range(self.depth - 1)
                )
                for i, j in stitch_pairs(len(self.instances), nearest)
            }
        )
        self.train_ids = [self.config(i).id for i in train_ids] if train_ids else [c.id for c in self.configs]
        self.active = len(self.instances) - 1  # the widest instance alone

    def config(self, cfg_id: int) -> StitchConfig:
        """The config with this id, or a ConfigError giving the valid range."""
        if not isinstance(cfg_id, int) or not 0 <= cfg_id < len(self.configs):
            raise ConfigError(f"unknown config id {cfg_id}; this pool has configs 0..{len(self.configs) - 1}")
        return self.configs[cfg_id]

    def stitch_of(self, cfg: StitchConfig) -> nn.Module:
        return nn.Identity() if cfg.alone else self.stitches[pair_key(cfg.front, cfg.end)][cfg.stitch]

    def run(self, cfg_id: int, x: torch.Tensor) -> torch.Tensor:
        """The output of descendant `cfg_id`."""
        cfg = self.config(cfg_id)
        front, end = self.instances[cfg.front], self.instances[cfg.end]
        return stitched_forward(front, cfg.front_block, self.stitch_of(cfg), end, cfg.end_block, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            cfg_id = self.train_ids[int(torch.randint(len(self.train_ids), ()).item())]
        else:
            cfg_id = self.active
        return self.run(cfg_id, x)

    @contextlib.contextmanager
    def using(self, cfg_id: int) -> Iterator[LearngenePool]:
        """Evaluate config `cfg_id` inside the block."""
        before, self.active = self.active, self.config(cfg_id).id
        try:
            yield self
        finally:
            self.active = before

    def descendant_spec(self, cfg_id: int) -> dict[str, Any]:
        """What `build_descendant` needs: both sides' timm kwargs and how many blocks each keeps."""
        cfg = self.config(cfg_id)
        return {
            "front": self.instance_kwargs[cfg.front],
            "end": self.instance_kwargs[cfg.end],
            "front_blocks": cfg.front_block + 1,
            "end_blocks": self.depth - 1 - cfg.end_block,
        }

    def descendant(self, cfg_id: int) -> StitchedViT:
        """Config `cfg_id` as a standalone model holding copies of exactly the parts it runs."""
        cfg = self.config(cfg_id)
        model = StitchedViT(self.descendant_spec(cfg_id))
        front_state = self.instances[cfg.front].state_dict()
        model.front.load_state_dict({k: front_state[k] for k in model.front.state_dict()})
        end_state = self.instances[cfg.end].state_dict()
        model.end.load_state_dict(
            {k: end_state[_end_source(k, cfg.end_block)] for k in model.end.state_dict()}
        )
        model.stitch.load_state_dict(self.stitch_of(cfg).state_dict())
        return model


def _end_source(name: str, end_block: int) -> str:
    """The end instance's tensor for a descendant end tensor: block i of the descendant is block end_block+1+i."""
    if not name.startswith("blocks."):
        return name
    _, index, rest = name.split(".", 2)
    return f"blocks.{int(index) + end_block + 1}.{rest}"
