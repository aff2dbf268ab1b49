"""TLEG's learngene: (theta_A, theta_B) per block tensor; block i of an L-layer net is theta_A + (i/L) theta_B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from learngene_core.errors import ConfigError
from learngene_core.learngene.methods import LearngeneMethod, fresh_block_tensor


@dataclass
class TLEGSpec:
    """TLEG settings (the `method` section of an extraction config)."""

    aux_depth: int = 12  # layers of the aux net (the paper's Aux-S/Aux-B have 12)

    def __post_init__(self) -> None:
        if self.aux_depth < 1:
            raise ValueError(f"aux_depth must be >= 1, got {self.aux_depth}")


class TLEG(LearngeneMethod):
    """Linear expansion of a learngene (Xia et al., AAAI 2024)."""

    name = "tleg"
    formula_version = 1
    formula = "block i (from 0) of an L-layer net = theta_A + (i / L) * theta_B"
    spec_cls = TLEGSpec

    def init_tensors(self, block: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The paper's init: A as a fresh timm block; B's matrices trunc_normal(0.02), its LN and biases 0."""
        tensors = {}
        for name, param in block.named_parameters():
            tensors[f"A.{name}"] = fresh_block_tensor(name, param)
            is_matrix = param.ndim == 2
            tensors[f"B.{name}"] = fresh_block_tensor(name, param) if is_matrix else torch.zeros_like(param)
        return tensors

    def aux_layout(self, spec: dict[str, Any]) -> list[int]:
        return list(range(spec["aux_depth"]))

    def default_layout(self, depth: int, spec: dict[str, Any]) -> list[int]:
        return list(range(depth))

    def check_layout(self, layout: list[int], spec: dict[str, Any]) -> None:
        super().check_layout(layout, spec)
        if layout != list(range(len(layout))):
            raise ConfigError(
                "a TLEG descendant uses every position 0..depth-1 in order; --layout does not apply"
            )

    def layer_tensors(
        self, tensors: dict[str, torch.Tensor], layer: int, layout: list[int], spec: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        coefficient = layout[layer] / len(layout)
        names = [k[2:] for k in tensors if k.startswith("A.")]
        return {n: tensors[f"A.{n}"] + coefficient * tensors[f"B.{n}"] for n in names}
