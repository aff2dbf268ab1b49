"""Two timm-registered models whose layers can be widened one at a time (Heur-/Auto-Learngene's backbones).

- `learngene_vgg`: the Heur-Learngene collective model, a VGG-style stack of 3x3 convs (BN-free, ReLU, max pools
  after the listed convs), global average pooling and a 3-layer MLP classifier. `widths` gives every conv's
  output channels, so a widened model is rebuilt from its kwargs.
- `vit_learngene`: a timm VisionTransformer whose blocks may have different MLP hidden widths (`mlp_hidden`).

Both are created by name with `timm.create_model` (or `build_model`), like any other timm model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timm.layers import Mlp
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer, init_weights_vit_timm
from torch import nn

#: The reference's 13-conv collective model: VGG-16 widths, a max pool after convs 2, 4, 7, 10 and 13.
VGG13_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG13_POOLS = (1, 3, 6, 9, 12)
_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


class VGGNet(nn.Module):
    """`features.<i>` are the convs (the layers a learngene picks from); `pre_logits` + `head` classify."""

    def __init__(
        self,
        widths: Sequence[int] = VGG13_WIDTHS,
        pool_after: Sequence[int] = VGG13_POOLS,
        num_classes: int = 5,
        in_chans: int = 3,
        hidden: int = 4096,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(
                f"widths must be a non-empty list of positive channel counts, got {list(widths)}"
            )
        if any(not 0 <= p < len(widths) for p in pool_after):
            raise ValueError(f"pool_after indexes convs 0..{len(widths) - 1}, got {list(pool_after)}")
        self.widths, self.pool_after = [int(w) for w in widths], sorted(int(p) for p in pool_after)
        self.num_classes = num_classes
        channels = [in_chans, *self.widths]
        self.features = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, padding=1) for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.pool = nn.MaxPool2d(2)
        self.pre_logits = nn.Sequential(
            nn.Linear(self.widths[-1], hidden), nn.ReLU(), nn.Dropout(drop_rate),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(drop_rate),
        )  # fmt: skip
        self.head = nn.Linear(hidden, num_classes)
        self.apply(_init_weights)

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised head for `num_classes` classes (timm's method name)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.head.in_features, num_classes)
        _init_weights(self.head)

    def forward_features(self, x):
        for i, conv in enumerate(self.features):
            x = conv(x).relu()
            if i in self.pool_after and min(x.shape[-2:]) >= 2:
                x = self.pool(x)
        return x.mean((-2, -1))

    def forward(self, x):
        return self.head(self.pre_logits(self.forward_features(x)))


def _init_weights(module: nn.Module) -> None:
    """torchvision's VGG init: He-normal convs (fan_out), N(0, 0.01) linears, zero biases (trains without BN)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
    else:
        return
    nn.init.zeros_(module.bias)


@register_model
def learngene_vgg(pretrained: bool = False, **kwargs: Any) -> VGGNet:
    """A VGG-style conv stack of any widths (default: the 13-conv VGG-16 layout)."""
    if pretrained:
        raise ValueError("learngene_vgg has no pretrained weights")
    for key in _TIMM_ONLY:
        kwargs.pop(key, None)
    return VGGNet(**kwargs)


@register_model
def vit_learngene(pretrained: bool = False, mlp_hidden: Sequence[int] | None = None, **kwargs: Any):
    """A timm VisionTransformer; `mlp_hidden[i]` (optional) is block i's MLP hidden width."""
    if pretrained:
        raise ValueError("vit_learngene has no pretrained weights")
    for key in _TIMM_ONLY:
        kwargs.pop(key, None)
    model = VisionTransformer(**kwargs)
    if mlp_hidden is not None:
        if len(mlp_hidden) != len(model.blocks):
            raise ValueError(f"mlp_hidden has {len(mlp_hidden)} entries for {len(model.blocks)} blocks")
        for block, hidden in zip(model.blocks, mlp_hidden):
            if hidden != block.mlp.fc1.out_features:
                block.mlp = Mlp(model.embed_dim, int(hidden), act_layer=type(block.mlp.act))
                block.mlp.apply(init_weights_vit_timm)
    return model
