"""`loramoe train / eval / generate` as functions: a LoRAMoE run through the core Trainer and its files.

A run directory holds what `learngene train` writes (config.yaml, metrics.jsonl, metrics.png, best/, final/,
checkpoints/last/) plus `adapter/` (experts and routers only: adapter_model.safetensors + adapter_config.json),
`base-model/` when the base was built from a config (so the adapter can be loaded without the config), and
`usage.json` (per-task-type expert usage on the test split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch import nn

from learngene_core import experiment as core_experiment
from learngene_core.config import DataConfig, ModelConfig, TrainConfig, check_seed
from learngene_core.data.tokenizers import load_tokenizer
from learngene_core.errors import CheckpointError
from learngene_core.models import load_causal_lm
from learngene_core.tasks import task_for

from .config import LoraMoEConfig
from .data import PromptCodec, build_instruction_data, build_loaders
from .evaluate import evaluate_dataset, generate_answers, lm_metrics
from .model import LoraMoEModel, get_loramoe_model, read_adapter_info
from .usage import expert_usage, own_group_share, usage_table

ADAPTER_DIR = "adapter"
BASE_DIR = "base-model"
USAGE_NAME = "usage.json"


@dataclass
class EvalConfig:
    """Settings of `loramoe eval` (generation-based metrics)."""

    max_new_tokens: int = 32
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LoraMoEExperimentConfig:
    """What `loramoe train` runs: a base causal LM, instruction data, the adapter and the optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loramoe: LoraMoEConfig = field(default_factory=LoraMoEConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gradient_checkpointing: bool = False  # non-reentrant, so the balancing loss still reaches the routers
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)


def task_names(config: LoraMoEConfig) -> dict[int, str]:
    names, groups = config.names(), config.task_groups()
    return {t: names[g] for t, g in enumerate(groups)}


def _prepare_base(model: nn.Module, codec: PromptCodec) -> None:
    """Make `generate` stop at our end-of-text id and pad with it."""
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.eos_token_id = codec.eos
        gen.pad_token_id = codec.pad


class _SaveAdapter:
    """Trainer callback: at the end, write adapter/ (and base-model/ for config-built bases)."""

    def __init__(self, output_dir: Path, cfg: LoraMoEExperimentConfig) -> None:
        self.output_dir, self.cfg = output_dir, cfg

    def on_train_end(self, trainer) -> None:
        if not trainer.accelerator.is_main_process:
            return
        model: LoraMoEModel = trainer.accelerator.unwrap_model(trainer.model)
        base_path = Path(self.cfg.model.name)
        if not base_path.is_dir():
            base_path = save_base_model(model, self.output_dir / BASE_DIR)
        model.save_pretrained(
            self.output_dir / ADAPTER_DIR,
            base_model_name_or_path=str(base_path.resolve()),
            tokenizer=self.cfg.data.options.get("tokenizer"),
        )


def enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing (the captured router weights keep their gradient path)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def save_base_model(model: LoraMoEModel, directory: Path) -> Path:
    """Save the (frozen, unchanged) base model of `model` as a Hugging Face model directory."""
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_config(model.model.config)
    fresh.load_state_dict(model.base_state_dict())  # strict: every base weight must be there
    fresh.save_pretrained(directory)
    return directory


def train(cfg: LoraMoEExperimentConfig, output_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a LoRAMoE adapter; return the final test metrics and the per-task-type expert usage."""
    output_dir = Path(output_dir)
    core_experiment.check_output_dir(output_dir, cfg, resume)
    data = build_instruction_data(cfg.data, cfg.seed, cfg.loramoe.num_task_types)
    loaders = build_loaders(data.splits, cfg.data, cfg.seed, data.codec.pad)
    run = core_experiment.Run(cfg, data.splits, loaders, task_for("causal-lm"))  # type: ignore[arg-type]
    base = run.build_model()
    _prepare_base(base, data.codec)
    if cfg.gradient_checkpointing:
        enable_checkpointing(base)
    model = get_loramoe_model(base, cfg.loramoe)
    trainable, total = model.get_nb_trainable_parameters()
    metrics = core_experiment.train(
        cfg,  # type: ignore[arg-type]
        output_dir,
        resume=resume,
        model=model,
        run=run,
        metadata={"method": "loramoe", "adapter_parameters": trainable, "all_parameters": total},
        loss_fn=_loss_fn,
        eval_fn=lm_metrics,
        callbacks=[_SaveAdapter(output_dir, cfg)],
    )
    state = PartialState()
    result: dict[str, Any] = {"test": metrics}
    if state.is_main_process and len(data.splits.test):
        usage = expert_usage(model, loaders[2], cfg.loramoe.num_task_types)
        result["usage"] = usage.tolist()
        result["own_group_share"] = own_group_share(usage, cfg.loramoe)
        (output_dir / USAGE_NAME).write_text(json.dumps(result, indent=2))
        print("expert usage on the test split (mean router weight per expert):")
        print(usage_table(usage, cfg.loramoe))
    return result


def _loss_fn(model, inputs, labels):
    out = model(**inputs, labels=labels)
    return out.loss, out.logits, {"lm_loss": out.lm_loss.detach(), "blc_loss": out.blc_loss.detach()}


def import_official(
    source: str | Path,
    base: str | Path,
    output_dir: str | Path,
    alpha: float | None = None,
    tokenizer: str | None = None,
) -> LoraMoEModel:
    """Convert an official LoRAMoE adapter (for the local base model `base`) into our adapter directory, which
    `loramoe eval / generate --adapter` read; the tokenizer defaults to the base directory's, if it has one."""
    from .official import load_official_adapter, read_official_adapter

    output_dir, base = Path(output_dir), Path(base)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CheckpointError(f"output dir {output_dir} is not empty; choose another")
    if not base.is_dir():
        raise CheckpointError(f"--base {base} is not a local model directory")
    state, settings = read_official_adapter(source)  # a bad file is refused before the base model loads
    model = load_official_adapter(load_causal_lm(base), state, settings, alpha)
    if tokenizer is None and (base / "tokenizer_config.json").is_file():
        tokenizer = str(base.resolve())
    model.save_pretrained(
        output_dir,
        base_model_name_or_path=str(base.resolve()),
        tokenizer=tokenizer,
        imported_from=str(source),
    )
    return model


def load_adapter(adapter: str | Path, base: str | Path | None = None) -> tuple[LoraMoEModel, PromptCodec]:
    """A base model from disk with the adapter in `adapter`, in eval mode, and the codec it was trained with."""
    adapter = Path(adapter)
    info = read_adapter_info(adapter)
    recorded = base or info.get("base_model_name_or_path")
    if not recorded:
        raise CheckpointError(f"adapter {adapter} records no base model; pass --base <local model directory>")
    base_path = Path(recorded)
    if not base_path.is_dir():
        raise CheckpointError(
            f"base model of adapter {adapter} not found at '{base_path}'; pass --base <local model directory>"
        )
    model = load_causal_lm(base_path)
    codec = PromptCodec(load_tokenizer(info.get("tokenizer")))
    _prepare_base(model, codec)
    return LoraMoEModel.from_pretrained(model, adapter), codec


def evaluate(
    cfg: LoraMoEExperimentConfig, adapter: str | Path, split: str = "test", base: str | Path | None = None
) -> dict[str, float]:
    """Exact match / option accuracy / answer loss per task type of an adapter on a split of `cfg`'s data."""
    if split not in ("train", "val", "test"):
        raise CheckpointError(f"unknown split '{split}'; use train, val or test")
    data = build_instruction_data(cfg.data, cfg.seed, cfg.loramoe.num_task_types)
    model, codec = load_adapter(adapter, base)
    dataset = getattr(data.splits, split)
    return evaluate_dataset(
        model,
        codec,
        dataset,
        task_names(model.loramoe_config),
        cfg.eval.max_new_tokens,
        cfg.eval.batch_size,
        progress=cfg.train.progress,
    )


def generate(
    adapter: str | Path, prompts: list[str], max_new_tokens: int = 32, base: str | Path | None = None
) -> list[str]:
    """Greedy answers of the adapted model to `prompts` (plain `model.generate`, no task types)."""
    model, codec = load_adapter(adapter, base)
    torch.manual_seed(0)
    return generate_answers(model, codec, prompts, max_new_tokens)
