"""`nino metatrain`: train a NiNo network on stored trajectories (spec A.9), at CPU scale or paper scale.

One step: draw `trajectories_per_batch` trajectories (task uniformly, then a trajectory), cut
`windows_per_trajectory` windows from each (ctx past states, up to `horizon` future states, masked when fewer
remain), normalise every window with its input statistics, turn states and targets into edge features of the
model's neural graph, and regress all horizons at once with an L1 loss over real parameter slots only
(self-loops, residual/head pseudo-edges, padded kernel slots and missing horizons are masked). AdamW with
cosine decay and gradient clipping; metrics in metrics.jsonl; checkpoints in the official NiNo format, plus
the step spacing of the trajectories' states (`snapshot_every`; trajectories of mixed spacings are refused).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from learngene_core.config import save_config
from learngene_core.errors import CheckpointError, DataError, TrainingError
from learngene_core.metrics import MetricsLog, plot_metrics

from .trajectories import Trajectory, TrajectoryDataset, open_dataset, snapshot_spacing

CHECKPOINT_NAME = "nino.pt"
EMBEDDING_SUFFIXES = ("wte.weight", "embed_tokens.weight")


@dataclass
class MetatrainConfig:
    """NiNo size and meta-training schedule. The defaults are CPU scale; the `paper` preset holds A.9's values."""

    hid: int = 32  # hidden size of the GNN (paper: 128)
    layers: int = 3  # message-passing layers (paper: 3)
    ctx: int = 5  # past states per window (c)
    horizon: int = 40  # DMS horizons predicted at once
    max_feat_size: int = 9  # edge-feature slots (9 for 3x3 convs)
    lpe_dim: int = 8
    wte_pos_enc: bool = False  # token-id embedding (GPT-2 vocabulary); off for the shipped CPU model
    gnn: bool = True  # False: the graph-free WNN+ baseline
    steps: int = 500  # optimizer steps (paper: 20,000)
    lr: float = 3e-3
    weight_decay: float = 1e-2
    min_lr: float = 1e-6  # cosine floor
    grad_clip: float = 5.0
    trajectories_per_batch: int = 4
    windows_per_trajectory: int = 4
    min_future: int = 10  # windows need at least this many future states (paper: min(40, 2c))
    state_stride: int = 1  # use every n-th stored snapshot: meta-train at n x the collection's step spacing
    global_norm: bool = False  # normalise LM trajectories with one global mu/sigma (the reference's quirk)
    vocab_sample: int = 1000  # keep this many embedding rows of large-vocabulary LMs (sorted random subset)
    lpe_sign_flip: bool = True  # random +-1 per eigenvector, one draw per trajectory
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: bool = (
        False  # also keep every checkpoint as nino-step<N>.pt (candidates to choose among)
    )
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("hid", "layers", "ctx", "horizon", "max_feat_size", "steps", "trajectories_per_batch",
                     "windows_per_trajectory", "min_future", "state_stride", "vocab_sample", "log_every",
                     "checkpoint_every"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.lr > 0 or not self.grad_clip > 0 or self.weight_decay < 0 or self.min_lr < 0:
            raise ValueError("lr and grad_clip must be > 0, weight_decay and min_lr >= 0")
        if self.min_future > self.horizon:
            raise ValueError(f"min_future ({self.min_future}) must be <= horizon ({self.horizon})")

    def model_args(self) -> dict[str, Any]:
        """Constructor arguments of the NiNo network (stored in the checkpoint's model_args)."""
        if not self.gnn:
            return {"gnn": False, "hid": self.hid, "ctx": self.ctx, "horizon": self.horizon,
                    "max_feat_size": self.max_feat_size}  # fmt: skip
        return {
            "hid": self.hid,
            "layers": self.layers,
            "ctx": self.ctx,
            "horizon": self.horizon,
            "max_feat_size": self.max_feat_size,
            "lpe_dim": self.lpe_dim,
            "wte_pos_enc": self.wte_pos_enc,
        }


def build_nino_net(cfg: MetatrainConfig) -> torch.nn.Module:
    """A fresh NiNo network (or WNN+ when cfg.gnn is False) of the config's size."""
    from .model import build_nino

    return build_nino(**cfg.model_args())


# ---------------------------------------------------------------------------------------------- sampling


@dataclass
class Window:
    """One training example on one neural graph: normalised input edge features and flat future targets.

    Targets live in flat parameter space ([P, available horizons]); `graph.param_edge` / `param_slot` pick
    the matching predictions, which is the spec's mask (real parameter slots only, missing horizons dropped)
    without materialising an [E, 9, 40] target tensor.
    """

    data: Any  # torch_geometric Data with edge_attr [E, feat*ctx]
    param_edge: torch.Tensor  # [P] edge of each parameter
    param_slot: torch.Tensor  # [P] spatial slot of each parameter
    target: torch.Tensor  # [P, available] normalised future states (available <= horizon)
    latest: torch.Tensor  # [P] the most recent normalised input state


class WindowSampler:
    """Draws windows from a trajectory dataset; graphs (and their LPEs) are built once per architecture."""

    def __init__(self, dataset: TrajectoryDataset, cfg: MetatrainConfig, generator: random.Random) -> None:
        self.dataset, self.cfg, self.rng = dataset, cfg, generator
        self.by_task = dataset.by_task()
        self.tasks = sorted(self.by_task)
        self.need = cfg.ctx + cfg.min_future + cfg.windows_per_trajectory - 1
        self._graphs: dict[Any, Any] = {}
        self._lengths: dict[int, int] = {}
        usable = [t for t in dataset.trajectories if self._length(t) >= self.need]
        if not usable:
            raise DataError(
                f"no trajectory in {dataset.root} has the {self.need} states a window needs "
                f"(ctx {cfg.ctx} + min_future {cfg.min_future} + {cfg.windows_per_trajectory - 1} shifts)"
            )
        self.by_task = {k: [t for t in v if self._length(t) >= self.need] for k, v in self.by_task.items()}
        self.tasks = sorted(k for k, v in self.by_task.items() if v)

    def _length(self, trajectory: Trajectory) -> int:
        key = id(trajectory)
        if key not in self._lengths:
            self._lengths[key] = trajectory.num_states()
        return self._lengths[key]

    def graph(self, names: list[str], shapes: list[list[int]], graph_args: dict):
        """(graph, LPE) of an architecture, built once (vocabulary subsets share it)."""
        key = (tuple(names), tuple(tuple(s) for s in shapes))
        if key not in self._graphs:
            from .graph import build_graph

            named = [(n, torch.Size(s)) for n, s in zip(names, shapes)]
            graph = build_graph(named, **graph_args)
            self._graphs[key] = (graph, graph.lpe(self.cfg.lpe_dim))
        return self._graphs[key]

    def sample(self) -> list[Window]:
        """The windows of one trajectory draw."""
        cfg = self.cfg
        trajectory = self.rng.choice(self.by_task[self.rng.choice(self.tasks)])
        total = self._length(trajectory)
        start = self.rng.randint(0, total - self.need)
        count = min(total - start, cfg.ctx + cfg.horizon + cfg.windows_per_trajectory - 1)
        states = trajectory.states(start, count)  # [P, count]
        names, shapes = list(trajectory.param_names), [list(s) for s in trajectory.param_shapes]
        states, shapes, token_ids = self._subsample_vocab(states, names, shapes)
        graph, lpe = self.graph(names, shapes, trajectory.graph_args)
        if cfg.lpe_sign_flip:
            lpe = lpe * (torch.randint(0, 2, (1, lpe.shape[1]), generator=self._torch_rng()) * 2 - 1)
        pos_w = graph.pos_w
        if token_ids is not None:  # the kept embedding rows carry their original token id + 1
            pos_w = torch.where(pos_w > 0, token_ids[(pos_w - 1).clamp(min=0)] + 1, pos_w)
        sizes = [int(np.prod(s)) if s else 1 for s in shapes]
        is_lm = any(n.endswith(EMBEDDING_SUFFIXES) for n in names)
        windows = []
        for shift in range(cfg.windows_per_trajectory):
            past = states[:, shift : shift + cfg.ctx]
            future = states[:, shift + cfg.ctx : shift + cfg.ctx + cfg.horizon]
            if future.shape[1] < cfg.min_future:
                break
            windows.append(self._window(graph, lpe, pos_w, past, future, sizes, is_lm))
        return windows

    def _torch_rng(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.rng.getrandbits(63))

    def _subsample_vocab(self, states: torch.Tensor, names: list[str], shapes: list[list[int]]):
        """Keep a sorted random subset of `vocab_sample` rows of a large token embedding (spec A.9 step 4)."""
        offset = 0
        for i, (name, shape) in enumerate(zip(names, shapes)):
            size = int(np.prod(shape)) if shape else 1
            if name.endswith(EMBEDDING_SUFFIXES) and len(shape) == 2 and shape[0] > self.cfg.vocab_sample:
                rows = torch.tensor(sorted(self.rng.sample(range(shape[0]), self.cfg.vocab_sample)))
                cols = torch.arange(shape[1])
                keep = offset + (rows[:, None] * shape[1] + cols[None, :]).reshape(-1)
                index = torch.cat([torch.arange(offset), keep, torch.arange(offset + size, states.shape[0])])
                shapes = [*shapes[:i], [self.cfg.vocab_sample, shape[1]], *shapes[i + 1 :]]
                return states[index], shapes, rows
            offset += size
        return states, shapes, None

    def _window(self, graph, lpe, pos_w, past, future, sizes, is_lm) -> Window:
        from .normalize import normalize_global, normalize_like, normalize_per_tensor

        if self.cfg.global_norm and is_lm:
            normed, mu, sigma = normalize_global(past)
        else:
            normed, mu, sigma = normalize_per_tensor(past, sizes)
        data = graph.to_pyg(graph.edge_features(normed, self.cfg.max_feat_size), lpe=lpe)
        data.pos_w = pos_w
        return Window(
            data, graph.param_edge, graph.param_slot, normalize_like(future, mu, sigma), normed[:, -1]
        )


# ---------------------------------------------------------------------------------------------- training


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """Cosine decay from lr to min_lr over `total` steps."""
    progress = min(step / max(total, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_loss(model: torch.nn.Module, windows: list[Window]) -> torch.Tensor:
    """Mean L1 error over all real parameter slots and available horizons of a disjoint union of windows."""
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([w.data for w in windows])
    pred = model(batch)  # [E_total, feat, horizon], normalised space, residual added
    horizon = pred.shape[2]
    offsets = torch.tensor([0] + [w.data.num_edges for w in windows[:-1]]).cumsum(0)
    edges = torch.cat([off + w.param_edge for off, w in zip(offsets.tolist(), windows)])
    slots = torch.cat([w.param_slot for w in windows])
    targets = torch.cat(
        [torch.nn.functional.pad(w.target, (0, horizon - w.target.shape[1])) for w in windows]
    )
    mask = torch.cat([(torch.arange(horizon) < w.target.shape[1]).expand(len(w.target), -1) for w in windows])
    error = (pred[edges, slots] - targets).abs()  # one gather: its backward allocates pred's size once
    return error[mask].mean()


def _python_rng_state(saved: Any) -> tuple:
    """A `random.Random` state as `setstate` takes it (a saved one may come back with lists for tuples)."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def persistence_loss(windows: list[Window]) -> float:
    """The same L1 loss for "no change" (every horizon = the latest input state): the bar NiNo must beat."""
    total = sum(float((w.target - w.latest[:, None]).abs().sum()) for w in windows)
    return total / sum(w.target.numel() for w in windows)


def metatrain(
    cfg: MetatrainConfig,
    data_dir: str | Path,
    output_dir: str | Path,
    init: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Meta-train NiNo on the trajectories in `data_dir`; write nino.pt, metrics.jsonl, config.yaml, a PNG.

    Every `checkpoint_every` steps (and at the end) `checkpoints/last` gets the network, AdamW's state, the
    step, the sampler's and the global RNG states and the loss sums since the last log; `resume` continues
    from there (with the same config, data and init), bitwise as if the run had not stopped.
    """
    from .checkpoint import load_nino, save_nino
    from .runstate import misfit, resume_from_last, save_last

    output_dir = Path(output_dir)
    if not resume and output_dir.is_dir() and any(output_dir.iterdir()):
        raise CheckpointError(f"output dir {output_dir} is not empty; choose another")
    dataset = open_dataset(data_dir)
    for trajectory in dataset.trajectories:
        trajectory.stride *= cfg.state_stride
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    sampler = WindowSampler(dataset, cfg, rng)
    spacing = snapshot_spacing([t for ts in sampler.by_task.values() for t in ts])
    model = load_nino(init) if init else build_nino_net(cfg)
    model.snapshot_every = spacing  # the horizon unit of what it learns here
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    origin = {"data": str(Path(data_dir).resolve()), "init": str(Path(init).resolve()) if init else None}
    log = MetricsLog(output_dir / "metrics.jsonl")
    done, running, elapsed = 0, [], 0.0
    if resume:
        state = resume_from_last(output_dir, model, origin)
        try:
            optimizer.load_state_dict(state["optimizer"])
            rng.setstate(_python_rng_state(state["sampler_rng"]))
            done, running, elapsed = int(state["step"]), list(state["running"]), float(state["seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise misfit(output_dir, exc) from None
        log.truncate_after(done)
    else:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output_dir / "config.yaml")
    started = time.perf_counter() - elapsed
    bar = tqdm(range(done + 1, cfg.steps + 1), desc="metatrain", disable=not cfg.progress,
               initial=done, total=cfg.steps)  # fmt: skip
    for step in bar:
        lr = cosine_lr(step - 1, cfg.steps, cfg.lr, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        windows = [w for _ in range(cfg.trajectories_per_batch) for w in sampler.sample()]
        loss = batch_loss(model, windows)
        if not torch.isfinite(loss):
            raise TrainingError(f"meta-training loss became {loss.item()} at step {step}; lower lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        running.append((loss.item(), persistence_loss(windows)))
        if step % cfg.log_every == 0 or step == cfg.steps:
            loss_mean, still = np.mean(running, axis=0)
            log.log(step, "train", loss=float(loss_mean), persistence=float(still),
                    ratio=float(loss_mean / still), lr=lr, grad_norm=float(grad_norm),
                    seconds=time.perf_counter() - started)  # fmt: skip
            bar.set_postfix(loss=f"{loss_mean:.4f}", vs_no_change=f"{loss_mean / still:.3f}")
            running = []
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_nino(model, output_dir / CHECKPOINT_NAME, snapshot_every=spacing)
            if cfg.keep_checkpoints:
                save_nino(model, output_dir / f"nino-step{step:05d}.pt", snapshot_every=spacing)
            state = {"step": step, "optimizer": optimizer.state_dict(), "sampler_rng": rng.getstate(),
                     "running": running, "seconds": time.perf_counter() - started}  # fmt: skip
            save_last(output_dir, model, state, {**origin, "step": step})
    plot_metrics(log.records, output_dir / "metrics.png", title="NiNo meta-training (L1, normalised)")
    summary = {"steps": cfg.steps, "trajectories": len(dataset), "tasks": dataset.tasks(),
               "snapshot_every": spacing, "final_loss": log.records[-1]["loss"],
               "seconds": time.perf_counter() - started}  # fmt: skip
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return output_dir / CHECKPOINT_NAME
