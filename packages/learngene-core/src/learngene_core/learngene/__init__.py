"""Shared machinery of learngene methods (TLEG, SWS, ...): aux net, extraction, learngene files, expansion.

A method package defines one `LearngeneMethod` subclass (which tensors the learngene holds and how they
generate each layer) and gets extraction by distillation, descendants of any depth as plain timm models
with an inheritance map, training from a learngene, comparison against scratch and a console script.
The backbone (`backbones.py`) is a timm ViT or a Hugging Face decoder LM (Llama-style or GPT-2).
"""

from .anatomy import BLOCK_TENSORS, INHERITED_TENSORS, VIT_NAME, check_learngene_vit, vit_arch
from .artifact import Learngene
from .auxnet import AuxNet
from .backbones import HF_CAUSAL_LM, TIMM_VIT, Backbone, backbone_named, backbone_of
from .cli import method_cli
from .config import AncestryConfig, DescendantConfig, DescendantOptions, ExtractConfig
from .descendants import build_descendant, compare, format_table, same_label_space
from .expand import expand, load_descendant, save_descendant, summarize_inheritance
from .extract import extract, load_ancestry
from .methods import LearngeneMethod

__all__ = [
    "BLOCK_TENSORS",
    "INHERITED_TENSORS",
    "VIT_NAME",
    "HF_CAUSAL_LM",
    "TIMM_VIT",
    "AncestryConfig",
    "Backbone",
    "AuxNet",
    "DescendantConfig",
    "DescendantOptions",
    "ExtractConfig",
    "Learngene",
    "LearngeneMethod",
    "backbone_named",
    "backbone_of",
    "build_descendant",
    "check_learngene_vit",
    "compare",
    "expand",
    "extract",
    "format_table",
    "load_ancestry",
    "load_descendant",
    "method_cli",
    "same_label_space",
    "save_descendant",
    "summarize_inheritance",
    "vit_arch",
]
