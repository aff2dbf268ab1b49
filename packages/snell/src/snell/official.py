"""Import a checkpoint of the official SNELL code (ssfgunner/SNELL) into a `SnellModel` on a timm ViT, Swin or
ConvNeXt.

Every official backbone has one tuning module per tuned linear, `attn.additional_{q,k,v,proj}.learnable` and
`mlp.additional_fc{1,2}.learnable`, holding `In_Qs` (heads, d_in, r/2) and `Out_Qs` (heads, d_out, r/2) factors
(`In_Qs_1`/`Out_Qs_1` when trained with sparsity 0) and the fixed head coefficients `shared_coeff_fc` (+0.1,
-0.1). Its update, `sum_h c_h cdist(In_Qs[h], Out_Qs[h])`, is a (d_in, d_out) matrix applied as `x @ W`, i.e.
our (d_out, d_in) update transposed: the factors map one to one. q, k and v become the three blocks of timm's
fused `qkv`. The sparsity (`init_thres`) is not stored in the checkpoint: the config must give it. Files are read
without running code (`learngene_core.checkpoint.read_state_dict`).

Base weights, by backbone (the spec names only the ViT's; the Swin and ConvNeXt names are read from the official
code's modules, which are timm's of 2021-22):
- ViT (`BlockSNELLParallel`): separate `attn.q`, `attn.k`, `attn.v` linears, fused here into `qkv`;
- Swin: the original Swin layout, fused `attn.qkv` with the q/k/v branches added to its three outputs, patch
  merging at the end of a stage (`layers.i.downsample`, timm now puts it at the start of stage i+1), `head` (timm:
  `head.fc`) and the `relative_position_index`/`attn_mask` buffers (dropped: timm rebuilds them);
- ConvNeXt: branches on `mlp.fc1`/`mlp.fc2` only; `stem.proj`/`stem.norm` and `stages.i.downsample.norm`/`.proj`
  (timm: `stem.0`/`stem.1`, `downsample.0`/`.1`); the blocks (`conv_dw`, `norm`, `mlp`, `gamma`) and `head.norm`,
  `head.fc` keep their names.
Other backbones are refused by name before anything is read: ConvNeXt with `conv_mlp=True` (its MLPs are 1x1
convolutions, which SNELL here does not tune) and Swin V2 (another attention: cosine scores, a continuous position
bias, q/v biases) have no layout we know of.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from timm.models.convnext import ConvNeXt
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.swin_transformer_v2_cr import SwinTransformerV2Cr
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from learngene_core.checkpoint import read_state_dict
from learngene_core.errors import CheckpointError

from .kernels import DISTANCE_COEFFICIENTS
from .layers import SnellLinear
from .model import SnellModel

BRANCH = re.compile(
    r"^(?P<block>.+)\.(?P<parent>attn|mlp)\.additional_(?P<target>q|k|v|proj|fc1|fc2)\.learnable\."
)
FACTOR_NAMES = {"sparse": ("In_Qs", "Out_Qs"), "dense": ("In_Qs_1", "Out_Qs_1")}
QKV = ("q", "k", "v")
# the official backbones' base-weight names -> the installed timm's (the official code copies timm of 2021-22)
SWIN_NAMES = (
    (re.compile(r"^layers\.(\d+)\.downsample\."), lambda m: f"layers.{int(m[1]) + 1}.downsample."),
    (re.compile(r"^head\."), "head.fc."),
)
SWIN_BUFFERS = ("relative_position_index", "attn_mask")  # stored by the original Swin, rebuilt by timm
CONVNEXT_NAMES = (
    (re.compile(r"^stem\.proj\."), "stem.0."),
    (re.compile(r"^stem\.norm\."), "stem.1."),
    (re.compile(r"\.downsample\.norm\."), ".downsample.0."),
    (re.compile(r"\.downsample\.proj\."), ".downsample.1."),
)


def check_official_backbone(model: nn.Module) -> None:
    """Refuse, by name, a timm model whose official SNELL layout we do not know (a CheckpointError)."""
    name = type(model).__name__
    if isinstance(model, ConvNeXt):
        if any(getattr(block, "use_conv_mlp", False) for block in model.modules()):
            raise CheckpointError(
                "official SNELL import: ConvNeXt with conv_mlp=True (1x1-conv MLPs) is not supported; the "
                "official ConvNeXt tunes linear mlp.fc1/fc2 (set model.kwargs.conv_mlp=false)"
            )
        return
    if isinstance(model, (SwinTransformerV2, SwinTransformerV2Cr)):
        raise CheckpointError(
            f"official SNELL import: Swin V2 ({name}) is not supported, only the original Swin "
            "(swin_*), ViT and ConvNeXt layouts"
        )
    if not isinstance(model, (VisionTransformer, SwinTransformer)):
        raise CheckpointError(
            f"official SNELL import: {name} is not supported, only timm ViT, Swin and ConvNeXt layouts"
        )


def convert_official_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict, bool]:
    """Split an official state dict into timm base weights and branch factors.

    Returns `(base, branches, sparse)`: `base` in timm ViT names (q/k/v fused into qkv), `branches` maps
    a timm linear name (`blocks.0.attn.qkv`, `blocks.0.mlp.fc1`, ...) to `{block_index: (In_Qs, Out_Qs)}`,
    and `sparse` tells whether the checkpoint was trained with sparsity > 0 (its factors are `In_Qs`).
    """
    base: dict[str, torch.Tensor] = {}
    branches: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    kinds = set()
    qkv_parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = BRANCH.match(key)
        if match:
            leaf = key[match.end() :]
            if leaf == "shared_coeff_fc":
                _check_coefficients(key, tensor)
                continue
            kind = next((k for k, names in FACTOR_NAMES.items() if leaf in names), None)
            if kind is None:
                raise CheckpointError(f"official SNELL checkpoint: unexpected tuning tensor {key}")
            kinds.add(kind)
            target = match["target"]
            linear = f"{match['block']}.{match['parent']}." + ("qkv" if target in QKV else target)
            index = QKV.index(target) if target in QKV else 0
            pair = branches.setdefault(linear, {}).get(index, (None, None))
            is_in = leaf == FACTOR_NAMES[kind][0]
            branches[linear][index] = (tensor, pair[1]) if is_in else (pair[0], tensor)
            continue
        fused = re.match(r"^(?P<attn>.+\.attn)\.(?P<part>q|k|v)\.(?P<leaf>weight|bias)$", key)
        if fused:
            qkv_parts.setdefault(f"{fused['attn']}.qkv.{fused['leaf']}", {})[fused["part"]] = tensor
            continue
        base[key] = tensor
    for name, parts in qkv_parts.items():
        if sorted(parts) != sorted(QKV):
            raise CheckpointError(f"official SNELL checkpoint: {name} lacks {sorted(set(QKV) - set(parts))}")
        base[name] = torch.cat([parts[p] for p in QKV])
    if len(kinds) > 1:
        raise CheckpointError("official SNELL checkpoint mixes In_Qs and In_Qs_1 factors (sparse and dense)")
    if not branches:
        raise CheckpointError("not an official SNELL checkpoint: no additional_*.learnable.In_Qs factors")
    return base, branches, kinds == {"sparse"}


def _check_coefficients(key: str, tensor: torch.Tensor) -> None:
    expected = torch.tensor(DISTANCE_COEFFICIENTS, dtype=tensor.dtype).view(-1, 1, 1)
    if tensor.shape != expected.shape or not torch.allclose(tensor, expected):
        raise CheckpointError(
            f"{key} = {tensor.flatten().tolist()}: only the reference's fixed head coefficients "
            f"{list(DISTANCE_COEFFICIENTS)} are supported"
        )


def load_official_state(model: SnellModel, state: dict[str, torch.Tensor], with_head: bool = True) -> dict:
    """Copy an official SNELL state dict into `model` (a SnellModel on the matching timm ViT).

    Every SNELL branch of `model` must be in the file and the other way round; base weights in the file replace
    the model's (a file with only the tuned tensors keeps the model's backbone). `with_head=False` keeps the
    model's classifier. Returns a summary (branches, base tensors loaded, sparse).
    """
    check_official_backbone(model.model)
    config = model.snell_config
    if config.kernel != "distance":
        raise CheckpointError(
            f"official SNELL checkpoints use the distance kernel, not snell.kernel={config.kernel}"
        )
    base, branches, sparse = convert_official_state(state)
    if sparse != (config.sparsity > 0):
        raise CheckpointError(
            f"the checkpoint was trained with {'sparsity > 0 (In_Qs)' if sparse else 'sparsity 0 (In_Qs_1)'} "
            f"but snell.sparsity={config.sparsity}; set snell.sparsity to the run's init_thres"
        )
    layers = dict(model.snell_layers())
    missing = sorted(set(layers) - set(branches))
    unexpected = sorted(set(branches) - set(layers))
    if missing or unexpected:
        raise CheckpointError(
            f"official checkpoint does not fit this {type(model.model).__name__}: branches missing for "
            f"{missing[:3]}, no layer for {unexpected[:3]}"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            _copy_branch(name, layer, branches[name])
    loaded = _load_base(model.model, timm_base_names(base, model.model), with_head)
    return {"branches": len(layers), "base_tensors": loaded, "sparse": sparse}


def _copy_branch(name: str, layer: SnellLinear, blocks: dict[int, tuple]) -> None:
    if sorted(blocks) != list(range(layer.blocks)):
        raise CheckpointError(
            f"official checkpoint: {name} has branches {sorted(blocks)}, expected {layer.blocks}"
        )
    for index, (in_f, out_f) in blocks.items():
        if in_f is None or out_f is None:
            raise CheckpointError(f"official checkpoint: {name} branch {index} lacks In_Qs or Out_Qs")
        own_in, own_out = layer.snell_in[index], layer.snell_out[index]
        if in_f.shape != own_in.shape or out_f.shape != own_out.shape:
            raise CheckpointError(
                f"official checkpoint: {name} factors {tuple(in_f.shape)}/{tuple(out_f.shape)} do not fit "
                f"{tuple(own_in.shape)}/{tuple(own_out.shape)} (snell.rank={layer.rank}: 2 heads of rank/2)"
            )
        own_in.copy_(in_f)
        own_out.copy_(out_f)


def timm_base_names(base: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The official backbone's base weights under the names of the installed timm `model` (Swin, ConvNeXt).

    Only names change: a tensor whose shape does not fit (another window or patch size) is refused when loaded,
    never resized."""
    if isinstance(model, SwinTransformer):
        base = {k: v for k, v in base.items() if not k.endswith(SWIN_BUFFERS)}
        rules = SWIN_NAMES
    elif isinstance(model, ConvNeXt):
        rules = CONVNEXT_NAMES
    else:
        return base
    renamed = {}
    for key, tensor in base.items():
        for pattern, name in rules:
            key = pattern.sub(name, key)
        renamed[key] = tensor
    return renamed


def _load_base(model: nn.Module, base: dict[str, torch.Tensor], with_head: bool) -> int:
    """Copy base weights (timm names; wrapped linears live under `.base_layer.`) into the model."""
    own = dict(model.state_dict())
    head = {f"{n}." for n, m in model.named_modules() if hasattr(model, "get_classifier")
            and m is model.get_classifier() and n}  # fmt: skip
    loaded = 0
    with torch.no_grad():
        for key, tensor in base.items():
            if not with_head and key.startswith(tuple(head)):
                continue
            target = key if key in own else _wrapped_name(key)
            if target not in own:
                raise CheckpointError(
                    f"official checkpoint: {key} has no counterpart in {type(model).__name__}"
                )
            if own[target].shape != tensor.shape:
                raise CheckpointError(
                    f"official checkpoint: {key} {tuple(tensor.shape)} does not fit {tuple(own[target].shape)}"
                )
            own[target].copy_(tensor)
            loaded += 1
    return loaded


def _wrapped_name(key: str) -> str:
    module, _, leaf = key.rpartition(".")
    return f"{module}.base_layer.{leaf}"


def import_official(model: SnellModel, path: str | Path, with_head: bool = True) -> dict:
    """Read an official SNELL `.pth` (without running code) and load it into `model`; see `load_official_state`."""
    return load_official_state(model, read_state_dict(path), with_head)
