"""`L2CConfig`: the backbone, data, task split, the three stages, evaluation and baselines of one L2C run.

Every choice the spec marks as inferred is a key here with the spec's default (HiDe-LoRA / SLCA values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from learngene_core.config import DataConfig, ModelConfig, TrainConfig, load_config

PRESETS = "l2c.configs"
BASELINES = ("sequential", "joint")


@dataclass
class ScenarioConfig:
    """How the dataset's classes become tasks (see learngene_core.continual.make_split)."""

    num_tasks: int | None = 10  # equal tasks; set null and use task_size for PyCIL-style splits
    task_size: int | None = None  # classes per task, remainder as a smaller last task (Cars-196: 9 x 20 + 16)
    first_task_size: int | None = None
    order_seed: int | None = 1993  # shuffles the class order (null: labels in ascending order)
    class_order: list[int] | None = None  # an explicit order instead of a seeded shuffle

    def __post_init__(self) -> None:
        if (self.num_tasks is None) == (self.task_size is None):
            raise ValueError("num_tasks must be set, or set to null with task_size set (not both)")


@dataclass
class LoraSettings:
    """peft LoRA on the attention projections of every (or the first `depth`) timm ViT block."""

    rank: int = 8
    alpha: float = 8.0  # scaling gamma = alpha / rank
    target_modules: list[str] = field(default_factory=lambda: ["qkv"])
    depth: int | None = None  # only the first `depth` blocks (HiDe-LoRA: 5); null: all blocks
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not self.target_modules:
            raise ValueError("target_modules is empty; list module names such as qkv")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"depth must be >= 1 or null, got {self.depth}")


@dataclass
class AlignConfig:
    """Classifier alignment: retrain a head on Gaussian pseudo-features of every seen class (HiDe TAP / SLCA CA)."""

    centroids: int = 1  # > 1: multi-centroid statistics by K-means (HiDe default 10), diagonal variance each
    epochs: int = 30
    lr: float = 0.005
    samples_per_centroid: int = 120  # pseudo-features per (class, centroid) per epoch (HiDe: 5 x batch size)
    batch_size: int = 128
    variance_floor: float = 1e-4  # added to every variance

    def __post_init__(self) -> None:
        for key in ("centroids", "epochs", "samples_per_centroid", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class SelectorConfig:
    """Stage 1: one shared LoRA + head over seen classes, trained task after task with current-task masking."""

    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.01, weight_decay=0.0))
    mask_current_task: bool = True  # CE over the current task's classes only (HiDe-LoRA's continual LoRA)
    lora_lr_scale: float = 1.0  # LoRA lr = train.lr x this (SLCA's slow learner uses 0.01 for the backbone)
    align_head: bool = False  # [optional] SLCA-style classifier alignment of the selector's head
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if not self.lora_lr_scale > 0:
            raise ValueError(f"lora_lr_scale must be > 0, got {self.lora_lr_scale}")


@dataclass
class ExpertsConfig:
    """Stage 2: one LoRA expert per task on the same backbone, with a shared classifier head."""

    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.01, weight_decay=0.0))
    init_from_previous: bool = True  # expert t starts as a copy of expert t-1 (forward transfer)
    mask_current_task: bool = True
    # after training, expert t <- (1 - m) expert t + m mean(previous experts); HiDe-LoRA uses 0.1
    momentum: float = 0.0
    # [hypothesis] weight of the CE of the top-k mixture (k = eval.topk) on the current task; 0: off
    cooperation: float = 0.0
    align_head: bool = True  # classifier alignment of the shared expert head after every task but the first
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.cooperation < 0:
            raise ValueError(f"cooperation must be >= 0, got {self.cooperation}")


@dataclass
class EvalConfig:
    """Top-k aggregation: prediction = sum over the k highest task weights g_k of g_k * softmax(expert k)."""

    topk: int = 5
    batch_size: int = 256


@dataclass
class PretrainingConfig:
    """What the backbone was pre-trained on, for the class-overlap warning (null: trained from scratch)."""

    dataset: str | None = None  # e.g. imagenet-21k, imagenet-1k, imagenet-611 (overlap-free DeiT), digits
    classes: list[int] | None = (
        None  # for a backbone pre-trained on this benchmark's own dataset: which labels
    )


@dataclass
class L2CConfig:
    """One L2C run: a frozen (pre-trained) ViT, a class-incremental split, selector, experts and baselines."""

    model: ModelConfig = field(default_factory=ModelConfig)
    pretraining: PretrainingConfig = field(default_factory=PretrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: list[Literal["sequential", "joint"]] = field(default_factory=lambda: list(BASELINES))
    baseline_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=20, lr=0.01, weight_decay=0.0)
    )
    seed: int = 0


def load_l2c_config(config: str, overrides: list[str] | None = None) -> L2CConfig:
    """A preset of the l2c package or a YAML path, with `key.sub=value` overrides, validated."""
    return load_config(config, overrides, L2CConfig, PRESETS)
