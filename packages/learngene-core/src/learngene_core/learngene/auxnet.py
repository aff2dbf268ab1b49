"""The auxiliary network: a timm ViT or Hugging Face causal LM whose layers are generated from learngene tensors on every forward.

The template ViT supplies the inherited parts (patch/position embeddings, final norm, head) as ordinary
parameters; its own block parameters are frozen placeholders. `forward` swaps in the blocks a method
generates from the learngene (`torch.func.functional_call`), so gradients reach the learngene tensors only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .backbones import Backbone, backbone_of
from .methods import LearngeneMethod


def _key(name: str) -> str:  # ParameterDict keys may not contain dots
    return name.replace(".", "__")


class AuxNet(nn.Module):
    """A learngene-generated net: layer i's tensors are `method.layer_tensors(learngene, i, layout)`."""

    def __init__(
        self,
        template: nn.Module,
        method: LearngeneMethod,
        spec: dict[str, Any],
        tensors: dict[str, torch.Tensor] | None = None,
        backbone: Backbone | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone or backbone_of(template)
        self.template = self.backbone.check(template, "the aux net")
        self.method, self.spec = method, spec
        self.layout = method.aux_layout(spec)
        layers = self.backbone.layers(template)
        self.layers_path = self.backbone.layers_path(template)
        self.layer_names = self.backbone.layer_names(template)
        if len(self.layout) != len(layers):
            raise ValueError(f"aux layout has {len(self.layout)} layers, the template {len(layers)}")
        layers.requires_grad_(False)  # placeholders: the learngene generates these
        tensors = tensors if tensors is not None else method.init_tensors(layers[0], spec)
        self.learngene = nn.ParameterDict(
            {_key(k): nn.Parameter(v.detach().clone()) for k, v in tensors.items()}
        )

    def learngene_tensors(self) -> dict[str, torch.Tensor]:
        """The learngene tensors by their dotted names."""
        return {k.replace("__", "."): v for k, v in self.learngene.items()}

    def generated_state(self) -> dict[str, torch.Tensor]:
        """Every layer tensor of the aux net, as the method generates it from the learngene."""
        tensors = self.learngene_tensors()
        state = {}
        for i in range(len(self.layout)):
            layer = self.method.layer_tensors(tensors, i, self.layout, self.spec)
            state.update({f"{self.layers_path}.{i}.{n}": layer[n] for n in self.layer_names})
        return state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.template, self.generated_state(), args, kwargs, strict=False)
