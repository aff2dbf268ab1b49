"""Neural graphs (spec A.4): neurons as nodes, every scalar parameter on one (edge, spatial slot).

`build_graph(model)` dispatches to the MLP/CNN, HF GPT-2, HF Llama-style or timm ViT builder;
`NeuralGraph.edge_features` / `params_from_edges` move values between the flat parameter vector
(`flatten_params` / `write_params`, the model's own layout) and edge features.
"""

from nino.graph.build import build_graph
from nino.graph.core import EDGE_TYPES, NeuralGraph, flatten_params, write_params
from nino.graph.lpe import laplacian_pe

__all__ = ["EDGE_TYPES", "NeuralGraph", "build_graph", "flatten_params", "laplacian_pe", "write_params"]
