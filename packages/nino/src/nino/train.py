"""`nino train`: train one task with plain AdamW or NiNo-wrapped AdamW, in the seed README's loop shape.

Validation runs every `eval_every` steps; wall-clock is split into training time and the time spent in the
nowcast calls, so the share of nowcasting is measured, not guessed. Runs write metrics.jsonl; `compare_runs`
plots both optimizers' validation curves into one PNG.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from learngene_core.errors import ConfigError, TrainingError
from learngene_core.metrics import MetricsLog

from .tasks import Batches, build_task, evaluate, task_names

OPTIMIZERS = ("adamw", "nino")


@dataclass
class TrainRunConfig:
    """One training run of a `nino.tasks` task, with or without nowcasting."""

    task: str = "cnn-digits-16"
    seed: int = 0
    data_seed: int = 0
    steps: int = 1000
    eval_every: int = 10
    lr: float | None = None  # AdamW learning rate; None: the task's own (nino.tasks)
    period: int | None = None  # NiNo: calls between nowcasts; None: ctx x the checkpoint's snapshot_every
    ctx: int = 5
    ckpt: str | None = None  # NiNo checkpoint; None: the one shipped in nino/checkpoints/
    guard_factor: float | None = (
        1.0  # keep a jump only if its held-out loss <= this x the base run's (null: off)
    )
    check_after: int | None = (
        None  # steps from a jump to its check; None: half a snapshot interval; 0: at once
    )
    train_curve: bool = (
        False  # also log the loss on the whole training split at each evaluation (split "train")
    )
    checkpoint_every: int = 100  # steps between resumable checkpoints (checkpoints/last; and at the end)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more NiNo(...) keyword arguments

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ValueError(f"task must be one of {', '.join(task_names())}; got {self.task!r}")
        for name in ("steps", "eval_every", "checkpoint_every", "period", "ctx", "lr", "guard_factor"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):  # NaN fails both
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.check_after is not None and not (isinstance(self.check_after, int) and self.check_after >= 0):
            raise ValueError(f"check_after must be an integer >= 0, got {self.check_after}")
        if self.period is not None and self.period % self.ctx:
            raise ValueError(f"period ({self.period}) must be a multiple of ctx ({self.ctx})")
        unknown = sorted(set(self.extra) - set(extra_keys()))
        if unknown:
            raise ValueError(
                f"unknown key extra.{unknown[0]}; NiNo options settable there: {', '.join(extra_keys())}"
            )


def extra_keys() -> list[str]:
    """NiNo(...) keyword arguments that `extra` may set (the rest come from the config's own fields)."""
    from .optim import NiNo

    own = {"self", "base_opt", "model", "ckpt", "period", "max_steps", "ctx", "guard_factor", "check_after"}
    own |= {"holdout", "nino_model"}
    return [name for name in inspect.signature(NiNo.__init__).parameters if name not in own]


@dataclass
class RunResult:
    optimizer: str
    records: list[dict[str, Any]]  # {"step", "split": "val", "loss", metric}
    train_seconds: float  # optimisation only (evaluation excluded)
    nowcast_seconds: float  # the nowcasts proper: graph features, the NiNo forward, writing the parameters
    nowcasts: list[dict[str, Any]]  # the wrapper's history (step, k, loss_before, loss_after, accepted)
    period: int | None = None  # the NiNo run's period (None for AdamW)
    final_train_loss: float | None = None  # mean loss over the whole training split after the last step
    check_seconds: float = 0.0  # the jump checks (held-out evaluations, shadow steps, copies) and the watch
    stopped_at: int | None = None  # the step at which the over-fitting stop ended nowcasting (None: never)

    def val_losses(self) -> list[tuple[int, float]]:
        return self.losses("val")

    def losses(self, split: str = "val") -> list[tuple[int, float]]:
        """(step, loss) of every evaluation on `split` ("val", or "train" with `train_curve`)."""
        return [(r["step"], r["loss"]) for r in self.records if r["split"] == split]

    @property
    def nowcast_share(self) -> float:
        return self.nowcast_seconds / self.train_seconds if self.train_seconds else 0.0

    @property
    def check_share(self) -> float:
        return self.check_seconds / self.train_seconds if self.train_seconds else 0.0


def make_optimizer(cfg: TrainRunConfig, name: str, model: torch.nn.Module, base: torch.optim.Optimizer):
    """`base` itself (adamw) or NiNo wrapping it (nino)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{name}'; choose from {', '.join(OPTIMIZERS)}")
    if name == "adamw":
        return base
    from .optim import NiNo

    return NiNo(base_opt=base, model=model, ckpt=cfg.ckpt, period=cfg.period, max_steps=cfg.steps,
                ctx=cfg.ctx, guard_factor=cfg.guard_factor, check_after=cfg.check_after, **cfg.extra)  # fmt: skip


def run(
    cfg: TrainRunConfig, optimizer: str = "adamw", output_dir: str | Path | None = None, resume: bool = False
) -> RunResult:
    """Train `cfg.task` for `cfg.steps` optimizer calls; evaluate on validation every `eval_every` steps.

    NiNo's jumps are checked on the task's held-out split (by default `check_after` steps later, against a
    shadow AdamW run from the pre-jump state on the same batches); a refused jump is rolled back to the base
    run, so when every jump is refused the run equals plain AdamW's exactly (same init, batches and updates).

    With `output_dir`, every `checkpoint_every` steps (and at the end) `checkpoints/last` gets the weights, the
    optimizer's state (NiNo's included), the step and the RNG states; `resume` continues from there, bitwise as
    if the run had not stopped (without a checkpoint, it starts over).
    """
    from .runstate import has_checkpoint, misfit, resume_from_last, save_last

    task = build_task(cfg.task, cfg.seed, cfg.data_seed)
    model = task.model
    base = task.optimizer()
    if cfg.lr is not None:
        for group in base.param_groups:
            group["lr"] = cfg.lr
    opt = make_optimizer(cfg, optimizer, model, base)
    log = MetricsLog(Path(output_dir or ".") / "metrics.jsonl", enabled=output_dir is not None)
    train_split = Batches(task.train.inputs, task.train.targets, 256, shuffle=False)
    wrapped = optimizer == "nino"
    if wrapped:
        opt.holdout = task.holdout_loss  # the jumps are checked on the held-out 1/12 of the training split
    done, train_seconds = 0, 0.0
    if resume and output_dir is not None and has_checkpoint(output_dir):
        state = resume_from_last(output_dir, model, {"optimizer": optimizer})
        try:
            opt.load_state_dict(state["optimizer"])
            done, train_seconds = int(state["step"]), float(state["train_seconds"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise misfit(output_dir, exc) from None
        log.truncate_after(done)
    else:
        if resume and output_dir is not None:
            log.truncate_after(-1)  # what an attempt stopped before its first checkpoint logged
        log.log(0, "val", **task.evaluate())
        if cfg.train_curve:
            log.log(0, "train", **evaluate(task, model, train_split))
    batches = task.train.forever(skip=done)  # one batch per step
    model.train()
    bar = tqdm(range(done + 1, cfg.steps + 1), desc=f"{cfg.task} {optimizer}", disable=not cfg.progress,
               initial=done, total=cfg.steps)  # fmt: skip
    for step in bar:
        started = time.process_time()
        batch = next(batches)

        def closure(batch=batch, step=step) -> torch.Tensor:
            opt.zero_grad()
            loss = task.loss_fn(model, batch)
            _check_finite(loss.item(), "training loss", step, cfg, optimizer)
            loss.backward()
            return loss

        opt.step(closure)  # NiNo calls it only when it needs gradients (not on a kept jump)
        train_seconds += time.process_time() - started
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = task.evaluate()
            _check_finite(metrics["loss"], "validation loss", step, cfg, optimizer)
            log.log(step, "val", **metrics)
            if cfg.train_curve:
                log.log(step, "train", **evaluate(task, model, train_split))
        if output_dir is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            state = {"step": step, "optimizer": opt.state_dict(), "train_seconds": train_seconds}
            save_last(output_dir, model, state, {"optimizer": optimizer, "step": step})
    history = list(getattr(opt, "history", [])) if wrapped else []
    period = opt.period if wrapped else None
    nowcast_seconds = sum(r["seconds"] for r in history)
    check_seconds = opt.check_seconds if wrapped else 0.0  # the checks and the over-fitting watch
    final_train = evaluate(task, model, train_split)["loss"]
    return RunResult(
        optimizer,
        log.records,
        train_seconds,
        nowcast_seconds,
        history,
        period,
        final_train,
        check_seconds,
        opt.stopped_at if wrapped else None,
    )


def _check_finite(value: float, what: str, step: int, cfg: TrainRunConfig, optimizer: str) -> None:
    if not math.isfinite(value):
        lr = "the task's default" if cfg.lr is None else cfg.lr
        raise TrainingError(
            f"{cfg.task} ({optimizer}): {what} is {value} at step {step}; training stopped (lr {lr})"
        )


def steps_to_reach(result: RunResult, target: float, split: str = "val") -> int | None:
    """First evaluated step whose loss on `split` is <= target (None if never)."""
    for step, loss in result.losses(split):
        if step > 0 and loss <= target:
            return step
    return None


def steps_ratio(method: RunResult, baseline: RunResult, target: float, split: str = "val") -> float | None:
    """First step at which `method` reaches `target` / the first step at which `baseline` does (both counted
    the same way; < 1: the method is faster). None when either never reaches it."""
    ours, theirs = steps_to_reach(method, target, split), steps_to_reach(baseline, target, split)
    return ours / theirs if ours is not None and theirs is not None else None


def plot_compare(results: list[RunResult], path: str | Path, title: str = "") -> Path:
    """Validation-loss curves of several runs in one PNG, with nowcast steps marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        steps, losses = zip(*result.val_losses())
        label = "AdamW + NiNo" if result.optimizer == "nino" else "AdamW"
        ax.plot(steps, losses, label=label)
        for record in result.nowcasts:
            ax.axvline(record.get("step", 0), color="gray", alpha=0.2, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
