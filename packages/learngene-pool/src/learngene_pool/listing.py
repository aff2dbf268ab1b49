"""Every descendant of a pool with its parameters and forward FLOPs (torch's own flop counter), sorted by size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from learngene_core.models import count_parameters

from .pool import LearngenePool
from .stitching import descendant_depth


@dataclass
class DescendantRow:
    id: int
    description: str
    depth: int
    parameters: int
    flops: int  # forward FLOPs of one image (a multiply-add counts 2)


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one input of `input_shape` (C, H, W), counted by torch.utils.flop_counter."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops()


def describe(pool: LearngenePool, cfg_id: int) -> str:
    cfg = pool.config(cfg_id)
    if cfg.alone:
        return f"instance {cfg.front} alone"
    end = (
        f"{cfg.end}[{cfg.end_block + 1}..{pool.depth - 1}]"
        if cfg.end_block + 1 < pool.depth
        else f"{cfg.end}[head]"
    )
    return f"{cfg.front}[0..{cfg.front_block}] -> stitch {cfg.stitch} -> {end}"


def list_descendants(pool: LearngenePool) -> list[DescendantRow]:
    """One row per config, smallest first (parameters, then FLOPs)."""
    kwargs = pool.instance_kwargs[0]
    shape = (kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])
    rows = []
    for cfg in pool.configs:
        model = pool.descendant(cfg.id)
        rows.append(
            DescendantRow(
                cfg.id, describe(pool, cfg.id), descendant_depth(cfg, pool.depth), count_parameters(model),
                forward_flops(model, shape),
            )
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r.parameters, r.flops, r.id))
