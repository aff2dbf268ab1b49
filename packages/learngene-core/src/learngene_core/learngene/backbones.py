"""Backbones a learngene can live in: what the layer list is called, which tensors are per-layer, inherited
or task-specific, what fixes the shapes (the manifest's `arch`) and how to build a model of any depth.

Two backbones: `timm-vit` (a timm VisionTransformer with average pooling and no class token, the TLEG/SWS
setting) and `hf-causal-lm` (a Hugging Face decoder LM: Llama-style `model.layers` or GPT-2 `transformer.h`).
The learngene generates the layers; everything else is inherited (ViT: patch/position embeddings, fc_norm;
LM: token/position embeddings, final norm and the vocabulary-bound LM head) or task-specific (the ViT head).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .anatomy import BLOCK_TENSORS, HEAD_TENSORS, INHERITED_TENSORS, VIT_NAME, check_learngene_vit, vit_arch

TIMM_VIT = "timm-vit"
HF_CAUSAL_LM = "hf-causal-lm"
HF_LAYER_PATHS = ("model.layers", "transformer.h")  # Llama-style, GPT-2
HF_DROPPED_CONFIG_KEYS = ("transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype")
# timm VisionTransformer arguments that regularise training without changing any tensor's shape
VIT_REGULARISATION_KEYS = ("drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate")


def _get(model: nn.Module, path: str) -> Any:
    for part in path.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


class Backbone:
    """How the shared machinery sees one family of models."""

    name = ""

    def check(self, model: nn.Module, what: str) -> nn.Module:
        """The model if it is of this backbone, else a ModelError saying why not."""
        raise NotImplementedError

    def layers_path(self, model: nn.Module) -> str:
        """The dotted path of the layer list (state_dict keys are `<path>.<i>.<layer tensor>`)."""
        raise NotImplementedError

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return _get(model, self.layers_path(model))

    def layer_names(self, model: nn.Module) -> tuple[str, ...]:
        """Names of one layer's tensors (from layer 0)."""
        return tuple(self.layers(model)[0].state_dict())

    def inherited_names(self, model: nn.Module) -> tuple[str, ...]:
        """Tensors outside the layers that a descendant inherits."""
        raise NotImplementedError

    def head_names(self, model: nn.Module) -> tuple[str, ...]:
        """Task-specific tensors (fresh in a descendant unless asked to copy)."""
        raise NotImplementedError

    def arch(self, model: nn.Module) -> dict[str, Any]:
        """Everything but the depth that a model must share with the learngene (the manifest's `arch`)."""
        raise NotImplementedError

    def create(self, arch: dict[str, Any], depth: int, **kwargs: Any) -> nn.Module:
        """A freshly initialised model of the learngene's architecture with `depth` layers (`kwargs`: shape-free
        settings such as dropout rates, overriding `arch`)."""
        raise NotImplementedError

    def regularisation_keys(self, arch: dict[str, Any]) -> tuple[str, ...]:
        """Config keys that regularise training without changing any tensor's shape (dropout, drop path)."""
        raise NotImplementedError


class TimmViT(Backbone):
    name = TIMM_VIT

    def check(self, model, what):
        return check_learngene_vit(model, what)

    def layers_path(self, model):
        return "blocks"

    def layer_names(self, model):
        return BLOCK_TENSORS

    def inherited_names(self, model):
        return INHERITED_TENSORS

    def head_names(self, model):
        return HEAD_TENSORS

    def arch(self, model):
        return vit_arch(model)

    def create(self, arch, depth, **kwargs):
        import timm

        return timm.create_model(VIT_NAME, pretrained=False, **{**arch, **kwargs, "depth": depth})

    def regularisation_keys(self, arch):
        return VIT_REGULARISATION_KEYS


class HFCausalLM(Backbone):
    name = HF_CAUSAL_LM

    def check(self, model, what):
        if getattr(model, "config", None) is None or not any(
            isinstance(_get(model, p), nn.ModuleList) for p in HF_LAYER_PATHS
        ):
            raise ModelError(
                f"{what} must be a Hugging Face causal LM with a `model.layers` (Llama-style) or "
                f"`transformer.h` (GPT-2) layer list, got {type(model).__name__}"
            )
        return model

    def layers_path(self, model):
        return next(p for p in HF_LAYER_PATHS if isinstance(_get(model, p), nn.ModuleList))

    def inherited_names(self, model):
        """Embeddings, final norm and the LM head: all bound to the vocabulary and width, so copied as they are."""
        prefix = self.layers_path(model) + "."
        return tuple(k for k in model.state_dict() if not k.startswith(prefix))

    def head_names(self, model):
        return ()

    @staticmethod
    def depth_key(config: Any) -> str:
        return config.attribute_map.get("num_hidden_layers", "num_hidden_layers")

    def arch(self, model):
        config = model.config
        arch = {k: v for k, v in config.to_diff_dict().items() if k not in HF_DROPPED_CONFIG_KEYS}
        arch.pop(self.depth_key(config), None)
        arch["model_type"] = config.model_type
        return arch

    def create(self, arch, depth, **kwargs):
        from transformers import AutoConfig, AutoModelForCausalLM

        fields = {k: v for k, v in {**arch, **kwargs}.items() if k != "model_type"}
        config = AutoConfig.for_model(arch["model_type"], **fields)
        setattr(config, self.depth_key(config), depth)
        return AutoModelForCausalLM.from_config(config)

    def regularisation_keys(self, arch):
        """The config's dropout-like fields: GPT-2's resid_pdrop/embd_pdrop/attn_pdrop, Llama's attention_dropout."""
        from transformers import AutoConfig

        defaults = AutoConfig.for_model(arch["model_type"]).to_dict()
        return tuple(k for k in defaults if "drop" in k)


BACKBONES: dict[str, Backbone] = {TIMM_VIT: TimmViT(), HF_CAUSAL_LM: HFCausalLM()}


def backbone_named(name: str | None) -> Backbone:
    """The backbone of a manifest's `backbone` entry (absent in old manifests: timm-vit)."""
    try:
        return BACKBONES[name or TIMM_VIT]
    except KeyError:
        raise ModelError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}") from None


def backbone_of(model: nn.Module) -> Backbone:
    """The backbone a model belongs to: Hugging Face causal LMs by their config, anything else as a timm ViT."""
    if getattr(model, "config", None) is not None and hasattr(model.config, "model_type"):
        return BACKBONES[HF_CAUSAL_LM]
    return BACKBONES[TIMM_VIT]


def clone_state(model: nn.Module, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {n: state[n].detach().clone() for n in names}
