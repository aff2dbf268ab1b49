"""Per-task-type expert usage: the mean router weight of each expert over the real tokens of each task type."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .config import LoraMoEConfig
from .model import LoraMoEModel


@torch.no_grad()
def expert_usage(model: LoraMoEModel, loader: DataLoader, num_task_types: int) -> torch.Tensor:
    """(task types, experts): router weight per expert averaged over tokens, samples and wrapped modules."""
    n = model.loramoe_config.num_experts
    total = torch.zeros(num_task_types, n, dtype=torch.float64)
    count = torch.zeros(num_task_types, dtype=torch.float64)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for inputs, _ in loader:
        mask = inputs["attention_mask"].to(device)
        with model.capturing() as gates:
            model(input_ids=inputs["input_ids"].to(device), attention_mask=mask)
        per_module = [(g * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) for g in gates]  # (B, N) each
        per_sample = torch.stack(per_module).mean(0).double().cpu()
        types = inputs["task_types"].cpu()
        total.index_add_(0, types, per_sample)
        count.index_add_(0, types, torch.ones_like(types, dtype=torch.float64))
    model.train(was_training)
    return (total / count.clamp(min=1)[:, None]).float()


def own_group_share(usage: torch.Tensor, config: LoraMoEConfig) -> list[float]:
    """For each task type, the share of router weight on the experts of its own group."""
    groups, task_groups = config.groups(), config.task_groups()
    return [float(usage[t, groups[task_groups[t]]].sum()) for t in range(usage.shape[0])]


def usage_table(usage: torch.Tensor, config: LoraMoEConfig) -> str:
    """A plain-text table: one row per task type, one column per expert, plus the own-group share."""
    groups, names, task_groups = config.groups(), config.names(), config.task_groups()
    group_of = {e: g for g, members in enumerate(groups) for e in members}
    header = ["task type (group)"] + [f"e{e}:{names[group_of[e]][:5] if e in group_of else '-'}"
                                      for e in range(usage.shape[1])] + ["own group"]  # fmt: skip
    shares = own_group_share(usage, config)
    rows = [
        [f"{t} ({names[task_groups[t]]})"] + [f"{v:.3f}" for v in usage[t].tolist()] + [f"{shares[t]:.3f}"]
        for t in range(usage.shape[0])
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
