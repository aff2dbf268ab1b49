"""`NiNo`: wrap any torch optimizer; every `period` calls, jump the parameters to NiNo's nowcast (spec A.8).

Call i (1-based) of `step()`: when i is a multiple of period / ctx, the parameters are recorded *before* any
update of that call; when i is a multiple of `period` and the ctx snapshots of this period are there, the
parameters are replaced by the nowcast for horizon k = k_schedule(max_steps, period)[(i - 1) // period] and the
base optimizer does not step (its state - Adam moments, step counts - is left exactly as it is). So every
period brings period - 1 base updates and one jump; `need_grads` is False exactly on the jump calls, so a
training loop can skip forward/backward there (the seed README's loop shape).

A prediction with NaN/Inf is rejected with a warning and training goes on. Each jump is checked (logged and
kept in `history`); `guard_factor=None` keeps every jump, as the reference does. Two checks:

- **Delayed** (the default when a `holdout` loss and a base optimizer are given): the jump is taken, and for the
  next `check_after` calls (default half a snapshot interval) the base optimizer also trains a shadow copy of
  the parameters from where it would have been without the jump, on the same batches (`step(closure)` with the
  usual gradient closure). Then the held-out losses of both branches are compared and the run continues on the
  jumped branch only if its loss is at most `guard_factor` x the shadow's; otherwise the shadow (parameters and
  optimizer state) replaces it. So far jumps that first spike the loss and then settle lower are kept, and a run
  whose every jump is rolled back equals the base optimizer's run bitwise. Cost: one copy of the parameters and
  of the base optimizer's state during the window, check_after + 1 extra base steps and two held-out
  evaluations per jump. No jump is made whose window would end after `max_steps`.
- **Over-fitting stop** (with either check, when a `holdout` loss is given): the held-out loss is measured
  at every snapshot; once it exceeds its lowest value so far by more than `overfit_tolerance` (default 0: any
  rise), nowcasting stops for good and the base optimizer trains alone to the end. Past that point a jump only
  moves the run further along a curve whose held-out loss rises: it trains faster and ends worse on held-out
  data, which no check a few steps after the jump sees (the jumped run still beats its shadow there). A kept
  jump restarts the lowest value at its checked loss (a far jump may first spike the loss). Cost: one
  held-out evaluation per snapshot until the stop.
- **Immediate** (`check_after=0`, or no `holdout`): the loss right before and right after the jump (the
  `holdout` loss, else the closure's value) is compared, and a jump whose loss grows by more than
  `guard_factor` is undone; with a `holdout`, the base step the jump replaced is then made with the closure.
  This refuses far jumps that spike the loss before paying off (the published checkpoint's on conv nets).

`NiNoCallback` drives the same machinery from learngene-core's Trainer.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_core.errors import ConfigError, ModelError, TrainingError

from .checkpoint import load_nino
from .graph import build_graph, flatten_params, write_params
from .model import PAPER_SNAPSHOT_EVERY, NiNoNet, WNNPlus
from .normalize import denormalize, normalize_per_tensor
from .schedule import k_schedule

__all__ = ["NiNo", "NiNoCallback"]

logger = logging.getLogger("nino")

Closure = Callable[[], Any]


class NiNo(torch.optim.Optimizer):
    """Nowcasting wrapper around `base_opt` (A.8). A torch Optimizer: LR schedulers and accelerate accept it.

    Args:
        base_opt: the optimizer doing the ordinary steps (None: only nowcasts, e.g. offline or via a callback).
        model: the trained network (or call `set_model` later); its neural graph is built once.
        ckpt: NiNo checkpoint: a path, or a name - "nino-no-posw" / "nino-mlp" (the authors' published
            checkpoints, downloaded once; see `nino.published`) or "nino-cpu"; None: the shipped checkpoint.
        period: calls between nowcasts; snapshots every period / ctx calls. None (default): ctx x the NiNo
            network's `snapshot_every`, the spacing it was meta-trained on (1000 for the official
            checkpoints, 100 for the shipped one). Another spacing logs a warning: its horizons are then
            in the wrong unit.
        max_steps: planned training length; it sets the horizon schedule (A.7).
        ctx: number of past states NiNo reads (must match the NiNo network).
        nino_model: an already built NiNoNet/WNNPlus (then `ckpt` is ignored).
        guard_factor: keep a jump only if its checked loss is at most guard_factor x the reference (the base
            optimizer's shadow for the delayed check, the loss before the jump for the immediate one); default
            1.0; None: keep every jump.
        holdout: `() -> float`, the loss of the current parameters on held-out data, used by the checks.
            Without it the immediate check measures the closure's value (no check without a closure).
        check_after: base steps between a jump and its delayed check (0: immediate check). None (default):
            snapshot_every // 2 with a holdout and a base optimizer, else 0. Must be < snapshot_every.
        overfit_tolerance: with a `holdout` and a guard, nowcasting stops for good once the held-out loss
            (measured at every snapshot) exceeds its lowest value so far by more than this fraction;
            default 0.0 (any rise); None: never stop.
        upd_scale: multiplies the predicted change in normalised space (1.0 = as predicted).
        power: exponent of the horizon schedule.
        max_k: opt-in cap on the schedule's horizons (None: the spec's schedule unchanged), e.g. to avoid
            the far early jumps of a weak checkpoint.
        device: where the NiNo network runs (states stay on the CPU).
    """

    def __init__(
        self,
        base_opt: torch.optim.Optimizer | None = None,
        model: nn.Module | None = None,
        ckpt: str | Path | None = None,
        period: int | None = None,
        max_steps: int = 10000,
        ctx: int = 5,
        nino_model: NiNoNet | WNNPlus | None = None,
        guard_factor: float | None = 1.0,
        holdout: Callable[[], float] | None = None,
        check_after: int | None = None,
        overfit_tolerance: float | None = 0.0,
        upd_scale: float = 1.0,
        power: float = 2.0,
        max_k: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        # deliberately not Optimizer.__init__: parameter groups and state belong to the base optimizer
        for hooks in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            setattr(self, hooks, OrderedDict())
        if not isinstance(ctx, int) or ctx < 1:
            raise ConfigError(f"ctx must be a positive integer, got {ctx}")
        if period is not None and (not isinstance(period, int) or period < ctx or period % ctx):
            raise ConfigError(f"period ({period}) must be a positive multiple of ctx ({ctx})")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a positive integer, got {max_steps}")
        if guard_factor is not None and not (math.isfinite(guard_factor) and guard_factor > 0):
            raise ConfigError(f"guard_factor must be > 0, got {guard_factor}")
        for name, value in (("upd_scale", upd_scale), ("power", power)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        if check_after is not None and (not isinstance(check_after, int) or check_after < 0):
            raise ConfigError(f"check_after must be an integer >= 0 or None, got {check_after}")
        if overfit_tolerance is not None and not (
            isinstance(overfit_tolerance, (int, float))
            and math.isfinite(overfit_tolerance)
            and overfit_tolerance >= 0
        ):
            raise ConfigError(
                f"overfit_tolerance must be a finite number >= 0 or None, got {overfit_tolerance}"
            )
        if max_k is not None and (not isinstance(max_k, int) or max_k < 1):
            raise ConfigError(f"max_k must be a positive integer or None, got {max_k}")
        net = nino_model if nino_model is not None else load_nino(ckpt)
        if not isinstance(net, (NiNoNet, WNNPlus)):
            raise ModelError(f"nino_model must be a NiNoNet or WNNPlus, got {type(net).__name__}")
        if net.ctx != ctx:
            raise ConfigError(f"ctx={ctx} but the NiNo network reads {net.ctx} past states")
        trained_every = int(getattr(net, "snapshot_every", PAPER_SNAPSHOT_EVERY))
        if period is None:
            period = ctx * trained_every
        elif period // ctx != trained_every:
            logger.warning(
                "NiNo period=%d takes a snapshot every %d steps, but this NiNo network was meta-trained on "
                "states %d steps apart: its horizons are in the wrong unit; use period=%d (or period=None)",
                period,
                period // ctx,
                trained_every,
                ctx * trained_every,
            )
        self.base_opt = base_opt
        self.period, self.ctx, self.max_steps = period, ctx, max_steps
        self.snapshot_every = period // ctx
        if check_after is not None and check_after >= self.snapshot_every:
            raise ConfigError(
                f"check_after ({check_after}) must be below the snapshot spacing ({self.snapshot_every}): the "
                "check must end before the next period's first snapshot"
            )
        self.guard_factor, self.upd_scale = guard_factor, float(upd_scale)
        self.holdout = holdout
        self._check_after = check_after
        self._trial: _Trial | None = None  # the open delayed check, if any
        self.overfit_tolerance = overfit_tolerance
        self.best_holdout: float | None = (
            None  # the lowest held-out loss at a snapshot (restarted by a kept jump)
        )
        self.stopped_at: int | None = None  # the call at which the over-fitting stop ended nowcasting
        self.watch_seconds = 0.0  # CPU time of the held-out evaluations at snapshots
        self.device = torch.device(device)
        self.nino = net.to(self.device).eval().requires_grad_(False)
        schedule = k_schedule(max_steps, period, horizon=net.horizon, power=power)
        self.max_k = max_k
        self.schedule = schedule if max_k is None else [min(k, max_k) for k in schedule]
        self.step_idx = 0  # completed calls of step()
        self.states: list[torch.Tensor] = []
        self.history: list[dict[str, Any]] = []
        self.model: nn.Module | None = None
        self.graph = None
        self._frozen: torch.Tensor | None = None  # [P] True where a parameter has requires_grad=False
        if model is not None:
            self.set_model(model)

    # ------------------------------------------------------------------------------------------ torch API
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.base_opt.param_groups if self.base_opt is not None else []

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        if self.base_opt is not None:
            self.base_opt.param_groups = groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.base_opt.state if self.base_opt is not None else {}

    @state.setter
    def state(self, value: Any) -> None:
        if self.base_opt is not None:
            self.base_opt.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.base_opt.defaults if self.base_opt is not None else {}

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        if self.base_opt is not None:
            self.base_opt.defaults = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.base_opt is None:
            raise ConfigError("NiNo has no base optimizer to add a parameter group to")
        self.base_opt.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.base_opt is not None:
            self.base_opt.zero_grad(set_to_none=set_to_none)
        elif self.model is not None:
            self.model.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus a 'nino' entry: call count, this period's snapshots, the jump history,
        the over-fitting stop's state and, inside a delayed check's window, the shadow run (its parameters and
        base-optimizer state), so a run resumed there finishes the check exactly as the uninterrupted one."""
        base = self.base_opt.state_dict() if self.base_opt is not None else {}
        mine = {
            "step_idx": self.step_idx,
            "states": list(self.states),
            "history": copy.deepcopy(self.history),
            "best_holdout": self.best_holdout,
            "stopped_at": self.stopped_at,
        }
        if self._trial is not None:
            self._swap(self._trial.shadow)
            try:
                shadow = {
                    "params": [p.detach().clone() for p in self.model.parameters()],
                    "optimizer": copy.deepcopy(self.base_opt.state_dict()),
                }
            finally:
                self._swap(self._trial.shadow)
            mine["trial"] = {**shadow, "remaining": self._trial.remaining}
        return {**base, "nino": mine}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        mine = state_dict.pop("nino", None)
        trial = mine.get("trial") if mine is not None else None
        shadow_state = None
        if trial is not None:
            if self.base_opt is None or self.model is None:
                raise ConfigError(
                    "this state was saved inside a delayed check: it needs a base optimizer and a model"
                )
            self.base_opt.load_state_dict(
                trial["optimizer"]
            )  # keyed by this run's parameters, then set aside
            shadow_state = self.base_opt.state
        if self.base_opt is not None:
            self.base_opt.load_state_dict(state_dict)
        if mine is not None:
            self.step_idx = int(mine["step_idx"])
            self.states = [s.detach().cpu().float() for s in mine["states"]]
            self.history = copy.deepcopy(mine.get("history", []))
            self.best_holdout = mine.get("best_holdout")
            self.stopped_at = mine.get("stopped_at")
        self._trial = None
        if trial is not None:
            params = [
                saved.to(p.device, p.dtype).clone()
                for saved, p in zip(trial["params"], self.model.parameters())
            ]
            self._trial = _Trial(
                _Branch(params, shadow_state), self.history[-1], remaining=int(trial["remaining"])
            )

    def __repr__(self) -> str:
        base = type(self.base_opt).__name__ if self.base_opt is not None else None
        return (
            f"NiNo(base_opt={base}, nino={type(self.nino).__name__}, period={self.period}, ctx={self.ctx}, "
            f"max_steps={self.max_steps}, step_idx={self.step_idx})"
        )

    # ------------------------------------------------------------------------------------------ NiNo
    def set_model(self, model: nn.Module) -> None:
        """Attach the trained network: build its neural graph (unsupported modules raise ModelError)."""
        graph = build_graph(model)
        if graph.max_feat_size > self.nino.max_feat_size:
            raise ModelError(
                f"the model has {graph.max_feat_size} spatial slots per edge (e.g. a large conv kernel); "
                f"this NiNo network handles at most {self.nino.max_feat_size}"
            )
        self.model, self.graph = model, graph
        frozen = [not p.requires_grad for p in model.parameters()]
        sizes = torch.tensor(graph.param_sizes)
        self._frozen = torch.repeat_interleave(torch.tensor(frozen), sizes) if any(frozen) else None
        self.states = []

    @property
    def check_after(self) -> int:
        """Base steps between a jump and its delayed check; 0 means the immediate check."""
        if self._check_after is not None:
            return self._check_after
        if self.holdout is None or self.base_opt is None or self.guard_factor is None:
            return 0
        return max(1, self.snapshot_every // 2)

    @property
    def need_grads(self) -> bool:
        """False exactly when the next `step()` is a nowcast (no base update, gradients unused). Always True
        while the over-fitting stop watches: its measurement at that call may turn it into a base step."""
        if self._watching():
            return True
        return not (len(self.states) == self.ctx - 1 and (self.step_idx + 1) % self.period == 0)

    def horizon(self, step_idx: int | None = None) -> int:
        """k of the nowcast made at call `step_idx + 1` (default: the next call)."""
        idx = self.step_idx if step_idx is None else step_idx
        return self.schedule[min(len(self.schedule) - 1, idx // self.period)]

    @torch.no_grad()
    def predict(self, states: list[torch.Tensor] | torch.Tensor, k: int) -> torch.Tensor:
        """Nowcast flat parameters [P] for horizon k from ctx flat states (oldest first); writes nothing."""
        if self.graph is None:
            raise ModelError("NiNo has no model: pass model=... or call set_model(model) first")
        x = states if isinstance(states, torch.Tensor) else torch.stack(list(states), dim=1)
        if x.shape != (self.graph.num_params, self.ctx):
            raise ModelError(f"states must be [{self.graph.num_params}, {self.ctx}], got {tuple(x.shape)}")
        x = x.to("cpu", torch.float32)
        normed, mu, sigma = normalize_per_tensor(x, self.graph.param_sizes)
        attr = self.graph.edge_features(normed, self.graph.max_feat_size)
        if isinstance(self.nino, NiNoNet):
            lpe = self.graph.lpe(self.nino.lpe_dim)
        else:  # WNN+ reads no node features
            lpe = torch.zeros(self.graph.num_nodes, 1)
        data = self.graph.to_pyg(attr, lpe=lpe).to(self.device)
        out = self.nino(data, k).float().cpu()  # [E, feat] normalised, residual added
        pred = self.graph.params_from_edges(out)
        if self.upd_scale != 1.0:
            last = normed[:, -1]
            pred = last + self.upd_scale * (pred - last)
        pred = denormalize(pred, mu, sigma)
        if self._frozen is not None:
            pred = torch.where(self._frozen, x[:, -1], pred)
        return pred

    def step(self, closure: Closure | None = None) -> Any:
        """One call: a base-optimizer step, or (every `period` calls) a nowcast; returns the closure's loss."""
        if self.graph is None:
            raise ModelError("NiNo has no model: pass model=... or call set_model(model) first")
        call = self.step_idx + 1
        holdout_now = None
        if call % self.snapshot_every == 0 and self.stopped_at is None:
            self.states.append(flatten_params(self.model))
            holdout_now = self._watch(call)
        if self._trial is not None:
            loss = self._trial_step(closure)
        elif call % self.period == 0 and len(self.states) == self.ctx and self._room_to_check(call):
            loss = self._nowcast(closure, holdout_now)
        else:  # without a base optimizer (callback/offline use) nothing to do
            loss = self._base_step(closure)
        if call % self.period == 0:
            self.states = []  # a period never borrows snapshots from the previous one
        self.step_idx = call
        return loss

    def _base_step(self, closure: Closure | None) -> Any:
        if self.base_opt is None:
            return None
        return self.base_opt.step(closure) if closure is not None else self.base_opt.step()

    def _delayed(self) -> bool:
        return self.check_after > 0 and self.holdout is not None and self.guard_factor is not None

    def _room_to_check(self, call: int) -> bool:
        """A delayed check must end within max_steps, or the run could end on an unchecked jump."""
        return not self._delayed() or call + self.check_after <= self.max_steps

    def _measure(self, closure: Closure | None) -> float | None:
        return self._holdout_loss() if self.holdout is not None else _loss_value(closure)

    def _holdout_loss(self) -> float:
        with torch.random.fork_rng(devices=_cuda_devices(self.model)):  # the training RNG stream is untouched
            return float(self.holdout())

    def _watching(self) -> bool:
        return (
            self.holdout is not None and self.guard_factor is not None and self.overfit_tolerance is not None
        )

    def _watch(self, call: int) -> float | None:
        """At a snapshot: measure the held-out loss and stop nowcasting once it rose above its lowest value."""
        if not self._watching():
            return None
        started = time.process_time()
        loss = self._holdout_loss()
        self.watch_seconds += time.process_time() - started
        if self.best_holdout is not None and not loss <= self.best_holdout * (1 + self.overfit_tolerance):
            self.stopped_at, self.states = call, []
            logger.info(
                "held-out loss %.4f at step %d is above its lowest %.4f: the run over-fits, NiNo stops nowcasting",
                loss,
                call,
                self.best_holdout,
            )
        else:
            self.best_holdout = loss if self.best_holdout is None else min(self.best_holdout, loss)
        return loss

    @property
    def check_seconds(self) -> float:
        """CPU time of the safety machinery: the jumps' checks plus the held-out evaluations at snapshots."""
        return sum(r.get("check_seconds", 0.0) for r in self.history) + self.watch_seconds

    def _nowcast(self, closure: Closure | None, holdout_now: float | None = None) -> Any:
        started = time.process_time()
        k = self.horizon()
        if not all(bool(torch.isfinite(state).all()) for state in self.states):
            raise TrainingError(
                f"the parameters hold NaN/Inf at step {self.step_idx + 1}, before NiNo's nowcast: the base "
                "optimizer diverged (lower its learning rate)"
            )
        delayed = self._delayed()
        if delayed and closure is None:
            raise ConfigError(
                "NiNo's delayed check trains a shadow copy with the base optimizer: call step(closure) with "
                "a closure that zeroes the gradients, computes the loss and calls backward (or check_after=0)"
            )
        pred = self.predict(self.states, k)
        nowcast_seconds = time.process_time() - started
        checking = time.process_time()
        loss_before = holdout_now if holdout_now is not None else self._measure(closure)
        record: dict[str, Any] = {"step": self.step_idx + 1, "k": k, "loss_before": loss_before}
        loss = loss_before
        if not bool(torch.isfinite(pred).all()):
            warnings.warn(
                f"NiNo nowcast at step {self.step_idx + 1} predicted NaN/Inf values; kept the current "
                "parameters and training goes on",
                RuntimeWarning,
                stacklevel=3,
            )
            record.update(loss_after=None, accepted=False, reason="non-finite prediction")
            if self.holdout is not None:  # the closure is a gradient closure: make this call's base step
                loss = self._base_step(closure)
        elif delayed:
            jump_state = _clone_state(self.base_opt.state)  # the jump leaves the base state as it is (A.8)
            loss = self.base_opt.step(closure)  # the shadow: this call's base step, without the jump
            shadow = _Branch([p.detach().clone() for p in self.model.parameters()], self.base_opt.state)
            self.base_opt.state = jump_state
            write_params(self.model, pred)
            record.update(loss_after=None, accepted=None, reason="pending")
            self._trial = _Trial(shadow, record, remaining=self.check_after)
        else:
            guarded = self.guard_factor is not None and loss_before is not None
            backup = [p.detach().clone() for p in self.model.parameters()] if guarded else None
            write_params(self.model, pred)
            loss_after = self._measure(closure)
            accepted, reason = True, None
            if backup is not None and not _within(loss_after, loss_before, self.guard_factor):
                with torch.no_grad():
                    for p, old in zip(self.model.parameters(), backup):
                        p.copy_(old)
                accepted, reason = False, f"loss rose more than {self.guard_factor}x"
                if self.holdout is not None:  # the base step this call would have made
                    loss = self._base_step(closure)
            record.update(loss_after=loss_after, accepted=accepted, reason=reason)
        record.update(seconds=nowcast_seconds, check_seconds=time.process_time() - checking)
        self.history.append(record)
        if record["accepted"] is not None:
            self._log(record)
        return loss

    def _trial_step(self, closure: Closure | None) -> Any:
        """A call inside a delayed check's window: the jumped run and its shadow both take this base step."""
        if closure is None:
            raise ConfigError(
                "NiNo's delayed check is open: call step(closure) with a gradient closure until it ends"
            )
        trial = self._trial
        with torch.random.fork_rng(devices=_cuda_devices(self.model)):  # the shadow gets the real RNG stream
            loss = self.base_opt.step(closure)
        started = time.process_time()
        self._swap(trial.shadow)
        self.base_opt.step(closure)
        trial.remaining -= 1
        if trial.remaining == 0:
            self._end_trial(trial)  # leaves the winning branch in place
        else:
            self._swap(trial.shadow)
        trial.record["check_seconds"] += time.process_time() - started
        return loss

    def _end_trial(self, trial: _Trial) -> None:
        """Called with the shadow in place: compare held-out losses, keep the better branch."""
        record = trial.record
        base_loss = self._holdout_loss()
        self._swap(trial.shadow)  # the jumped run
        loss_after = self._holdout_loss()
        accepted = _within(loss_after, base_loss, self.guard_factor)
        if accepted and self.best_holdout is not None:
            self.best_holdout = loss_after  # the over-fitting watch restarts on the jumped run's curve
        if not accepted:
            self._swap(trial.shadow)
        record.update(
            loss_after=loss_after,
            loss_base=base_loss,
            checked_at=self.step_idx + 1,
            accepted=accepted,
            reason=None
            if accepted
            else f"{self.guard_factor}x the base run's loss after {self.check_after} steps",
        )
        self._trial = None
        self._log(record)

    def _swap(self, branch: _Branch) -> None:
        """Exchange the model's parameters and the base optimizer's state with `branch`'s (no copies)."""
        for i, p in enumerate(self.model.parameters()):
            p.data, branch.params[i] = branch.params[i], p.data
        self.base_opt.state, branch.state = branch.state, self.base_opt.state

    def _log(self, record: dict[str, Any]) -> None:
        logger.info(
            "nowcast at step %d (k=%d): loss %s -> %s, %s",
            record["step"],
            record["k"],
            _fmt(record["loss_before"]),
            _fmt(record["loss_after"]),
            "accepted" if record["accepted"] else f"rejected ({record['reason']})",
        )


@dataclass
class _Branch:
    params: list[torch.Tensor]
    state: Any  # the base optimizer's state dict {param: {name: value}}


@dataclass
class _Trial:
    shadow: _Branch  # where the base optimizer would be without the jump
    record: dict[str, Any]  # the jump's history entry, completed when the check ends
    remaining: int = field(default=0)


def _clone_state(state: Any) -> defaultdict:
    """A copy of an optimizer's per-parameter state with the same parameter keys (deepcopy would copy them)."""
    return defaultdict(dict, {p: copy.deepcopy(values) for p, values in state.items()})


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})


def _loss_value(closure: Closure | None) -> float | None:
    if closure is None:
        return None
    with torch.enable_grad():
        loss = closure()
    if isinstance(loss, torch.Tensor):
        loss = loss.detach()
    return None if loss is None else float(loss)


def _within(after: float | None, before: float, factor: float) -> bool:
    return after is not None and math.isfinite(after) and after <= factor * before


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class NiNoCallback:
    """Nowcasting inside learngene-core's Trainer through its `on_step_end` hook (no change to the loop).

    The Trainer's own optimizer makes every base step; after each one this callback advances a NiNo built with
    `base_opt=None`: snapshots after every period / ctx base steps, and after every `period` base steps the
    parameters jump to the nowcast (so a period is `period` base updates + one jump; the Trainer's optimizer
    state is never touched). `loss_fn(trainer) -> float`, if given, is the held-out loss; the default uses the
    first validation batch when there is a validation set. It drives NiNo's defaults as in `nino train`: the
    over-fitting stop (measured at every snapshot; no more jumps once it rose above its lowest value) and the
    check of each jump, here the immediate one (the loss right after the jump against the loss before it): the
    delayed check trains a shadow copy on the Trainer's batches, which its `on_step_end` hook does not see.
    Each jump is logged in metrics.jsonl as a record with split "nino".
    """

    def __init__(
        self, nino: NiNo | None = None, loss_fn: Callable[[Any], float] | None = None, **nino_kwargs
    ):
        if nino is not None and nino_kwargs:
            raise ConfigError("pass either a NiNo instance or NiNo keyword arguments, not both")
        self.nino = nino if nino is not None else NiNo(base_opt=None, **nino_kwargs)
        if self.nino.base_opt is not None:
            raise ConfigError(
                "NiNoCallback needs a NiNo with base_opt=None (the Trainer makes the base steps)"
            )
        self.loss_fn = loss_fn
        self._own_holdout = self.nino.holdout is None  # else the NiNo instance brought its own
        self._batch: Any = None

    def on_step_end(self, trainer: Any) -> None:
        nino = self.nino
        if nino.model is None:
            nino.set_model(trainer.accelerator.unwrap_model(trainer.model))
        nino.step_idx = trainer.state.step - 1  # follow the Trainer's count (also after a resume)
        n = len(nino.history)
        closure = self._closure(trainer)
        if self._own_holdout:
            nino.holdout = closure  # the held-out loss of the check and of the over-fitting stop
        nino.step(closure)
        if len(nino.history) > n:
            record = {k: v for k, v in nino.history[-1].items() if k != "step" and v is not None}
            trainer.metrics.log(trainer.state.step, "nino", **record)

    def _closure(self, trainer: Any) -> Closure | None:
        if self.loss_fn is not None:
            return lambda: self.loss_fn(trainer)
        if trainer.val_loader is None:
            return None

        @torch.no_grad()
        def closure() -> float:
            if self._batch is None:
                with torch.random.fork_rng(devices=[]):  # leave the training RNG stream untouched
                    self._batch = next(iter(trainer.val_loader))
            inputs, targets = self._batch
            was_training = trainer.model.training
            trainer.model.eval()
            loss = trainer.task.loss(trainer.task.logits(trainer.model, inputs), targets)
            trainer.model.train(was_training)
            return float(loss)

        # only evaluated on jump calls
        return closure
