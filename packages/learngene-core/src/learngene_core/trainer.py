"""The one training loop, on accelerate: read it top to bottom in `Trainer.fit`.

Methods extend it through a handful of named hooks instead of copying it:
- `loss_fn(model, inputs, targets) -> (loss, logits, parts)` replaces the task loss (e.g. distillation);
- `loss_terms`: callables `(model, inputs, targets, logits) -> {name: tensor}` added to the loss;
- `param_groups(model) -> list[dict]` chooses what is optimised and how;
- `extra_modules`: modules whose parameters are trained alongside the model (e.g. projections);
- `callbacks`: objects with any of `on_step_end(trainer)`, `on_evaluate(trainer, split, metrics)`,
  `on_train_end(trainer)`;
- `eval_fn(trainer, dataloader, split) -> metrics` replaces the default evaluation.
Before step 1 the loss and every loss term run once on a training batch (eval mode, no gradients; see
`Trainer._check_model_fits_data`): a `loss_fn` or term that keeps state between calls or needs gradients offers
`probe` with its own arguments (a `loss_fn`'s returns what the loss returns).
A `loss_fn`, loss term or callback that keeps state across steps (a meta-network and its optimizer, running
sums) defines `checkpoint_state() -> dict` and `restore_checkpoint_state(state)`: that state goes into every
`checkpoints/last`, so a resumed run continues it exactly. One whose own loop can diverge (a meta-network with
its own learning rate) defines `divergence_hint() -> str | None`: asked when the loss or a parameter becomes
non-finite, it names the config key to change instead of the default `train.lr` hint.

The same code runs on CPU, one GPU or many GPUs (`accelerate launch`), with mixed precision from the config.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, default_collate
from tqdm.auto import tqdm

from .checkpoint import (
    LAST_DIR,
    STATE_NAME,
    load_model_weights,
    load_training_state,
    read_metadata,
    recover_dir,
    rng_state,
    save_model_dir,
    save_training_checkpoint,
    set_rng_state,
    trainable_state_dict,
)
from .config import TrainConfig
from .errors import MISMATCH_ERRORS, CheckpointError, DataError, ModelError, TrainingError, first_line
from .metrics import METRICS_NAME, PLOT_NAME, MetricsLog, plot_metrics
from .tasks import Task
from .threads import thread_record

LossFn = Callable[[nn.Module, Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]
LossTerm = Callable[[nn.Module, Any, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]

BEST_DIR = "best"
FINAL_DIR = "final"


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed is `epoch` when batch_in_epoch == 0
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best: float | None = None  # best validation value of `best_metric`


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases, norms, embeddings' 1-D params and tokens are not decayed."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (
            no_decay if param.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "reg_token")) else decay
        ).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """Linear warmup, then cosine (to lr * min_lr_ratio), linear decay or constant."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        if cfg.scheduler == "cosine":
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.scheduler == "linear":
            return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_not_empty(loaders: dict[str, DataLoader | None]) -> None:
    """One DataError naming the split when a loader has no batches (e.g. a task whose classes got no
    validation samples), instead of a failure deep inside the first evaluation."""
    for split, loader in loaders.items():
        try:
            empty = loader is not None and len(loader) == 0
        except TypeError:  # an iterable dataset without a length
            empty = False
        if empty:
            hint = "; give the dataset one (e.g. data.options.val_fraction=0.1)" if split == "val" else ""
            raise DataError(f"the {split} split is empty (0 batches){hint}")


def _shape(inputs: Any) -> tuple[int, ...] | str:
    return tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else "dict"


def _holds_non_finite(inputs: Any) -> bool:
    """Whether a batch's inputs (a tensor, or tensors in dicts, lists and tuples) hold NaN or infinite values."""
    if isinstance(inputs, torch.Tensor):
        return inputs.is_floating_point() and not bool(torch.isfinite(inputs).all())
    if isinstance(inputs, dict):
        return any(_holds_non_finite(v) for v in inputs.values())
    if isinstance(inputs, (list, tuple)):
        return any(_holds_non_finite(v) for v in inputs)
    return False


class Trainer:
    """Trains `model` on `train_loader` with the settings of a `TrainConfig`, writing to `output_dir`."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        task: Task,
        train_loader: DataLoader,
        val_loader: DataLoader | None = None,
        test_loader: DataLoader | None = None,
        *,
        output_dir: str | Path,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        loss_terms: Sequence[LossTerm] = (),
        param_groups: Callable[[nn.Module], list[dict[str, Any]]] | None = None,
        extra_modules: Iterable[nn.Module] = (),
        callbacks: Sequence[Any] = (),
        eval_fn: Callable[[Trainer, DataLoader, str], dict[str, float]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.task = task
        self.output_dir = Path(output_dir)
        self.seed = seed
        self.loss_fn = loss_fn
        self.loss_terms = list(loss_terms)
        self.callbacks = list(callbacks)
        self.eval_fn = eval_fn
        self.metadata = {
            "threads": thread_record(),
            **(metadata or {}),
        }  # in every checkpoint's metadata.json
        self.state = TrainState()
        self._pending_rng: dict[str, Any] | None = None  # RNG state of a resumed checkpoint, set in fit()
        self._warned_non_finite_val = False

        set_seed(seed)
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum_steps,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
        )
        extra = nn.ModuleList(extra_modules)
        groups = param_groups(model) if param_groups else default_param_groups(model, cfg.weight_decay)
        groups += default_param_groups(extra, cfg.weight_decay)
        optimizer = build_optimizer(cfg, groups)
        loaders = (train_loader, val_loader, test_loader)
        _check_not_empty(dict(zip(("train", "val", "test"), loaders)))
        self._raw_train_loader = train_loader
        modules = [model, extra] if any(True for _ in extra.parameters()) else [model]
        prepared = self.accelerator.prepare(*modules, optimizer, *[dl for dl in loaders if dl is not None])
        self.model = prepared[0]
        self.extra_modules = prepared[1] if len(modules) > 1 else extra
        self.optimizer = prepared[len(modules)]
        prepared_loaders = prepared[len(modules) + 1 :]
        it = iter(prepared_loaders)
        self.train_loader, self.val_loader, self.test_loader = (
            next(it) if dl is not None else None for dl in loaders
        )

        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.grad_accum_steps)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        self.metrics = MetricsLog(self.output_dir / METRICS_NAME, enabled=self.accelerator.is_main_process)

    # ------------------------------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to `total_steps`, evaluating and checkpointing on schedule; returns the final test metrics."""
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            for name in (LAST_DIR, BEST_DIR, FINAL_DIR):  # what a killed save left behind
                recover_dir(self.output_dir / name)
        acc.wait_for_everyone()
        if resume and (self.output_dir / LAST_DIR).is_dir():
            self._resume()
        else:
            self._start_fresh(resume)
        self._check_model_fits_data()
        # gradients left on the parameters by earlier work (another optimizer, a previous stage) must not join the
        # first step: a run continued in a new process has none
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc="train",
            disable=not (cfg.progress and acc.is_local_main_process),
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # keep CI logs short
            dynamic_ncols=True,
        )
        running, running_count, running_parts = 0.0, 0, {}  # sums over the steps since the last log line
        while self.state.step < self.total_steps:
            self.train_loader.set_epoch(self.state.epoch)
            batches = self.train_loader
            if self.state.batch_in_epoch:
                batches = acc.skip_first_batches(self.train_loader, self.state.batch_in_epoch)
            elif self._pending_rng is not None:  # resumed at an epoch boundary
                self._restore_pending_rng()
            self.model.train()
            for inputs, targets in batches:
                if self._pending_rng is not None:
                    # resumed mid-epoch: starting the loader drew a seed from the global RNG, which the
                    # uninterrupted run did before its checkpoint; restore the saved state after that draw
                    self._restore_pending_rng()
                with acc.accumulate(self.model, self.extra_modules):
                    loss, value, parts = self._training_loss(inputs, targets)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(self._trained_parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.state.batch_in_epoch += 1
                running += value
                running_count += 1
                for name, part in parts.items():
                    running_parts[name] = running_parts.get(name, 0.0) + part.detach().float()
                if not acc.sync_gradients:
                    continue
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
                self.scheduler.step()
                self.state.step += 1
                bar.update(1)
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_end"):
                        cb.on_step_end(self)
                step = self.state.step
                if step % cfg.log_every == 0 or step == self.total_steps:
                    mean_parts = {name: total / running_count for name, total in running_parts.items()}
                    self._log_train(running / running_count, lr, mean_parts, bar)  # loss = sum of its parts
                    running, running_count, running_parts = 0.0, 0, {}
                end_of_epoch = self.state.batch_in_epoch == len(self.train_loader)
                if end_of_epoch:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
                done = step >= self.total_steps
                if (step % cfg.eval_every == 0 if cfg.eval_every else end_of_epoch) or done:
                    self._validate()
                due = step % cfg.checkpoint_every == 0 if cfg.checkpoint_every else end_of_epoch
                if due or done:
                    self._save_last()
                if done:
                    # leaving an accelerate loader early: unregister it from accelerate's state as it would
                    if hasattr(batches, "end"):
                        batches.end()
                    break
        bar.close()
        if self._pending_rng is not None:  # resumed a finished run: leave RNG and sampler as it left them
            self._restore_pending_rng()
            # the sampler's epoch as training leaves it (a finished epoch moved it on), for any use of the loader after
            self.train_loader.set_epoch(self.state.epoch)
        return self._finish()

    def _training_loss(
        self, inputs: Any, targets: torch.Tensor
    ) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        """The step's loss tensor, its value, and its named parts (for the metrics log)."""
        if self.loss_fn is not None:
            loss, logits, parts = self.loss_fn(self.model, inputs, targets)
        else:
            logits = self.task.logits(self.model, inputs)
            loss = self.task.loss(logits, targets, self.cfg.label_smoothing)
            parts = {}
        for term in self.loss_terms:
            extra = term(self.model, inputs, targets, logits)
            parts = {**parts, **extra}
            loss = loss + sum(extra.values())
        value = loss.detach().float().item()  # the step's one host sync: logged and checked for NaN
        if not math.isfinite(value):
            bad = [name for name, part in parts.items() if not torch.isfinite(part.detach()).all()]
            culprit = f"loss part {', '.join(repr(name) for name in bad)} is not finite: " if bad else ""
            if self.state.step == 0 and not self._hook_hint():  # no optimizer step yet: not the learning rate
                source = (
                    "the training batch's inputs hold NaN or infinite values"
                    if _holds_non_finite(inputs)
                    else "the data, the initial weights or the loss itself give it"
                )
                raise TrainingError(
                    f"{culprit}loss is {value} on the first training batch, before any optimizer step (so not "
                    f"the learning rate): {source}"
                )
            raise TrainingError(
                f"{culprit}loss became {value} at step {self.state.step + 1} (epoch {self.state.epoch + 1}); the "
                f"last checkpoint is kept; {self._divergence_hint()}"
            )
        return loss, value, parts

    def _trained_parameters(self) -> list[nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _log_train(self, loss: float, lr: float, parts: dict[str, torch.Tensor], bar: tqdm) -> None:
        extra = {k: v.detach().float().item() for k, v in parts.items()}
        self.metrics.log(self.state.step, "train", epoch=self._epoch_float(), loss=loss, lr=lr, **extra)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def _epoch_float(self) -> float:
        return round(self.state.step / self.steps_per_epoch, 4)

    # ------------------------------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, loader: DataLoader | None = None, split: str = "val") -> dict[str, float]:
        """Mean loss and accuracy over `loader` (default: the validation loader), exact across processes."""
        loader = loader if loader is not None else self.val_loader
        if loader is None:
            return {}
        if self.eval_fn is not None:
            return self.eval_fn(self, loader, split)
        was_training = self.model.training
        self.model.eval()
        losses, accs = [], []
        for inputs, targets in loader:
            logits = self.task.logits(self.model, inputs)
            loss, acc = self.task.per_sample(logits, targets)
            loss, acc = self.accelerator.gather_for_metrics((loss, acc))
            losses.append(loss.float().cpu())
            accs.append(acc.float().cpu())
        self.model.train(was_training)
        loss, acc = torch.cat(losses).mean().item(), torch.cat(accs).mean().item()
        metrics = {"loss": loss, "accuracy": acc}
        if self.task.name == "causal-lm":
            metrics["perplexity"] = math.exp(min(loss, 50.0))
        return metrics

    def _validate(self) -> None:
        if self.val_loader is None:
            return
        metrics = self.evaluate(self.val_loader, "val")
        self.metrics.log(self.state.step, "val", epoch=self._epoch_float(), **metrics)
        for cb in self.callbacks:
            if hasattr(cb, "on_evaluate"):
                cb.on_evaluate(self, "val", metrics)
        value = metrics.get(self.cfg.best_metric)
        if value is None:
            return
        if not math.isfinite(value):  # never better (a NaN compares false both ways): say so once
            if not self._warned_non_finite_val and self.accelerator.is_main_process:
                print(
                    f"warning: validation {self.cfg.best_metric} is {value} at step {self.state.step}: a "
                    f"non-finite value never counts as the best, so {BEST_DIR}/ is not updated by it (not repeated)",
                    file=sys.stderr,
                )
            self._warned_non_finite_val = True
            return
        better = (
            self.state.best is None
            or not math.isfinite(self.state.best)
            or (value > self.state.best if self.cfg.best_mode == "max" else value < self.state.best)
        )
        if better:
            self.state.best = value
            self._save_model(BEST_DIR, {"split": "val", **metrics})

    # ------------------------------------------------------------------------------------------ checkpoints

    def _check_finite_parameters(self) -> None:
        """Refuse to save non-finite weights: the last good checkpoint stays the one to resume from."""
        model = self.accelerator.unwrap_model(self.model)
        for name, param in model.named_parameters():
            if param.requires_grad and not torch.isfinite(param).all():
                raise TrainingError(
                    f"parameter {name} became non-finite at step {self.state.step}; nothing saved, the last "
                    f"good checkpoint is kept; {self._divergence_hint()}"
                )

    def _divergence_hint(self) -> str:
        """What to change after a non-finite value: a hook's own hint (its loop diverged), else train.lr."""
        return self._hook_hint() or "try a lower train.lr or set train.max_grad_norm"

    def _hook_hint(self) -> str | None:
        """The divergence hint of the first loss hook that has one (its own loop diverged), else None."""
        for hook in [self.loss_fn, *self.loss_terms]:
            hint = hook.divergence_hint() if hasattr(hook, "divergence_hint") else None
            if hint:
                return hint
        return None

    def _save_model(self, name: str, metrics: dict[str, Any]) -> None:
        self._check_finite_parameters()
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            meta = {
                **self.metadata,
                "weights": self.cfg.checkpoint_weights,
                "step": self.state.step,
                "epoch": self._epoch_float(),
                "metrics": metrics,
            }
            save_model_dir(self._weights_to_save(), self.output_dir / name, meta)

    def _weights_to_save(self) -> nn.Module | dict[str, torch.Tensor]:
        model = self.accelerator.unwrap_model(self.model)
        return trainable_state_dict(model) if self.cfg.checkpoint_weights == "trainable" else model

    def _save_last(self) -> None:
        self._check_finite_parameters()
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        training_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "extra_modules": self.accelerator.unwrap_model(self.extra_modules).state_dict(),
            "rng": rng_state(),
            "train_state": asdict(self.state),
            "hooks": [hook.checkpoint_state() for hook in self._stateful_hooks()],
        }
        meta = {
            **self.metadata,
            "weights": self.cfg.checkpoint_weights,
            "train_state": asdict(self.state),
            "total_steps": self.total_steps,
        }
        save_training_checkpoint(self.output_dir / LAST_DIR, self._weights_to_save(), training_state, meta)

    def _stateful_hooks(self) -> list[Any]:
        hooks = [self.loss_fn, *self.loss_terms, *self.callbacks]
        return [hook for hook in hooks if hasattr(hook, "checkpoint_state")]

    def _restore_hooks(self, states: list[Any]) -> None:
        hooks = self._stateful_hooks()
        if len(states) != len(hooks):
            raise ValueError(f"it holds the state of {len(states)} stateful hooks, this run has {len(hooks)}")
        for hook, state in zip(hooks, states):
            hook.restore_checkpoint_state(state)

    def _start_fresh(self, resume: bool) -> None:
        """Start at step 0: in a new output dir, or over a run that stopped before its first checkpoint."""
        # resuming a run whose first checkpoint never came: its best/ is replaced by the new attempt's
        kept = (LAST_DIR, FINAL_DIR) if resume else (LAST_DIR, BEST_DIR, FINAL_DIR)
        taken = [p for p in kept if (self.output_dir / p).exists()]
        if taken:
            raise CheckpointError(
                f"output dir {self.output_dir} already holds a run ({taken[0]}); "
                "pass --resume to continue it or choose another --output-dir"
            )
        if resume:
            self.accelerator.print(f"no checkpoint in {self.output_dir / LAST_DIR} yet: starting from step 0")
        self.metrics.truncate_after(-1)  # records of the stopped attempt, if any

    def _resume(self) -> None:
        last = self.output_dir / LAST_DIR
        if not (last / STATE_NAME).is_file():
            raise CheckpointError(f"cannot resume: {last} holds no {STATE_NAME}")
        meta = read_metadata(last)
        if meta.get("total_steps") not in (None, self.total_steps):
            raise CheckpointError(
                f"cannot resume {self.output_dir}: it was planned for {meta['total_steps']} steps, "
                f"this config gives {self.total_steps}; use the same config"
            )
        partial = self.cfg.checkpoint_weights == "trainable"
        load_model_weights(self.accelerator.unwrap_model(self.model), last, partial=partial)
        state = load_training_state(last)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.accelerator.unwrap_model(self.extra_modules).load_state_dict(state["extra_modules"])
            self._restore_hooks(state.get("hooks", []))
            self._pending_rng = state["rng"]  # restored in fit(), once the data loader has started
            self.state = TrainState(**state["train_state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{last / STATE_NAME} does not fit this run ({type(exc).__name__}: {exc}); "
                "it was written by another model or version"
            ) from None
        self.metrics.truncate_after(self.state.step)
        self.accelerator.print(f"resumed from {last} at step {self.state.step}/{self.total_steps}")

    def _check_model_fits_data(self) -> None:
        """One eval-mode forward pass without gradients on a batch of two training samples, so a model/data
        mismatch (a patch larger than the image, a wrong channel count, a teacher trained on other images, a loss
        term that does not fit the logits) is one ModelError before the first step, not a traceback inside it.

        With a custom `loss_fn`, the pass goes through it (teacher and all), or through its
        `probe(model, inputs, targets)` if it has one, which returns what the loss returns: a loss that needs
        gradients or keeps state between calls must offer `probe`. Each of the `loss_terms` then runs on the
        logits (or its own `probe(model, inputs, targets, logits)`, under the same rule), and a failing term is
        named. Nothing of the run changes: every RNG is restored afterwards, and the model and the extra modules
        are back in their mode (a probed run's weights equal an unprobed one's, bit for bit).

        The probe does not check that the loss is finite: it runs in eval mode on two samples, where a loss can be
        NaN that training never sees (two causal-LM samples whose labels are all masked: 0/0) or the reverse. A
        non-finite loss on the first training batch stops the run at step 1 instead, before anything is saved,
        with a line saying that no optimizer step was taken (so not the learning rate) and whether the batch's
        inputs hold NaN or infinite values.
        """
        loader = self._raw_train_loader
        if isinstance(loader.dataset, IterableDataset) or not len(loader.dataset):  # type: ignore[arg-type]
            return
        rng = rng_state()
        modules = (self.model, self.extra_modules)
        modes = [m.training for m in modules]
        try:
            # two samples, not one: a batch-level collate (timm's Mixup) needs an even batch
            samples = [loader.dataset[i] for i in range(min(2, len(loader.dataset)))]  # type: ignore[arg-type]
            batch = (loader.collate_fn or default_collate)(samples)
            inputs, targets = send_to_device(batch, self.accelerator.device)
            for module in modules:
                module.eval()
            with torch.no_grad():
                logits = self._probe_loss(inputs, targets)
                for number, term in enumerate(self.loss_terms, 1):
                    self._probe_term(number, term, inputs, targets, logits)
        finally:
            for module, mode in zip(modules, modes):
                module.train(mode)
            set_rng_state(rng)

    def _probe_loss(self, inputs: Any, targets: torch.Tensor) -> torch.Tensor | None:
        """The loss of the check before step 1 (see `_check_model_fits_data`); returns its logits."""
        try:
            if self.loss_fn is None:
                logits = self.task.logits(self.model, inputs)
                self.task.loss(logits, targets)
            else:
                found = getattr(self.loss_fn, "probe", self.loss_fn)(self.model, inputs, targets)
                logits = found[1] if isinstance(found, tuple) else None
        except MISMATCH_ERRORS as exc:
            name = type(self.accelerator.unwrap_model(self.model)).__name__
            raise ModelError(
                f"the model ({name}) cannot run on a training batch (inputs {_shape(inputs)}): {first_line(exc)}"
            ) from None
        if self.loss_terms and logits is None:
            raise TypeError(
                f"{type(self.loss_fn).__name__}.probe must return (loss, logits, parts) for loss_terms"
            )
        return logits

    def _probe_term(
        self, number: int, term: LossTerm, inputs: Any, targets: torch.Tensor, logits: torch.Tensor
    ) -> None:
        """One loss term in the check before step 1: a term that cannot run on the batch is named."""
        name = getattr(term, "__name__", type(term).__name__)
        try:
            getattr(term, "probe", term)(self.model, inputs, targets, logits)
        except MISMATCH_ERRORS as exc:
            raise ModelError(
                f"loss term {number} ({name}) cannot run on a training batch (inputs {_shape(inputs)}, logits "
                f"{tuple(logits.shape)}): {first_line(exc)}"
            ) from None

    def _restore_pending_rng(self) -> None:
        set_rng_state(self._pending_rng)
        self._pending_rng = None

    def _finish(self) -> dict[str, float]:
        test = self.evaluate(self.test_loader, "test") if self.test_loader is not None else {}
        if test:
            self.metrics.log(self.state.step, "test", epoch=self._epoch_float(), **test)
        self._save_model(FINAL_DIR, {"split": "test", **test})
        if self.accelerator.is_main_process:
            plot_metrics(
                self.metrics.records, self.output_dir / PLOT_NAME, title=self.metadata.get("name", "")
            )
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(self)
        return test
