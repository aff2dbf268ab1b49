"""What makes a learngene method itself: which tensors it stores and how they become the blocks of a net.

A method holds no state; the learngene tensors live in a dict keyed `<group>.<block tensor name>`, e.g.
`A.attn.qkv.weight` (TLEG) or `stage2.mlp.fc1.weight` (SWS). The shared machinery (aux net, extraction,
expansion, artifacts) only calls these four methods, so a new learngene method is one small class.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..config import from_dict
from ..errors import ConfigError


def fresh_block_tensor(name: str, param: torch.Tensor) -> torch.Tensor:
    """A new tensor initialised as timm initialises a ViT block: matrices trunc_normal(0.02), norm weights 1, else 0.

    Norm weights are recognised by name (`norm1.weight`, `input_layernorm.weight`, GPT-2 `ln_1.weight`); any 2-D
    tensor is a matrix (GPT-2's Conv1D weights included).
    """
    if param.ndim == 2:
        return nn.init.trunc_normal_(torch.empty_like(param), std=0.02).detach()
    if ("norm" in name or "ln_" in name) and name.endswith("weight"):
        return torch.ones_like(param).detach()
    return torch.zeros_like(param).detach()


class LearngeneMethod:
    """Base class of a learngene method (TLEG, SWS, ...)."""

    name = "learngene"
    formula_version = 1
    formula = ""  # the expansion rule in words, stored in every manifest
    spec_cls: type = object  # a dataclass of the method's settings (the `method` section of a config)

    def parse_spec(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validated method settings (the `method` section of a config) as plain data for the manifest."""
        return asdict(from_dict(self.spec_cls, data, source="config", prefix="method."))

    def init_tensors(self, block: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Fresh learngene tensors for blocks shaped like `block` (a freshly initialised layer of the backbone)."""
        raise NotImplementedError

    def aux_layout(self, spec: dict[str, Any]) -> list[int]:
        """The aux net's per-layer layout (what `layer_tensors` needs to generate each of its layers)."""
        raise NotImplementedError

    def default_layout(self, depth: int, spec: dict[str, Any]) -> list[int]:
        """The layout of a descendant of `depth` layers when the user gives none."""
        raise NotImplementedError

    def check_layout(self, layout: list[int], spec: dict[str, Any]) -> None:
        """Raise ConfigError for a layout this learngene cannot expand."""
        if not layout:
            raise ConfigError("a descendant needs at least one layer (depth >= 1)")

    def layer_tensors(
        self, tensors: dict[str, torch.Tensor], layer: int, layout: list[int], spec: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The tensors of layer `layer` of a net with this layout, keyed as in one layer's state_dict."""
        raise NotImplementedError
