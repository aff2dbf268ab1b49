"""SN-Net's paired stitching over instances of equal depth: which configs exist and which stitch layer each uses.

A config (front, end, a, b) runs instance `front`'s embedding and blocks 0..a, a stitch layer, then instance `end`'s
blocks b+1..d-1, final norm and head (SN-Net's forward_until / forward_from). For one pair of depth-d instances the
configs are the (a, b) with |a - b| <= 1: sliding a window of two blocks over the depth gives 1 + 3(d-1) of them,
and the configs found in window i share stitch layer i, so a pair has d - 1 stitch layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations


@dataclass(frozen=True)
class StitchConfig:
    """One descendant: `front` blocks 0..front_block -> stitch layer `stitch` -> `end` blocks end_block+1.. + head.

    An instance alone has front == end, front_block == end_block == depth - 1 and no stitch layer.
    """

    id: int
    front: int
    end: int
    front_block: int
    end_block: int
    stitch: int | None

    @property
    def alone(self) -> bool:
        return self.stitch is None

    def as_dict(self) -> dict:
        return asdict(self)


def paired_positions(depth: int) -> list[tuple[int, int, int]]:
    """(front_block, end_block, stitch layer) of one pair of depth-`depth` instances, in SN-Net's order."""
    found: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    for window in range(depth - 1):
        ids = (window, window + 1)
        for a in ids:
            for b in ids:
                if (a, b) not in seen:
                    seen.add((a, b))
                    found.append((a, b, window))
    return found


def stitch_pairs(num_instances: int, nearest: bool = False) -> list[tuple[int, int]]:
    """Pairs (front, end) of instance indices (ordered by width, front narrower); `nearest`: neighbours only."""
    return [(i, j) for i, j in combinations(range(num_instances), 2) if not nearest or j == i + 1]


def stitch_configs(num_instances: int, depth: int, nearest: bool = False) -> list[StitchConfig]:
    """Every config: ids 0..n-1 are the instances alone, then each pair's 1 + 3(depth-1) stitches in order."""
    configs = [StitchConfig(i, i, i, depth - 1, depth - 1, None) for i in range(num_instances)]
    for front, end in stitch_pairs(num_instances, nearest):
        for a, b, stitch in paired_positions(depth):
            configs.append(StitchConfig(len(configs), front, end, a, b, stitch))
    return configs


def descendant_depth(cfg: StitchConfig, depth: int) -> int:
    """Number of blocks a config runs."""
    return cfg.front_block + 1 + (depth - 1 - cfg.end_block)
