"""Neural graphs of sequential MLPs and CNNs (spec A.4.2): Linear, Conv1d/Conv2d, BatchNorm, LayerNorm, GroupNorm.

One pass over the parameters: a 2-D (type 1) or 3/4-D (type 3, one slot per kernel position) weight creates
the layer's output neurons with edges input -> output; a 1-D parameter becomes one auxiliary node with an edge
to each neuron of the current layer (type 4 for `...weight` (norm scale), 2 otherwise; before the first
weight: to the input neurons). Global pooling and
flatten need nothing; a layer whose input size differs from the previous layer's output (e.g. flatten of a
spatial map, a skip connection) is rejected.
"""

from __future__ import annotations

import torch
from torch import nn

from learngene_core.errors import ModelError
from nino.graph.core import GraphBuilder, NeuralGraph

__all__ = ["SUPPORTED_MODULES", "build_mlp_cnn", "check_mlp_cnn_modules"]

SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
)


def check_mlp_cnn_modules(model: nn.Module) -> None:
    """Raise ModelError naming the first module holding parameters that an MLP/CNN graph cannot express."""
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, SUPPORTED_MODULES):
            raise ModelError(
                f"unsupported module {name or '<root>'!r} ({type(module).__name__}) for an MLP/CNN graph; "
                f"supported: {', '.join(m.__name__ for m in SUPPORTED_MODULES)}, HF GPT-2, HF Llama, timm ViT"
            )
        if isinstance(module, nn.Conv1d | nn.Conv2d) and module.groups != 1:
            raise ModelError(f"grouped convolution {name!r} (groups={module.groups}) is not supported")


def build_mlp_cnn(names: list[str], shapes: list[torch.Size]) -> NeuralGraph:
    """Graph of a sequential MLP/CNN from its ordered parameter names and shapes."""
    b = GraphBuilder(names, shapes)
    current: torch.Tensor | None = None
    for name, shape in zip(b.names, b.shapes, strict=True):
        if len(shape) == 1:
            if current is None:  # e.g. a LayerNorm on the inputs: attach it to the input neurons
                current = b.nodes(shape[0])
            b.aux_param(name, current)
        elif len(shape) in (2, 3, 4):
            n_out, n_in = shape[0], shape[1]
            if current is None:
                current = b.nodes(n_in)
            elif n_in != current.numel():
                raise ModelError(
                    f"parameter {name} expects {n_in} inputs but the previous layer has {current.numel()} "
                    "outputs; only sequential MLP/CNN chains are supported"
                )
            outputs = b.nodes(n_out)
            idx = b.index(name)
            if len(shape) == 2:
                b.dense(current, outputs, idx.t(), 1)
            else:
                b.dense(current, outputs, idx.transpose(0, 1).reshape(n_in, n_out, -1), 3)
            current = outputs
        else:
            raise ModelError(f"parameter {name} has unsupported shape {tuple(shape)}")
    return b.finish("mlp_cnn")
