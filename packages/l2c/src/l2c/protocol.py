"""The honest-protocol parts of a run: the pre-training overlap warning and the trainable-parameter table."""

from __future__ import annotations

from .config import L2CConfig
from .context import Context

# pre-training data -> benchmark datasets whose classes it contains (Kim et al., NeurIPS 2022, removed the 389
# ImageNet-1k classes that overlap CIFAR / Tiny-ImageNet, leaving the 611 of "imagenet-611")
CONTAINS = {
    "imagenet-21k": ("cifar100", "imagenet-r", "fgvc", "imagenet", "mini-imagenet"),
    "imagenet-1k": ("cifar100", "imagenet-r", "fgvc", "imagenet", "mini-imagenet"),
    "imagenet-611": ("imagenet-r", "fgvc", "imagenet", "mini-imagenet"),
}


def overlap_warning(cfg: L2CConfig, order: tuple[int, ...]) -> str | None:
    """A warning line when the backbone's pre-training may have seen this benchmark's classes, else None."""
    seen, data = cfg.pretraining.dataset, cfg.data.name
    if seen is None:
        if cfg.model.checkpoint is None:
            return None
        return (
            f"warning: model.checkpoint is set but pretraining.dataset is not; if its pre-training data holds "
            f"classes of '{data}', continual-learning accuracy is inflated (set pretraining.dataset to check)"
        )
    if seen == data:
        overlap = sorted(set(order) & set(cfg.pretraining.classes or order))
        if overlap:
            return (
                f"warning: the backbone was pre-trained on '{seen}' classes {overlap[:5]}"
                f"{'...' if len(overlap) > 5 else ''}, which are also tasks here: accuracy is not class-incremental"
            )
        return None
    if data in CONTAINS.get(seen, ()):
        return (
            f"warning: the backbone was pre-trained on '{seen}', which contains classes of '{data}'; accuracies "
            "are inflated by pre-training leakage (an overlap-free backbone such as imagenet-611 avoids this)"
        )
    return None


def parameter_table(ctx: Context) -> dict[str, list[int]]:
    """Trainable parameters while learning each task, and what L2C stores after it, per method."""
    split, pool, lora = ctx.split, ctx.pool, ctx.cfg
    head = (pool.feature_dim + 1) * split.num_classes
    selector = pool.count("selector") if "selector" in pool.adapters else 0
    expert = pool.count("expert_0") if "expert_0" in pool.adapters else 0
    tasks = range(split.num_tasks)
    table = {
        "selector (LoRA + head)": [selector + head for _ in tasks],
        "expert t (LoRA + head)": [expert + head for _ in tasks],
        "classifier alignment (head)": [head if t > 0 and lora.experts.align_head else 0 for t in tasks],
        "L2C stored after task t": [selector + head + (t + 1) * expert + head for t in tasks],
    }
    for name in ("sequential", "joint"):
        if name in pool.adapters:
            table[f"{name} (LoRA + head)"] = [pool.count(name) + head for _ in tasks]
    return table


def format_parameter_table(table: dict[str, list[int]]) -> str:
    tasks = len(next(iter(table.values())))
    lines = ["| trainable parameters | " + " | ".join(f"task {t}" for t in range(tasks)) + " |"]
    lines.append("|---|" + "---:|" * tasks)
    lines += [f"| {name} | " + " | ".join(f"{v:,}" for v in row) + " |" for name, row in table.items()]
    return "\n".join(lines)
