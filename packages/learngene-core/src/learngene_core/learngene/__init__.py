"""Shared machinery of learngene methods (TLEG, SWS, ...): aux net, extraction, learngene files, expansion.

A method package defines one `LearngeneMethod` subclass (which tensors the learngene holds and how they
generate each layer) and gets extraction by distillation, descendants of any depth as plain timm models
with an inheritance map, training from a learngene, comparison against scratch and a console script.
The backbone (`backbones.py`) is a timm ViT or a Hugging Face decoder LM (Llama-style or GPT-2).
Names load on first use, so a method's console script answers `--help` without importing torch.
"""

from ..lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        ".anatomy": ["BLOCK_TENSORS", "INHERITED_TENSORS", "VIT_NAME", "check_learngene_vit", "vit_arch"],
        ".artifact": ["Learngene"],
        ".auxnet": ["AuxNet"],
        ".backbones": ["HF_CAUSAL_LM", "TIMM_VIT", "Backbone", "backbone_named", "backbone_of"],
        ".cli": ["method_cli"],
        ".config": ["AncestryConfig", "DescendantConfig", "DescendantOptions", "ExtractConfig"],
        ".descendants": ["build_descendant", "compare", "format_table", "same_label_space"],
        ".expand": ["expand", "load_descendant", "save_descendant", "summarize_inheritance"],
        ".extract": ["extract", "load_ancestry"],
        ".methods": ["LearngeneMethod"],
    },
)
