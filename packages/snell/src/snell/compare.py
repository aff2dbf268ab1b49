"""SNELL against its baselines on the same backbone, data and budget: peft LoRA (same rank and targets),
full fine-tuning and a linear probe. Each method is a normal learngene run under `output_dir/<method>/`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from torch import nn

from learngene_core import experiment
from learngene_core.errors import CheckpointError
from learngene_core.experiment import prepare_run

from .experiment import SnellExperimentConfig, build_base, check_backbone
from .model import _is_trainable_extra, find_targets, get_snell_model

METHODS = ("snell", "lora", "full", "linear-probe")


def lora_model(model: nn.Module, cfg: SnellExperimentConfig) -> nn.Module:
    """peft LoRA of rank snell.rank on the same target linears; head and cls token trainable as for SNELL."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = find_targets(model, cfg.snell)
    config = LoraConfig(
        r=cfg.snell.rank,
        lora_alpha=cfg.snell.rank,
        lora_dropout=cfg.snell.dropout,
        target_modules=targets,
    )
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or _is_trainable_extra(name, cfg.snell.trainable))
    return model


def probe_model(model: nn.Module, cfg: SnellExperimentConfig) -> nn.Module:
    """Only the classifier (and the trainable extras such as the cls token) learns."""
    for name, p in model.named_parameters():
        p.requires_grad_(_is_trainable_extra(name, cfg.snell.trainable))
    return model


def method_model(method: str, base: nn.Module, cfg: SnellExperimentConfig) -> nn.Module:
    if method == "snell":
        return get_snell_model(base, cfg.snell)
    if method == "lora":
        return lora_model(base, cfg)
    if method == "linear-probe":
        return probe_model(base, cfg)
    return base  # full fine-tuning


def compare(
    cfg: SnellExperimentConfig,
    output_dir: str | Path,
    methods: tuple[str, ...] = METHODS,
    resume: bool = False,
) -> list[dict]:
    """Train each method on `cfg`'s backbone and data; return one row per method (also in compare.json).

    `resume`: continue a stopped comparison (finished runs are only re-evaluated, the rest resume).
    """
    output_dir = Path(output_dir)
    check_backbone(cfg)
    if not resume and (output_dir / "compare.json").exists():
        raise CheckpointError(f"output dir {output_dir} holds a finished comparison; choose another")
    run = prepare_run(cfg)
    rows = []
    for method in methods:
        model = method_model(method, build_base(cfg, run), cfg)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        start = time.perf_counter()
        metrics = experiment.train(
            cfg, output_dir / method, resume=resume, model=model, run=run, metadata={"method": method}
        )
        rows.append(
            {
                "method": method,
                "trainable_parameters": trainable,
                "test_accuracy": metrics.get("accuracy"),
                "test_loss": metrics.get("loss"),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    (output_dir / "compare.json").write_text(json.dumps(rows, indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| method | trainable params | test accuracy | train time (s) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['trainable_parameters']:,} | {r['test_accuracy']:.4f} | {r['seconds']} |"
        )
    return "\n".join(lines)
