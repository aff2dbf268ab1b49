"""Descendants in training: learngene-initialised or scratch ViTs of one architecture, and their comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import timm
from accelerate.utils import set_seed
from torch import nn

from .. import experiment
from ..config import DataConfig, ExperimentConfig
from ..errors import ConfigError
from ..metrics import METRICS_NAME, read_metrics
from ..models import count_parameters
from .anatomy import VIT_NAME
from .artifact import Learngene
from .backbones import TIMM_VIT, backbone_named
from .config import DescendantConfig, DescendantOptions
from .cost import steps_to_reach
from .expand import descendant_kwargs, expand, summarize_inheritance
from .methods import LearngeneMethod


def same_label_space(learngene: Learngene, data: DataConfig, num_classes: int | None) -> bool:
    """Whether `data` has the learngene's classes: same dataset, path and class list as its extraction data."""
    extracted = learngene.manifest.get("config", {}).get("data", {})
    return (
        num_classes == learngene.manifest.get("num_classes")
        and extracted.get("name") == data.name
        and extracted.get("path") == data.path
        and extracted.get("classes") == data.classes
    )


def build_descendant(
    init: str,
    learngene: Learngene,
    method: LearngeneMethod,
    layout: list[int],
    run: experiment.Run,
    load_head: bool | None = None,
) -> tuple[nn.Module, str]:
    """A descendant for `run`'s data: `init` is "learngene" (expanded) or "scratch" (timm init, same shape).

    Both get the regularisation keys of `model.kwargs` (ViT: drop_path_rate, drop_rate, ...; LM: its config's
    dropouts, e.g. GPT-2's resid_pdrop, Llama's attention_dropout). A learngene descendant
    copies the aux net's head when `load_head` is true, or when it is None and the data has the learngene's
    label space (as the reference does on ImageNet).
    """
    regularisation = learngene.descendant_model_kwargs(run.cfg.model.kwargs, "model.kwargs")
    if init not in ("learngene", "scratch"):
        raise ConfigError(f"unknown init '{init}'; use learngene:<dir> or scratch")
    backbone = backbone_named(learngene.backbone)
    if backbone.name != TIMM_VIT:  # a causal LM: embeddings and head are bound to the learngene's vocabulary
        set_seed(run.cfg.seed)
        if init == "learngene":
            model, inheritance = expand(learngene, method, layout, regularisation=regularisation)
            return model, summarize_inheritance(inheritance)
        model = backbone.create(learngene.arch, len(layout), **regularisation)
        return model, "every tensor freshly initialised"
    channels, img_size = run.splits.input_shape[0], run.splits.input_shape[1]
    if channels != learngene.arch["in_chans"]:
        raise ConfigError(
            f"data has {channels} channels but the learngene expects {learngene.arch['in_chans']} (set data.channels)"
        )
    num_classes = run.splits.num_classes
    set_seed(run.cfg.seed)  # fresh tensors (the head; everything for scratch) from the config's seed
    if init == "learngene":
        if load_head is None:
            load_head = same_label_space(learngene, run.cfg.data, num_classes)
        model, inheritance = expand(
            learngene, method, layout, num_classes, img_size=img_size, load_head=load_head,
            regularisation=regularisation,
        )  # fmt: skip
        return model, summarize_inheritance(inheritance)
    kwargs = descendant_kwargs(learngene, len(layout), num_classes, img_size, regularisation=regularisation)
    return timm.create_model(VIT_NAME, pretrained=False, **kwargs), "every tensor freshly initialised"


@dataclass
class CompareRow:
    """One descendant of a comparison, measured on the config's `train.best_metric` (accuracy or loss)."""

    depth: int
    parameters: int
    init: str
    metric: str
    first_epoch_val: float
    final_test: float
    epochs_to_scratch_final: int | None  # first epoch whose val metric is as good as scratch's final one
    val_curve: list[float]


def depth_rows(
    depth: int,
    metric: str,
    curves: dict[str, tuple[list[float], float, int]],
    higher_is_better: bool = True,
) -> list[CompareRow]:
    """The rows of one depth from each init's (val curve per epoch, final test value, parameters).

    Each row's `epochs_to_scratch_final` is the first epoch (from 1) whose val metric is at least as good as
    scratch's last one; None if it never gets there.
    """
    target = curves["scratch"][0][-1]
    rows = []
    for init, (curve, test_value, params) in curves.items():
        reached = steps_to_reach(list(enumerate(curve, start=1)), target, higher_is_better)
        rows.append(CompareRow(depth, params, init, metric, curve[0], test_value, reached, curve))
    return rows


def _val_curve(run_dir: Path, metric: str) -> list[float]:
    records = read_metrics(run_dir / METRICS_NAME)
    return [r[metric] for r in records if r["split"] == "val"]


def compare(
    learngene: Learngene,
    method: LearngeneMethod,
    cfg: ExperimentConfig,
    depths: list[int],
    output_dir: str | Path,
    resume: bool = False,
) -> list[CompareRow]:
    """Train learngene- and scratch-initialised descendants of each depth on the same data and budget.

    `resume`: continue a stopped comparison (finished runs are only re-evaluated, the rest resume).

    Curves and targets use `cfg.train.best_metric` in the direction of `cfg.train.best_mode` (accuracy for
    images, loss for LMs in the shipped presets). A `DescendantConfig` may give a layout per depth
    (`descendant.layouts`) and `descendant.load_head`.
    """
    if cfg.train.eval_every or cfg.train.max_steps:
        raise ConfigError("compare measures epochs: leave train.eval_every and train.max_steps unset")
    options = cfg.descendant if isinstance(cfg, DescendantConfig) else DescendantOptions()
    unused = sorted(set(options.layouts) - set(depths))
    if unused:
        raise ConfigError(f"descendant.layouts gives depth {unused[0]}, which is not in --depths {depths}")
    layouts = {d: options.layouts.get(d) or method.default_layout(d, learngene.spec) for d in depths}
    for layout in layouts.values():
        method.check_layout(layout, learngene.spec)
    output_dir = Path(output_dir)
    run = experiment.prepare_run(cfg)
    metric, higher_is_better = cfg.train.best_metric, cfg.train.best_mode == "max"
    rows: list[CompareRow] = []
    for depth in depths:
        layout = layouts[depth]
        curves: dict[str, tuple[list[float], float, int]] = {}
        for init in ("scratch", "learngene"):
            model, how = build_descendant(init, learngene, method, layout, run, options.load_head)
            print(f"depth {depth}, {init}: {how}")
            run_dir = output_dir / f"depth{depth}-{init}"
            test = experiment.train(
                cfg,
                run_dir,
                resume=resume,
                model=model,
                run=run,
                metadata={"init": init, "depth": depth, "layout": layout},
            )
            curve = _val_curve(run_dir, metric)
            curves[init] = (curve, test.get(metric, float("nan")), count_parameters(model))
        rows += depth_rows(depth, metric, curves, higher_is_better)
    (output_dir / "compare.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    plot_compare(rows, output_dir / "compare.png", cfg.train.epochs)
    return rows


def format_table(rows: list[CompareRow], epochs: int) -> str:
    """A markdown table of a comparison."""
    metric = rows[0].metric if rows else "accuracy"
    lines = [
        f"| depth | init | parameters | val {metric} after 1 epoch | final test {metric} | epochs to scratch's final |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.init == "scratch":
            reach = "-"  # the reference itself
        else:
            reach = (
                f"{r.epochs_to_scratch_final}/{epochs}" if r.epochs_to_scratch_final else f"not in {epochs}"
            )
        lines.append(
            f"| {r.depth} | {r.init} | {r.parameters:,} | {r.first_epoch_val:.3f} | {r.final_test:.3f} | {reach} |"
        )
    return "\n".join(lines)


def plot_compare(rows: list[CompareRow], path: Path, epochs: int) -> None:
    """Validation accuracy per epoch, one panel per depth, learngene vs scratch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({r.depth for r in rows})
    fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.2), squeeze=False, sharey=True)
    for ax, depth in zip(axes[0], depths):
        for r in rows:
            if r.depth == depth:
                ax.plot(range(1, len(r.val_curve) + 1), r.val_curve, marker="o", markersize=3, label=r.init)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"val {rows[0].metric}")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
