"""`SnellConfig`: what to wrap and how (rank, sparsity, kernel, mask), validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from learngene_core.errors import ConfigError
from learngene_core.registry import did_you_mean

from .kernels import KERNELS

# the attention and MLP linears of timm ViT/DeiT, Swin and ConvNeXt (conv_mlp=False) blocks
DEFAULT_TARGETS = ("qkv", "q", "k", "v", "proj", "fc1", "fc2")


@dataclass
class SnellConfig:
    """SNELL-r settings; also the `snell:` section of a training config and the adapter's JSON config."""

    rank: int = field(
        default=8, metadata={"help": "low-rank width r per side (split over the kernel's heads)"}
    )
    sparsity: float = field(default=0.0, metadata={"help": "fraction of delta W entries zeroed, in [0, 1)"})
    kernel: str = field(default="distance", metadata={"help": "distance (reference), linear, rbf, sigmoid"})
    mask: Literal["magnitude", "binary"] = field(
        default="magnitude", metadata={"help": "magnitude: delta*|delta| (reference); binary: 0/1 mask"}
    )
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "Linear name suffixes to wrap (default: attention and MLP linears)"}
    )
    split_qkv: bool = field(default=True, metadata={"help": "treat a fused qkv Linear as q, k, v separately"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the branch input"})
    proj_dropout: bool = field(
        default=False,
        metadata={"help": "also drop the attention projection's branch input (the reference does not)"},
    )
    drop_path: float = field(default=0.1, metadata={"help": "stochastic depth on the branch output"})
    trainable: list[str] = field(
        default_factory=lambda: ["head", "cls_token"],
        metadata={"help": "other parameters left trainable: name components (the reference's freeze_stage)"},
    )
    checkpointing: bool = field(default=True, metadata={"help": "recompute delta W in backward"})

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ConfigError(
                f"snell.kernel: unknown kernel '{self.kernel}'{did_you_mean(self.kernel, list(KERNELS))}; "
                f"kernels: {', '.join(KERNELS)}"
            )
        heads = KERNELS[self.kernel].heads
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"snell.rank must be a positive integer, got {self.rank!r}")
        if self.rank % heads:
            raise ConfigError(
                f"snell.rank must be a multiple of {heads} for kernel '{self.kernel}' (it splits the rank "
                f"into {heads} heads), got {self.rank}"
            )
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"snell.sparsity must be in [0, 1), got {self.sparsity}")
        if self.mask not in ("magnitude", "binary"):
            raise ConfigError(f"snell.mask must be magnitude or binary, got {self.mask!r}")
        for key in ("dropout", "drop_path"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"snell.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("snell.target_modules is empty; list module names or leave it unset")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnellConfig:
        from learngene_core.config import from_dict

        return from_dict(cls, data, source="snell config")
