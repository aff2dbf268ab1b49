"""TLEG's learngene: (theta_A, theta_B) per block tensor; block i of an L-layer net is theta_A + (i/L) theta_B."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from learngene_core.config import from_dict
from learngene_core.errors import ConfigError
from learngene_core.learngene import LearngeneMethod


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

    def parse_spec(self, data: dict[str, Any]) -> dict[str, Any]:
        return asdict(from_dict(TLEGSpec, data, source="config", prefix="method."))

    def init_tensors(self, block: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Linear weights A, B ~ trunc_normal(0.02), biases 0; LayerNorm gamma_A = 1, the rest 0 (the paper's init)."""
        tensors = {}
        for name, param in block.named_parameters():
            is_norm = name.startswith(("norm1", "norm2"))
            if param.ndim == 2:
                a, b = (nn.init.trunc_normal_(torch.empty_like(param), std=0.02) for _ in range(2))
            elif is_norm and name.endswith("weight"):
                a, b = torch.ones_like(param), torch.zeros_like(param)
            else:
                a, b = torch.zeros_like(param), torch.zeros_like(param)
            tensors[f"A.{name}"], tensors[f"B.{name}"] = a.detach(), b.detach()
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
