"""SWS's learngene: one shared block per stage; every layer of a stage is a copy of that stage's block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from learngene_core.errors import ConfigError
from learngene_core.learngene.methods import LearngeneMethod, fresh_block_tensor


@dataclass
class SWSSpec:
    """SWS settings (the `method` section of an extraction config)."""

    stages: list[int] = field(
        default_factory=lambda: [3, 3, 4, 3, 3]
    )  # aux layers per stage (paper: 16 in 5)

    def __post_init__(self) -> None:
        if not self.stages or any(n < 1 for n in self.stages):
            raise ValueError(f"stages must list at least one stage, each with >= 1 layer; got {self.stages}")


class SWS(LearngeneMethod):
    """Stage-wise weight sharing (Xia et al., IJCAI 2024)."""

    name = "sws"
    formula_version = 1
    formula = "block i = the shared block of stage layout[i]; stages are the aux net's weight-sharing groups"
    spec_cls = SWSSpec

    def init_tensors(self, block: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Each stage's block initialised independently as timm initialises ViT blocks."""
        return {
            f"stage{stage}.{name}": fresh_block_tensor(name, param)
            for stage in range(len(spec["stages"]))
            for name, param in block.named_parameters()
        }

    def aux_layout(self, spec: dict[str, Any]) -> list[int]:
        return [stage for stage, count in enumerate(spec["stages"]) for _ in range(count)]

    def default_layout(self, depth: int, spec: dict[str, Any]) -> list[int]:
        """The reference's mapping rule: at the aux depth, the aux layout (the descendant is the aux net);
        otherwise with S stages, every stage gets depth // S layers and the first depth % S stages one more
        (12 layers of 5 stages: 0,0,0,1,1,1,2,2,3,3,4,4, the reference's 12-layer `layers_source`);
        below S layers, layer i takes stage i * S // depth (evenly spaced stages from the first).
        """
        aux = self.aux_layout(spec)
        if depth == len(aux):
            return aux
        stages = len(spec["stages"])
        if depth < stages:
            return [i * stages // depth for i in range(depth)]
        per_stage, extra = divmod(depth, stages)
        return [s for s in range(stages) for _ in range(per_stage + (s < extra))]

    def check_layout(self, layout: list[int], spec: dict[str, Any]) -> None:
        super().check_layout(layout, spec)
        count = len(spec["stages"])
        bad = [s for s in layout if not 0 <= s < count]
        if bad:
            raise ConfigError(
                f"stage {bad[0]} in the layout, but this SWS learngene has {count} stages (0..{count - 1})"
            )
        if any(b < a for a, b in zip(layout, layout[1:])):
            raise ConfigError(
                f"the layout {layout} must not go back to an earlier stage (stages are in depth order)"
            )

    def layer_tensors(
        self, tensors: dict[str, torch.Tensor], layer: int, layout: list[int], spec: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        prefix = f"stage{layout[layer]}."
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
