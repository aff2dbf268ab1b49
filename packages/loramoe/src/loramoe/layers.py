"""`LoraMoELayer`: a frozen linear plus N LoRA experts mixed by a router, computed with two batched matmuls.

    y = base(x) + (alpha / r) * sum_i g_i(x) * B_i A_i dropout(x),    g = softmax(W_r x)  (or top-k softmax)

All experts' A matrices are stacked into one (N*r, d_in) matrix and all B matrices into one (d_out, N*r)
matrix, so the layer costs one rank-N*r LoRA plus the router: `u = A x` (N*r values per token), scaled per
expert by its gate, then `B u`. No Python loop over experts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.errors import ModelError


def layer_features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a transformers Conv1D (GPT-2; weight is (in, out))."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    if type(base).__name__ == "Conv1D" and hasattr(base, "nf"):
        return int(base.weight.shape[0]), int(base.nf)
    raise ModelError(f"LoRAMoE wraps nn.Linear and transformers Conv1D layers; got {type(base).__name__}")


class LoraMoELayer(nn.Module):
    """A frozen `base_layer` with `num_experts` LoRA experts of rank `rank` and a softmax router."""

    def __init__(
        self,
        base_layer: nn.Module,
        num_experts: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        router: str = "dense",
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = layer_features(base_layer)
        if router not in ("dense", "topk"):
            raise ModelError(f"router must be 'dense' or 'topk', got '{router}'")
        self.base_layer = base_layer
        self.num_experts, self.rank = num_experts, rank
        self.scaling = alpha / rank
        self.router_type = router
        self.top_k = num_experts if top_k is None else top_k
        weight = base_layer.weight
        dtype = weight.dtype if weight.dtype == torch.float64 else torch.float32  # adapters train in fp32+
        kwargs = {"device": weight.device, "dtype": dtype}
        self.lora_A = nn.Parameter(torch.empty(num_experts, rank, self.in_features, **kwargs))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, self.out_features, rank, **kwargs))
        self.lora_router = nn.Linear(self.in_features, num_experts, bias=False, **kwargs)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_adapter()
        self.adapter_enabled = True
        self.capture = False  # keep the last forward's router weights (for the balancing loss)
        self.last_gates: torch.Tensor | None = None

    def reset_adapter(self) -> None:
        """Fresh init: A_i and the router kaiming-uniform (as nn.Linear), B_i = 0 (so the layer equals base)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.lora_A.view(-1, self.in_features), a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)
            nn.init.kaiming_uniform_(self.lora_router.weight, a=math.sqrt(5))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Router weights (float32, summing to 1 over the last dim): dense softmax or softmax over the top k."""
        logits = self.lora_router(x).float()
        if self.router_type == "topk" and self.top_k < self.num_experts:
            kept = logits.topk(self.top_k, dim=-1).indices
            mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, kept, True)
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if not self.adapter_enabled:
            return result
        n, r = self.num_experts, self.rank
        x = x.to(self.lora_A.dtype)
        gates = self.gates(x)
        if self.capture:
            self.last_gates = gates
        u = F.linear(self.lora_dropout(x), self.lora_A.view(n * r, self.in_features))  # (..., N*r)
        weights = (gates * self.scaling).to(u.dtype).unsqueeze(-1)  # (..., N, 1)
        u = (u.unflatten(-1, (n, r)) * weights).flatten(-2)
        b = self.lora_B.permute(1, 0, 2).reshape(self.out_features, n * r)
        return result + F.linear(u, b).to(result.dtype)

    def extra_repr(self) -> str:
        router = "dense" if self.router_type == "dense" else f"top-{self.top_k}"
        return f"experts={self.num_experts}, rank={self.rank}, scaling={self.scaling:g}, router={router}"
