"""Import an adapter trained with the official LoRAMoE code (Ablustrund/LoRAMoE) into a `LoraMoEModel`.

The official code saves a peft-0.3-style adapter: `adapter_model.bin` (a torch pickle) with one module per
expert, `base_model.model.<name>.lora_A{i}.weight` (r x d_in) and `.lora_B{i}.weight` (d_out x r), and one
`base_model.model.<name>.lora_route.weight` (N x d_in) per wrapped linear `<name>`, plus `adapter_config.json`
(`r`, `lora_alpha`, `lora_nums`, `lora_dropout`, `target_modules`, `blc_alpha`, `blc_weight`). Its forward is
ours: `base(x) + sum_i softmax(route x)_i * B_i A_i dropout(x) * alpha / r`, so the experts stack into our
batched `lora_A` (N, r, d_in) / `lora_B` (N, d_out, r) and the router is `lora_router`. The pickle is read
without running code (`learngene_core.checkpoint.read_state_dict`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_core.checkpoint import read_state_dict
from learngene_core.errors import CheckpointError

from .config import LoraMoEConfig
from .model import LoraMoEModel

PREFIX = "base_model.model."
KEY = re.compile(r"^(?P<module>.+)\.(?:(?P<kind>lora_A|lora_B)(?P<expert>\d+)|lora_route)\.weight$")
WEIGHT_FILES = ("adapter_model.bin", "adapter_model.safetensors")
CONFIG_FILE = "adapter_config.json"


def official_files(source: str | Path) -> tuple[Path, Path | None]:
    """(weights file, adapter_config.json or None) of an official adapter directory or weights file."""
    source = Path(source)
    if source.is_dir():
        weights = next((source / f for f in WEIGHT_FILES if (source / f).is_file()), None)
        if weights is None:
            raise CheckpointError(
                f"{source} holds no {' or '.join(WEIGHT_FILES)}: not an official LoRAMoE adapter"
            )
        config = source / CONFIG_FILE
        return weights, config if config.is_file() else None
    if not source.is_file():
        raise CheckpointError(f"official LoRAMoE adapter not found: {source}")
    config = source.parent / CONFIG_FILE
    return source, config if config.is_file() else None


def convert_official_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Per wrapped module (its name in the base model): {"A": {i: (r, d_in)}, "B": {i: (d_out, r)}, "route"}."""
    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        match = KEY.match(name)
        if match is None:
            raise CheckpointError(f"not an official LoRAMoE adapter tensor: {key}")
        entry = modules.setdefault(match["module"], {"A": {}, "B": {}, "route": None})
        if match["kind"] is None:
            entry["route"] = tensor
        else:
            entry[match["kind"][-1]][int(match["expert"])] = tensor
    if not modules:
        raise CheckpointError("the official LoRAMoE adapter holds no lora_A/lora_B/lora_route tensors")
    for name, entry in modules.items():
        experts = range(len(entry["A"]))
        if (
            entry["route"] is None
            or sorted(entry["A"]) != list(experts)
            or sorted(entry["B"]) != list(experts)
        ):
            raise CheckpointError(
                f"official adapter: {name} needs lora_route and lora_A0..N-1 / lora_B0..N-1, found experts "
                f"A {sorted(entry['A'])}, B {sorted(entry['B'])}, route {'yes' if entry['route'] is not None else 'no'}"
            )
    return modules


def official_config(
    modules: dict[str, dict[str, Any]], settings: dict[str, Any], alpha: float | None = None
) -> LoraMoEConfig:
    """Our config for the official adapter: shapes from the tensors, alpha/dropout/balancing from its JSON."""
    first = next(iter(modules.values()))
    num_experts, rank = len(first["A"]), int(first["A"][0].shape[0])
    alpha = alpha if alpha is not None else settings.get("lora_alpha")
    if alpha is None:
        raise CheckpointError("the official adapter has no adapter_config.json with lora_alpha; pass --alpha")
    if settings.get("lora_nums") not in (None, num_experts) or settings.get("r") not in (None, rank):
        raise CheckpointError(
            f"official adapter_config.json says r={settings.get('r')}, lora_nums={settings.get('lora_nums')} "
            f"but the tensors have rank {rank} and {num_experts} experts"
        )
    return LoraMoEConfig(
        target_modules=sorted(modules),  # the exact wrapped linears (full names)
        num_experts=num_experts,
        rank=rank,
        alpha=float(alpha),
        dropout=float(settings.get("lora_dropout") or 0.0),
        blc_weight=float(settings.get("blc_weight") or 0.0),
        blc_alpha=float(settings.get("blc_alpha") or 0.0),
        expert_groups=None if num_experts % 2 == 0 else [list(range(num_experts))],
        task_type_groups=None if num_experts % 2 == 0 else [0, 0],
    )


def load_official_adapter(
    model: nn.Module, state: dict[str, torch.Tensor], settings: dict[str, Any] | None = None,
    alpha: float | None = None,
) -> LoraMoEModel:  # fmt: skip
    """Wrap the base causal LM `model` with the official adapter `state` (+ its adapter_config.json `settings`)."""
    modules = convert_official_state(state)
    config = official_config(modules, settings or {}, alpha)
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    absent = sorted(set(modules) - linears)
    if absent:
        raise CheckpointError(
            f"official adapter does not fit this {type(model).__name__}: no linear layer {absent[:3]}"
        )
    wrapped = LoraMoEModel(model, config)
    with torch.no_grad():
        for name, layer in wrapped.loramoe_layers():
            entry = modules[name]
            a = torch.stack([entry["A"][i] for i in range(config.num_experts)])
            b = torch.stack([entry["B"][i] for i in range(config.num_experts)])
            for what, tensor, own in (("lora_A", a, layer.lora_A), ("lora_B", b, layer.lora_B),
                                      ("lora_route", entry["route"], layer.lora_router.weight)):  # fmt: skip
                if tensor.shape != own.shape:
                    raise CheckpointError(
                        f"official adapter: {name}.{what} has shape {tuple(tensor.shape)}, this model needs "
                        f"{tuple(own.shape)} (another base model?)"
                    )
                own.copy_(tensor)
    return wrapped.train(False)


def import_official_adapter(model: nn.Module, source: str | Path, alpha: float | None = None) -> LoraMoEModel:
    """Read an official adapter (directory or weights file, without running code) onto the base `model`."""
    return load_official_adapter(model, *read_official_adapter(source), alpha)


def read_official_adapter(source: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the settings (adapter_config.json, if any) of an official adapter, read without running
    code: read them before loading a big base model, so that a bad file is refused at once."""
    weights, config_path = official_files(source)
    settings: dict[str, Any] = {}
    if config_path is not None:
        try:
            settings = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {config_path}: {exc}") from None
        if not isinstance(settings, dict):
            raise CheckpointError(f"{config_path} is not a JSON object")
    return read_state_dict(weights), settings
