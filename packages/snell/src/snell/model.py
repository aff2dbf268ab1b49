"""`get_snell_model`: wrap the target `nn.Linear`s of any timm model with SNELL branches and freeze the rest.

`SnellModel` is the peft-style wrapper: trainable-parameter report, adapter save/load (safetensors + JSON,
only the trained tensors), `merge_and_unload()` back to a plain timm model, and a `disable_adapters()` context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_core.checkpoint import load_weights, save_weights, write_dir_atomically
from learngene_core.config import read_json_file
from learngene_core.errors import CheckpointError, ConfigError

from .config import DEFAULT_TARGETS, SnellConfig
from .layers import SnellLinear

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _matches(name: str, targets: list[str] | tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, config: SnellConfig) -> list[str]:
    """Names of the `nn.Linear` modules to wrap; a ConfigError listing candidates when nothing matches."""
    classifier = _classifier_names(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]
    targets = config.target_modules or list(DEFAULT_TARGETS)
    found = [n for n in linears if _matches(n, targets) and n not in classifier]
    if not found:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linears})
        raise ConfigError(
            f"snell.target_modules {targets} matched no nn.Linear of {type(model).__name__}; "
            f"candidates: {', '.join(suffixes) or 'none (the model has no nn.Linear)'}"
        )
    return found


def _classifier_names(model: nn.Module) -> set[str]:
    """Module names of the classifier (timm's get_classifier), which is trained fully, never wrapped."""
    if not hasattr(model, "get_classifier"):
        return set()
    head = model.get_classifier()
    return {n for n, m in model.named_modules() if m is head or any(m is c for c in head.modules())}


class SnellModel(nn.Module):
    """A timm model whose target linears carry SNELL branches; everything but branches + `trainable` is frozen."""

    def __init__(self, model: nn.Module, config: SnellConfig) -> None:
        super().__init__()
        self.model = model
        self.snell_config = config
        targets = find_targets(model, config)
        for p in model.parameters():
            p.requires_grad_(False)
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            base = getattr(parent, child)
            fused = config.split_qkv and child == "qkv" and base.out_features == 3 * base.in_features
            setattr(
                parent,
                child,
                SnellLinear(
                    base,
                    config.rank,
                    config.sparsity,
                    config.kernel,
                    config.mask,
                    blocks=3 if fused else 1,
                    dropout=config.dropout if child != "proj" or config.proj_dropout else 0.0,
                    drop_path=config.drop_path,
                    checkpointing=config.checkpointing,
                ),
            )
        self.targets = targets
        for name, p in model.named_parameters():
            if _is_trainable_extra(name, config.trainable):
                p.requires_grad_(True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    # ------------------------------------------------------------------------------------------- reports

    def snell_layers(self) -> Iterator[tuple[str, SnellLinear]]:
        for name, module in self.model.named_modules():
            if isinstance(module, SnellLinear):
                yield name, module

    def parameter_counts(self) -> dict[str, int]:
        """Factor, other trainable, and total parameters (tied parameters once)."""
        factors = sum(m.snell_in.numel() + m.snell_out.numel() for _, m in self.snell_layers())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "factors": factors,
            "trainable": trainable,
            "total": sum(p.numel() for p in self.parameters()),
        }

    def print_trainable_parameters(self) -> None:
        c = self.parameter_counts()
        print(
            f"trainable params: {c['trainable']:,} (SNELL factors {c['factors']:,}) || all params: "
            f"{c['total']:,} || trainable%: {100 * c['trainable'] / c['total']:.4f}"
        )

    @contextmanager
    def disable_adapters(self) -> Iterator[None]:
        """Run the base model alone (branches off) inside the block."""
        layers = [m for _, m in self.snell_layers()]
        for m in layers:
            m.disabled = True
        try:
            yield
        finally:
            for m in layers:
                m.disabled = False

    # ------------------------------------------------------------------------------------- save and load

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changed: the factors and the `trainable` extras (head, cls token)."""
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_pretrained(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write `adapter_model.safetensors` + `adapter_config.json` (atomically); the base is not saved."""
        shapes = {n: list(t.shape) for n, t in self.adapter_state_dict().items()}
        info = {
            "snell": self.snell_config.to_dict(),
            "base_model_class": type(self.model).__name__,
            "shapes": shapes,
            **(metadata or {}),
        }

        def fill(tmp: Path) -> None:
            save_weights(self.adapter_state_dict(), tmp / ADAPTER_WEIGHTS)
            (tmp / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2))

        return write_dir_atomically(Path(directory), fill)

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | Path) -> SnellModel:
        """Wrap `model` with the adapter saved in `directory`; CheckpointError if it was made for another model."""
        directory = Path(directory)
        if not (directory / ADAPTER_CONFIG).is_file():
            raise CheckpointError(f"no {ADAPTER_CONFIG} in {directory}: not a SNELL adapter directory")
        info = read_json_file(directory / ADAPTER_CONFIG)
        if not isinstance(info.get("snell"), dict):
            raise CheckpointError(f"{directory / ADAPTER_CONFIG}: 'snell' is missing or not a mapping")
        snell = cls(model, SnellConfig.from_dict(info["snell"]))
        snell.load_adapter(directory)
        return snell

    def load_adapter(self, directory: str | Path) -> None:
        path = Path(directory) / ADAPTER_WEIGHTS
        state = load_weights(path)
        own = dict(self.model.named_parameters())
        problems = [k for k in state if k not in own] + [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and own[k].shape != v.shape
        ]
        missing = [n for n, p in own.items() if p.requires_grad and n not in state]
        if problems or missing:
            raise CheckpointError(
                f"adapter {path} does not fit this {type(self.model).__name__} (another backbone?): "
                f"{(problems + [f'missing {m}' for m in missing])[:3]}"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor)

    # ----------------------------------------------------------------------------------------------- merge

    def merge_and_unload(self) -> nn.Module:
        """Fold every sparse update into its frozen weight and return the plain timm model (zero overhead)."""
        for name, layer in list(self.snell_layers()):
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, layer.base_layer)
        return self.model


def _is_trainable_extra(name: str, trainable: list[str]) -> bool:
    parts = name.split(".")
    return any(re.fullmatch(t, part) for t in trainable for part in parts)


def get_snell_model(model: nn.Module, config: SnellConfig) -> SnellModel:
    """Wrap `model` (any timm model with nn.Linear attention/MLP layers) with SNELL branches."""
    return SnellModel(model, config)
