"""`nino collect`: train tasks with AdamW and record the flat parameter vector every `snapshot_every` steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from learngene_core.errors import CheckpointError

from .tasks import build_task, graph_args, task_names
from .trajectories import INDEX_NAME, Trajectory, TrajectoryWriter


@dataclass
class CollectConfig:
    """Which runs to record: every task x seed, `steps` AdamW steps, a snapshot every `snapshot_every` steps."""

    tasks: list[str] = field(default_factory=lambda: ["cnn-digits-16", "cnn-synth-16"])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    steps: int = 10000
    snapshot_every: int = 200  # the paper's spacing of NiNo's input states
    data_seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.snapshot_every <= 0:
            raise ValueError(f"steps and snapshot_every must be > 0, got {self.steps}, {self.snapshot_every}")
        if self.steps // self.snapshot_every < 2:
            raise ValueError(f"steps must hold at least 2 snapshot intervals of {self.snapshot_every}")
        unknown = [t for t in self.tasks if t not in task_names()]
        if unknown:
            raise ValueError(f"tasks has unknown task {unknown[0]!r}; known: {', '.join(task_names())}")
        if not self.tasks or not self.seeds:
            raise ValueError("tasks and seeds must not be empty")


def flat_params(model: nn.Module) -> torch.Tensor:
    """The model's parameters (named_parameters order, tied weights once) as one float32 CPU vector."""
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])


def record_run(task_name: str, seed: int, steps: int, snapshot_every: int, data_seed: int = 0):
    """Train one task with AdamW; return (states [snapshots, P], steps, train/val losses, names, shapes, graph args)."""
    task = build_task(task_name, seed, data_seed)
    model, optimizer = task.model, task.optimizer()
    model.train()
    batches = task.train.forever()
    states, at, train_losses, val_losses = [], [], [], []
    running: list[float] = []
    for step in range(steps + 1):
        if step % snapshot_every == 0:
            states.append(flat_params(model).numpy())
            at.append(step)
            train_losses.append(float(np.mean(running)) if running else float("nan"))
            val_losses.append(task.evaluate()["loss"])
            running = []
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model, next(batches))
        loss.backward()
        optimizer.step()
        running.append(loss.item())
    names = [n for n, _ in model.named_parameters()]
    shapes = [list(p.shape) for _, p in model.named_parameters()]
    return np.stack(states), at, train_losses, val_losses, names, shapes, graph_args(model)


def collect(cfg: CollectConfig, output_dir: str | Path, resume: bool = False) -> Path:
    """Record every task x seed run of `cfg` into `output_dir` (see nino.trajectories for the layout)."""
    output_dir = Path(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not resume:
            raise CheckpointError(
                f"output dir {output_dir} is not empty; pass --resume to add the missing runs"
            )
        if not (output_dir / INDEX_NAME).is_file():
            raise CheckpointError(f"cannot resume: {output_dir} has no {INDEX_NAME}")
    writer = TrajectoryWriter(output_dir)
    runs = [(t, s) for t in cfg.tasks for s in cfg.seeds if (t, s) not in writer.done()]
    for task_name, seed in tqdm(runs, desc="collect", disable=not cfg.progress):
        torch.manual_seed(seed)
        states, at, train_losses, val_losses, names, shapes, gargs = record_run(
            task_name, seed, cfg.steps, cfg.snapshot_every, cfg.data_seed
        )
        meta = Trajectory(
            file="",
            task=task_name,
            model=task_name,
            seed=seed,
            param_names=names,
            param_shapes=shapes,
            steps=at,
            train_loss=train_losses,
            val_loss=val_losses,
            graph_args=gargs,
        )
        writer.add(meta, states)
    return output_dir
