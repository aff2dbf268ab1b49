"""`AdapterPool`: one frozen timm ViT carrying named peft LoRA adapters (selector, experts, baselines).

Every adapter shares the frozen backbone; `features(x, name)` runs the backbone with one adapter active, and
`mixed_features(x, names)` runs a batch whose samples each name their own adapter (peft's mixed-adapter batch:
the base weights are applied once to the whole batch, each adapter's low-rank branch to its own samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import Tensor, nn

from learngene_core.errors import ModelError

from .config import LoraSettings


def lora_config(settings: LoraSettings, depth: int) -> LoraConfig:
    """peft LoraConfig for the attention projections of the first `settings.depth` of `depth` blocks."""
    blocks = range(min(settings.depth or depth, depth))
    targets = [f"blocks.{b}.attn.{name}" for b in blocks for name in settings.target_modules]
    return LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets
    )


class AdapterPool(nn.Module):
    """A frozen feature extractor (timm ViT with num_classes=0) and its LoRA adapters by name."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        if not hasattr(backbone, "blocks") or not hasattr(backbone.blocks[0], "attn"):
            raise ModelError(
                f"L2C needs a timm ViT-style backbone with blocks[i].attn, got {type(backbone).__name__}"
            )
        backbone.requires_grad_(False)
        self.depth = len(backbone.blocks)
        self.feature_dim: int = backbone.num_features
        self._backbone = backbone
        self.peft: PeftModel | None = None
        self.trainable: str | None = None

    @property
    def adapters(self) -> list[str]:
        return [] if self.peft is None else list(self.peft.peft_config)

    def add(self, name: str, settings: LoraSettings, init_from: str | None = None, seed: int = 0) -> None:
        """Add adapter `name` (A random, B zero: starts as the backbone), or a copy of adapter `init_from`.

        A is drawn from an RNG seeded by `seed` (the global RNG is left as it was), so an adapter's start does not
        depend on what ran before it: a resumed stage re-creates it exactly."""
        config = lora_config(settings, self.depth)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if self.peft is None:
                    self.peft = get_peft_model(self._backbone, config, adapter_name=name)
                else:
                    self.peft.add_adapter(name, config)
        except ValueError as exc:
            raise ModelError(f"cannot add LoRA adapter '{name}': {exc}") from None
        if init_from is not None:
            self.load_adapter(name, self.adapter_state(init_from))
        self.activate(None)

    def activate(self, name: str | None) -> None:
        """Make `name` the only trainable adapter (None: every adapter frozen)."""
        self.trainable = name
        if name is not None:
            self._switch(name)
        else:
            for param in self.lora_parameters():
                param.requires_grad = False

    def _switch(self, name: str) -> None:
        assert self.peft is not None
        if name not in self.peft.peft_config:
            raise ModelError(f"no adapter '{name}' in the pool (adapters: {', '.join(self.adapters)})")
        self.peft.base_model.set_adapter(name, inference_mode=name != self.trainable)

    def features(self, x: Tensor, name: str) -> Tensor:
        """Pooled backbone features (B, D) with adapter `name` applied."""
        assert self.peft is not None
        if self.peft.base_model.active_adapter != name:
            self._switch(name)
        return self.peft(x)

    def mixed_features(self, x: Tensor, names: Sequence[str]) -> Tensor:
        """Pooled features (B, D) where sample i goes through adapter names[i], in one batched pass."""
        assert self.peft is not None
        return self.peft(x, adapter_names=list(names))

    def lora_parameters(self) -> list[nn.Parameter]:
        assert self.peft is not None
        return [p for n, p in self.peft.named_parameters() if ".lora_" in n]

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        assert self.peft is not None
        return [p for n, p in self.peft.named_parameters() if f".{name}." in n]

    def adapter_state(self, name: str) -> dict[str, Tensor]:
        """The LoRA tensors of adapter `name`, keyed without the adapter name (portable between names)."""
        assert self.peft is not None
        marker = f".{name}."
        return {
            n.replace(marker, ".<adapter>."): p.detach().clone()
            for n, p in self.peft.named_parameters()
            if marker in n
        }

    @torch.no_grad()
    def load_adapter(self, name: str, state: dict[str, Tensor]) -> None:
        """Copy `state` (from `adapter_state`) into adapter `name`; every tensor must match."""
        assert self.peft is not None
        marker = f".{name}."
        own = {n.replace(marker, ".<adapter>."): p for n, p in self.peft.named_parameters() if marker in n}
        if set(own) != set(state):
            missing = sorted(set(own) ^ set(state))
            raise ModelError(
                f"adapter '{name}': saved LoRA tensors do not match the model (e.g. {missing[0]})"
            )
        for key, param in own.items():
            if param.shape != state[key].shape:
                raise ModelError(
                    f"adapter '{name}': {key} has shape {tuple(state[key].shape)}, model {tuple(param.shape)}"
                )
            param.copy_(state[key])

    def count(self, name: str) -> int:
        """Number of LoRA parameters of adapter `name`."""
        return sum(p.numel() for p in self.adapter_parameters(name))
