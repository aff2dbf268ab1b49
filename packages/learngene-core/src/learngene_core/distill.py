"""Knowledge distillation from a frozen teacher: soft KL with temperature, hard CE mix, feature matching.

`Distiller` is a `Trainer.loss_fn`:

    distiller = Distiller(teacher, task, DistillConfig(alpha=1.0, temperature=1.0))
    Trainer(student, cfg, task, ..., loss_fn=distiller, extra_modules=[distiller.projections])

loss = alpha * soft(student, teacher) + (1 - alpha) * CE(student, labels)
       + feature_weight * reduce_i MSE(student feature_i, teacher feature_i)

soft is `kl` (T^2 * KL(teacher_T || student_T), DeiT/Hinton) or `soft-ce` (mean over every logit of
-softmax(teacher/T) * log_softmax(student/T), no T^2; Learngene Pool). Feature pairs name a student and a teacher
module; forward hooks capture their outputs (a tuple output gives its first element). Each pair has its own
learnable projection (Identity for equal widths) that maps the student's feature to the teacher's width
(`project: student`) or the teacher's to the student's (`project: teacher`, Learngene Pool's transformation
matrices). `reduce` is the mean or the sum over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MISMATCH_ERRORS, ModelError, first_line
from .tasks import Task


@dataclass
class DistillConfig:
    """Weights of the distillation terms."""

    alpha: float = 1.0  # weight of the soft (KD) term; 1 - alpha weights the hard cross-entropy
    temperature: float = 1.0
    feature_weight: float = 0.0  # weight of the feature-matching term (0 disables it)
    # student module name -> teacher module name, e.g. {"blocks.3": "blocks.11", "blocks.3.attn": "blocks.11.attn"}
    feature_pairs: dict[str, str] = field(default_factory=dict)
    soft_loss: Literal["kl", "soft-ce"] = "kl"  # kl: T^2 * KL batch mean; soft-ce: mean soft cross-entropy
    project: Literal["student", "teacher"] = (
        "student"  # whose features a pair's projection maps to the other's width
    )
    feature_reduce: Literal["mean", "sum"] = "mean"  # over the feature pairs

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.feature_weight < 0:
            raise ValueError(f"feature_weight must be >= 0, got {self.feature_weight}")


def soft_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2-scaled KL(teacher || student) on temperature-softened distributions, averaged over samples/tokens."""
    s = student_logits.float().reshape(-1, student_logits.size(-1)) / temperature
    t = teacher_logits.float().reshape(-1, teacher_logits.size(-1)) / temperature
    kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True)
    return kl * temperature**2


def soft_cross_entropy_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """mean over every logit of -softmax(teacher/T) * log_softmax(student/T) (no T^2; Learngene Pool's L_logit)."""
    s = F.log_softmax(student_logits.float() / temperature, -1)
    t = F.softmax(teacher_logits.float() / temperature, -1)
    return -(t * s).mean()


SOFT_LOSSES = {"kl": soft_kd_loss, "soft-ce": soft_cross_entropy_loss}


class _FeatureTap:
    """Keeps the latest output of the named submodules of a model (via forward hooks)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"no module named {missing[0]!r} for feature distillation")
        self.outputs: dict[str, torch.Tensor] = {}
        for name in names:
            modules[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[name] = output[0] if isinstance(output, (tuple, list)) else output

        return hook


def logits_or_named_error(task: Task, role: str, model: nn.Module, inputs: Any) -> torch.Tensor:
    """`task.logits(model, inputs)`; a model that cannot run on the batch is one ModelError naming its role."""
    try:
        return task.logits(model, inputs)
    except MISMATCH_ERRORS as exc:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else "dict"
        raise ModelError(
            f"the {role} ({type(model).__name__}) cannot run on a training batch (inputs {shape}): "
            f"{first_line(exc)}"
        ) from None


class Distiller:
    """A `Trainer.loss_fn` distilling a frozen `teacher` into the trained model."""

    def __init__(
        self,
        teacher: nn.Module,
        task: Task,
        cfg: DistillConfig,
        student: nn.Module | None = None,
        sample_inputs: Any = None,
        label_smoothing: float = 0.0,
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.task = task
        self.cfg = cfg
        self.label_smoothing = label_smoothing
        self.projections = nn.ModuleDict()
        self._student_tap = self._teacher_tap = None
        if cfg.feature_weight > 0 and cfg.feature_pairs:
            if student is None or sample_inputs is None:
                raise ValueError(
                    "feature distillation needs the student and sample inputs to size projections"
                )
            self._student_tap = _FeatureTap(student, list(cfg.feature_pairs))
            self._teacher_tap = _FeatureTap(teacher, list(cfg.feature_pairs.values()))
            self._build_projections(student, sample_inputs)

    @torch.no_grad()
    def _build_projections(self, student: nn.Module, sample_inputs: Any) -> None:
        was_training = student.training
        student.eval()
        try:
            logits_or_named_error(self.task, "student", student, sample_inputs)
            logits_or_named_error(self.task, "teacher", self.teacher, sample_inputs)
        finally:
            student.train(was_training)
        for i, (s_name, t_name) in enumerate(self.cfg.feature_pairs.items()):
            s_shape = self._student_tap.outputs[s_name].shape
            t_shape = self._teacher_tap.outputs[t_name].shape
            if s_shape[:-1] != t_shape[:-1]:
                raise ModelError(
                    f"feature pair {s_name!r} -> {t_name!r}: student shape {tuple(s_shape)} and teacher shape "
                    f"{tuple(t_shape)} differ before the last (width) dimension (class tokens? image size?)"
                )
            s_dim, t_dim = s_shape[-1], t_shape[-1]
            in_dim, out_dim = (s_dim, t_dim) if self.cfg.project == "student" else (t_dim, s_dim)
            self.projections[str(i)] = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()

    def projection_of(self, student_module: str) -> nn.Module:
        """The learnable projection of the feature pair whose student side is `student_module`."""
        names = list(self.cfg.feature_pairs)
        if student_module not in names:
            raise KeyError(f"no feature pair with student module {student_module!r}; pairs: {names}")
        return self.projections[str(names.index(student_module))]

    def teacher_logits(self, inputs: Any, device: torch.device) -> torch.Tensor:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            return self.task.logits(self.teacher, inputs)

    def probe(
        self, model: nn.Module, inputs: Any, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on one batch, as the Trainer's check before step 1 calls it (eval mode, no gradients); a
        teacher that cannot run on the data, or whose logits do not match the student's, is named as such."""
        logits = logits_or_named_error(self.task, "student", model, inputs)
        self.teacher.to(logits.device)
        teacher_logits = logits_or_named_error(self.task, "teacher", self.teacher, inputs)
        if self.cfg.alpha > 0 and teacher_logits.shape != logits.shape:
            raise ModelError(
                f"the teacher ({type(self.teacher).__name__}) gives logits of shape "
                f"{tuple(teacher_logits.shape)}, the student {tuple(logits.shape)}: distil on data with the "
                "teacher's classes"
            )
        return self(model, inputs, targets)

    def __call__(
        self, model: nn.Module, inputs: Any, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.task.logits(model, inputs)
        teacher_logits = self.teacher_logits(inputs, logits.device)
        parts: dict[str, torch.Tensor] = {}
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.cfg.alpha > 0:
            parts["kd_loss"] = SOFT_LOSSES[self.cfg.soft_loss](logits, teacher_logits, self.cfg.temperature)
            loss = loss + self.cfg.alpha * parts["kd_loss"]
        if self.cfg.alpha < 1:
            parts["ce_loss"] = self.task.loss(logits, targets, self.label_smoothing)
            loss = loss + (1 - self.cfg.alpha) * parts["ce_loss"]
        if self._student_tap is not None:
            terms = [
                self._feature_mse(proj, self._student_tap.outputs[s], self._teacher_tap.outputs[t])
                for proj, (s, t) in zip(self.projections.values(), self.cfg.feature_pairs.items())
            ]
            stacked = torch.stack(terms)
            parts["feature_loss"] = stacked.sum() if self.cfg.feature_reduce == "sum" else stacked.mean()
            loss = loss + self.cfg.feature_weight * parts["feature_loss"]
        return loss, logits, parts

    def _feature_mse(self, proj: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.cfg.project == "student":
            return F.mse_loss(proj(student).float(), teacher.float())
        return F.mse_loss(student.float(), proj(teacher).float())
