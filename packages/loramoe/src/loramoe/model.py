"""`get_loramoe_model`: wrap the FFN linears of any Hugging Face causal LM with LoRA experts (no patching).

peft's custom-tuner registry (`register_peft_method`) only accepts names already in its `PeftType` enum, so
LoRAMoE cannot be registered without editing peft; `LoraMoEModel` is our own wrapper with peft's feel
(`print_trainable_parameters`, `disable_adapter()`, `save_pretrained`, `from_pretrained`, `unload`).

Its `forward` accepts `task_types=` (popped before the HF model is called, so transformers is never patched),
adds the localised balancing loss to `outputs.loss` when labels are given, and exposes it as
`outputs.blc_loss` (and the plain LM loss as `outputs.lm_loss`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_core.checkpoint import load_weights, save_weights, write_dir_atomically
from learngene_core.errors import CheckpointError, ModelError

from .config import CONFIG_NAME, LoraMoEConfig
from .layers import LoraMoELayer
from .loss import localized_balancing_loss

WEIGHTS_NAME = "adapter_model.safetensors"

# The FFN projections of common decoder families, tried in order when target_modules is None.
DEFAULT_TARGETS: list[list[str] | str] = [
    ["gate_proj", "up_proj", "down_proj"],  # Llama, Mistral, Qwen2, Gemma, Phi-3 (gate_up_proj is fused)
    r".*\.mlp\.(c_fc|c_proj)",  # GPT-2 (Conv1D; attn.c_proj is left alone)
    ["fc1", "fc2"],  # OPT, Phi
    ["dense_h_to_4h", "dense_4h_to_h"],  # GPT-NeoX, Falcon
]


def _matches(name: str, targets: list[str] | str) -> bool:
    """peft's rule: a string is a regex matched against the full name; a list matches name suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _wrappable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def find_targets(model: nn.Module, targets: list[str] | str | None) -> list[str]:
    """Names of the linears to wrap; ModelError listing the candidates when nothing matches."""
    linears = [n for n, m in model.named_modules() if _wrappable(m) and n]
    options = DEFAULT_TARGETS if targets is None else [targets]
    for option in options:
        found = [n for n in linears if _matches(n, option)]
        if found:
            return found
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in linears})
    wanted = "the default FFN projections" if targets is None else f"target_modules={targets!r}"
    raise ModelError(
        f"{wanted} matched no linear layer of {type(model).__name__}; candidates: {', '.join(suffixes)}"
    )


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


class LoraMoEModel(nn.Module):
    """A causal LM whose target linears are `LoraMoELayer`s; everything else is frozen."""

    def __init__(self, model: nn.Module, config: LoraMoEConfig) -> None:
        super().__init__()
        self.model = model
        self.loramoe_config = config
        for param in model.parameters():
            param.requires_grad_(False)
        self.target_names = find_targets(model, config.target_modules)
        for name in self.target_names:
            layer = LoraMoELayer(
                model.get_submodule(name),
                config.num_experts,
                config.rank,
                config.alpha,
                config.dropout,
                router=config.router,
                top_k=config.top_k,
            )
            _set_submodule(model, name, layer)

    # ------------------------------------------------------------------------------------------ access

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def loramoe_layers(self) -> Iterator[tuple[str, LoraMoELayer]]:
        """(name in the base model, layer) of every wrapped linear."""
        for name, module in self.model.named_modules():
            if isinstance(module, LoraMoELayer):
                yield name, module

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The experts and routers only, keyed by their name in the base model."""
        return {
            f"{name}.{key}": tensor
            for name, layer in self.loramoe_layers()
            for key, tensor in layer.state_dict().items()
            if not key.startswith("base_layer.")
        }

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The base model's own state dict (wrapped layers' weights under their original names)."""
        out = {}
        for key, tensor in self.model.state_dict().items():
            if ".lora_" in key:
                continue
            out[key.replace(".base_layer.", ".")] = tensor
        return out

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable parameters, all parameters)."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,} || all params: {total:,} || "
            f"trainable%: {100 * trainable / max(total, 1):.4f}"
        )

    # ------------------------------------------------------------------------------------------ forward

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[torch.Tensor]]:
        """Record each wrapped layer's router weights during the block (yields the list, filled on exit)."""
        layers = [layer for _, layer in self.loramoe_layers()]
        captured: list[torch.Tensor] = []
        for layer in layers:
            layer.capture, layer.last_gates = True, None
        try:
            yield captured
        finally:
            for layer in layers:
                if layer.last_gates is not None:
                    captured.append(layer.last_gates)
                layer.capture, layer.last_gates = False, None

    def forward(self, *args: Any, task_types: torch.Tensor | None = None, **kwargs: Any) -> Any:
        cfg = self.loramoe_config
        wanted = task_types is not None and cfg.blc_weight != 0 and self.adapters_enabled
        if not wanted:
            outputs = self.model(*args, **kwargs)
            blc = None
        else:
            with self.capturing() as gates:
                outputs = self.model(*args, **kwargs)
            mask = kwargs.get("attention_mask") if cfg.mask_padding else None
            blc = cfg.blc_weight * sum(
                localized_balancing_loss(g, task_types, cfg.groups(), cfg.task_groups(), cfg.blc_alpha, mask)
                for g in gates
            )
        if blc is None:
            blc = outputs.logits.new_zeros((), dtype=torch.float32)
        if getattr(outputs, "loss", None) is not None:
            outputs["lm_loss"] = outputs.loss
            outputs["loss"] = outputs.loss + blc
        outputs["blc_loss"] = blc
        return outputs

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's `generate` (task types only matter for the training loss; none are captured)."""
        kwargs.pop("task_types", None)
        return self.model.generate(*args, **kwargs)

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def adapters_enabled(self) -> bool:
        return all(layer.adapter_enabled for _, layer in self.loramoe_layers())

    def set_adapters_enabled(self, enabled: bool) -> None:
        for _, layer in self.loramoe_layers():
            layer.adapter_enabled = enabled

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside the block the model computes exactly the base model's outputs."""
        before = self.adapters_enabled
        self.set_adapters_enabled(False)
        try:
            yield
        finally:
            self.set_adapters_enabled(before)

    def unload(self) -> nn.Module:
        """Put the original linears back and return the base model (the experts are dropped)."""
        for name, layer in list(self.loramoe_layers()):
            _set_submodule(self.model, name, layer.base_layer)
        return self.model

    # ------------------------------------------------------------------------------------------ files

    def save_pretrained(self, directory: str | Path, **metadata: Any) -> Path:
        """Write `adapter_model.safetensors` (experts and routers only) and `adapter_config.json`, atomically."""
        config = self.loramoe_config
        extra = {**config.extra, **metadata}
        base = getattr(getattr(self.model, "config", None), "_name_or_path", "")
        extra.setdefault("base_model_name_or_path", str(base or ""))
        extra["target_names"] = list(self.target_names)

        def fill(tmp: Path) -> None:
            save_weights(self.adapter_state_dict(), tmp / WEIGHTS_NAME)
            saved = LoraMoEConfig.from_dict({**config.to_dict(), "extra": extra})
            saved.save(tmp)

        return write_dir_atomically(Path(directory), fill)

    @classmethod
    def from_pretrained(
        cls, model: nn.Module, directory: str | Path, is_trainable: bool = False
    ) -> LoraMoEModel:
        """Wrap a fresh base `model` with the adapter saved in `directory` (eval mode unless `is_trainable`)."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(f"no {CONFIG_NAME} in {directory}: not a loramoe adapter directory")
        config = LoraMoEConfig.load(directory)
        wrapped = cls(model, config)
        state = load_weights(directory / WEIGHTS_NAME)
        own = wrapped.adapter_state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(
                f"adapter in {directory} does not fit this model: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}, shape mismatch {shapes[:3]}"
            )
        with torch.no_grad():
            for key, tensor in own.items():
                tensor.copy_(state[key])
        for name, param in wrapped.named_parameters():
            param.requires_grad_(is_trainable and ".lora_" in name)
        return wrapped.train(False) if not is_trainable else wrapped


def get_loramoe_model(model: nn.Module, config: LoraMoEConfig | None = None) -> LoraMoEModel:
    """Wrap `model` (any AutoModelForCausalLM) with LoRAMoE experts in `config.target_modules`."""
    return LoraMoEModel(model, config or LoraMoEConfig())


def read_adapter_info(directory: str | Path) -> dict[str, Any]:
    """The `extra` section of an adapter's config (base model path, tokenizer, ...) without loading weights."""
    return dict(LoraMoEConfig.load(directory).extra)
