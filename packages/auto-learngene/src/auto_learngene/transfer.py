"""Feature matching between ancestry layers m and pseudo-descendant layers n, weighted by a meta-network:
L_transfer = mean_x sum_{m,n} lambda_{m,n}(x) * || r_{m,n}(T_n(x)) - S_m(x) ||^2,  lambda = g_phi(S_m(x)) >= 0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from learngene_core.learngene.inherit import layer_modules
from learngene_core.models import model_output_logits


class LayerTap:
    """Forward hooks keeping the output of every learngene-candidate layer of a model (last forward only)."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: list[Tensor | None] = []
        modules = layer_modules(model)
        self.outputs = [None] * len(modules)
        for i, module in enumerate(modules):
            module.register_forward_hook(self._keep(i))

    def _keep(self, index: int):
        def hook(module, args, output):
            self.outputs[index] = output[0] if isinstance(output, tuple) else output

        return hook

    def take(self) -> list[Tensor]:
        outputs, self.outputs = self.outputs, [None] * len(self.outputs)
        return outputs  # type: ignore[return-value]


def pooled(feature: Tensor) -> Tensor:
    """(B, C) summary of a (B, C, H, W) conv map or (B, N, D) token sequence (mean over positions)."""
    return feature.mean((-2, -1)) if feature.ndim == 4 else feature.mean(1)


def rms_normalised(feature: Tensor) -> Tensor:
    dims = tuple(range(1, feature.ndim))
    return feature / feature.square().mean(dims, keepdim=True).add(1e-6).sqrt()


class Regressor(nn.Module):
    """r_{m,n}: descendant features of layer n mapped to the shape of ancestry layer m (1x1 conv or linear)."""

    def __init__(self, target: Tensor, source: Tensor) -> None:
        super().__init__()
        conv = target.ndim == 4
        self.size = tuple(source.shape[-2:]) if conv else None
        c_in, c_out = (target.shape[1], source.shape[1]) if conv else (target.shape[-1], source.shape[-1])
        self.proj = nn.Conv2d(c_in, c_out, 1) if conv else nn.Linear(c_in, c_out)

    def forward(self, feature: Tensor) -> Tensor:
        out = self.proj(feature)
        if self.size is not None and tuple(out.shape[-2:]) != self.size:
            out = F.adaptive_avg_pool2d(out, self.size)
        return out


def layer_pairs(num_source: int, num_target: int, max_distance: int | None) -> list[tuple[int, int]]:
    return [
        (m, n)
        for m in range(num_source)
        for n in range(num_target)
        if max_distance is None or abs(m - n) <= max_distance
    ]


class MetaWeights(nn.Module):
    """g_phi: per ancestry layer m, a linear map of its pooled features to lambda_{m,n} for every paired n."""

    def __init__(self, sources: list[Tensor], pairs: list[tuple[int, int]], activation: str) -> None:
        super().__init__()
        self.pairs = pairs
        self.targets = {m: [n for mm, n in pairs if mm == m] for m in range(len(sources))}
        self.heads = nn.ModuleList(
            nn.Linear(pooled(s).shape[1], max(len(self.targets[m]), 1)) for m, s in enumerate(sources)
        )
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)  # every pair starts at the same weight
        self.activation = F.softplus if activation == "softplus" else F.relu

    def forward(self, sources: list[Tensor]) -> dict[tuple[int, int], Tensor]:
        """lambda_{m,n}(x) per pair, each of shape (B,)."""
        weights = {}
        for m, head in enumerate(self.heads):
            if not self.targets[m]:
                continue
            values = self.activation(head(pooled(sources[m]).detach()))
            for j, n in enumerate(self.targets[m]):
                weights[(m, n)] = values[:, j]
        return weights


class Student(nn.Module):
    """The pseudo-descendant `net` plus its regressors; `forward(x, S, lambda)` also returns L_transfer."""

    def __init__(self, net: nn.Module, regressors: dict[str, Regressor], feature_norm: str) -> None:
        super().__init__()
        for module in net.modules():  # the meta-gradient differentiates twice; fused CPU attention cannot
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
        if hasattr(net, "set_attn_implementation"):  # Hugging Face LMs: eager attention for the same reason
            net.set_attn_implementation("eager")
        self.net = net
        self.regressors = nn.ModuleDict(regressors)
        self.tap = LayerTap(net)
        self.feature_norm = feature_norm

    def forward(self, x=None, sources: list[Tensor] | None = None, weights=None, input_ids=None):
        x = input_ids if x is None else x  # causal-LM tasks call model(input_ids=...)
        logits = model_output_logits(self.net(x))
        if sources is None:
            self.tap.take()
            return logits
        targets = self.tap.take()
        total = logits.new_zeros(())
        for (m, n), lam in weights.items():
            mapped, source = self.regressors[f"{m}_{n}"](targets[n]), sources[m]
            if self.feature_norm == "rms":
                mapped, source = rms_normalised(mapped), rms_normalised(source)
            error = (mapped - source).square().flatten(1).mean(1)
            total = total + (lam * error).mean()
        return logits, total
