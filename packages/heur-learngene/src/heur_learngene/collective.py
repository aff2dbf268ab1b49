"""The collective model: trained task after task on a class-disjoint stream, one layer widened per new task,
every layer's change tracked; the steadiest late-stream layers become the learngene.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from learngene_core import experiment
from learngene_core.checkpoint import load_weights, read_metadata, save_weights
from learngene_core.config import ExperimentConfig, load_config
from learngene_core.continual import make_split
from learngene_core.errors import CheckpointError, ConfigError
from learngene_core.learngene.artifact import Learngene
from learngene_core.learngene.config import AncestryConfig
from learngene_core.learngene.extract import load_ancestry
from learngene_core.learngene.inherit import (
    check_layer_indices,
    layer_prefixes,
    make_layer_learngene,
    width_kwargs,
)
from learngene_core.learngene.widen import widen_layer
from learngene_core.metrics import read_metrics, repair_jsonl

from .config import CollectiveConfig, StreamConfig
from .criterion import rank_layers
from .tracking import LayerTracker

METHOD = "heur-learngene"
STREAM_NAME = "stream.jsonl"
COLLECTIVE_DIR = "collective"
LEARNGENE_DIR = "learngene"
# in each task's run dir: the state of the generator the next task's widening draws from
WIDEN_GENERATOR = "widen-generator.safetensors"


def stream_tasks(stream: StreamConfig) -> list[list[int]]:
    """The stream's class-disjoint tasks (original labels), cut by core's continual split (repeats refused)."""
    split = make_split(max(stream.classes, default=0) + 1, task_size=stream.task_size, order=stream.classes)
    return [list(task) for task in split.tasks()]


def train_collective(
    cfg: CollectiveConfig, output_dir: str | Path, resume: bool = False
) -> tuple[nn.Module, list[dict[str, Any]], tuple[int, ...]]:
    """Train the collective model over the stream in `output_dir/collective/task-<t>` (each a `learngene train`
    run directory whose config.yaml rebuilds the widened model); return it, per-task records and the input shape.

    stream.jsonl records every finished task: with `resume`, the stream continues after the last one (the model
    and the widening generator restored from that task's run directory), inside a task from its checkpoint.
    A record torn by a kill while it was appended is dropped (one warning); its task, already trained, is
    resumed from its final checkpoint (nothing retrained) and recorded again, as a run that went through did.
    """
    output_dir = Path(output_dir)
    experiment.check_runs_dir(output_dir, cfg, f"{COLLECTIVE_DIR}/{_task_dir(0)}", resume)
    tasks = stream_tasks(cfg.stream)
    stream = output_dir / STREAM_NAME
    records = read_stream(stream, repair=True) if resume and stream.is_file() else []
    if records:
        print(f"continuing the stream after task {len(records) - 1} ({output_dir / STREAM_NAME})")
    generator = torch.Generator().manual_seed(cfg.seed)
    model: nn.Module | None = None
    first = len(records)
    for t in range(first, len(tasks)):
        classes = tasks[t]
        data = replace(cfg.data, classes=classes, samples_per_class=cfg.stream.samples_per_class)
        run = experiment.prepare_run(ExperimentConfig(cfg.model, data, cfg.train, cfg.seed + t))
        widened = None
        if t == 0:
            model = run.build_model()
            num_layers = len(layer_prefixes(model))
            if cfg.method.k > num_layers:
                raise ConfigError(f"method.k={cfg.method.k} is larger than the model's {num_layers} layers")
        else:
            if model is None:
                model = _restore_task(output_dir, t - 1, generator, run.splits.vocab_size)
            set_seed(cfg.seed + t)
            if cfg.method.widen and t - 1 < len(layer_prefixes(model)):
                widen_layer(model, t - 1, cfg.method.widen_factor, cfg.method.widen_noise, generator)
                widened = t - 1
            if cfg.method.reset_head:
                model.reset_classifier(run.splits.num_classes)
        model_cfg = replace(cfg.model, kwargs={**cfg.model.kwargs, **width_kwargs(model)})
        task_cfg = ExperimentConfig(model_cfg, data, cfg.train, cfg.seed + t)
        tracker = LayerTracker(model)
        task_dir = output_dir / COLLECTIVE_DIR / _task_dir(t)
        if t == first:
            experiment.save_runs_config(cfg, output_dir, resume)
        metrics = experiment.train(
            task_cfg, task_dir, resume=resume, model=model, run=run, callbacks=[tracker],
            metadata={"method": METHOD, "task": t, "classes": classes},
        )  # fmt: skip
        change = tracker.finish()
        save_weights({"state": generator.get_state()}, task_dir / WIDEN_GENERATOR)
        record = {"task": t, "classes": classes, "widened_layer": widened, "test": metrics, **change}
        records.append(record)
        with open(output_dir / STREAM_NAME, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"task {t} classes {classes}: test accuracy {metrics.get('accuracy', float('nan')):.3f}")
    last = output_dir / COLLECTIVE_DIR / _task_dir(len(tasks) - 1)
    if model is None:  # every task was already recorded
        model = _restore_task(output_dir, len(tasks) - 1, generator, None)
    return model, records, tuple(read_metadata(last / "final")["input_shape"])


def _restore_task(output_dir: Path, t: int, generator: torch.Generator, vocab_size: int | None) -> nn.Module:
    """The collective model after task `t` and the widening generator's state then, from task t's run dir."""
    task_dir = output_dir / COLLECTIVE_DIR / _task_dir(t)
    model, _ = load_ancestry(AncestryConfig(run=str(task_dir)), None, (), vocab_size)
    state = load_weights(task_dir / WIDEN_GENERATOR).get("state")
    if state is None:
        raise CheckpointError(f"{task_dir / WIDEN_GENERATOR} holds no 'state' tensor")
    generator.set_state(state)
    return model


def _task_dir(t: int) -> str:
    return f"task-{t:02d}"


def choose_learngene(
    cfg: CollectiveConfig,
    model: nn.Module,
    records: list[dict[str, Any]],
    input_shape: tuple[int, ...],
    layers: list[int] | None = None,
) -> tuple[Learngene, dict[str, Any]]:
    """Rank the layers by the configured criterion and keep the k steadiest (or the given `layers`)."""
    choice = rank_layers(records, cfg.method.criterion, cfg.method.late_fraction, cfg.method.k)
    if layers is not None:
        check_layer_indices(layers, len(choice["scores"]))
        choice["layers"] = sorted(layers)
    spec = {key: value for key, value in choice.items() if key != "layers"}
    extra = {
        "input_shape": list(input_shape),
        "stream": [r["classes"] for r in records],
        "criterion": {"update": [r["update"] for r in records], "gradient": [r["gradient"] for r in records]},
    }
    learngene = make_layer_learngene(METHOD, model, cfg.model, choice["layers"], spec, extra)
    return learngene, choice


def run_collective(
    cfg: CollectiveConfig, output_dir: str | Path, resume: bool = False
) -> tuple[Learngene, dict[str, Any]]:
    """Collective training (continued with `resume`), ranking and the learngene saved in `output_dir/learngene`."""
    output_dir = Path(output_dir)
    model, records, input_shape = train_collective(cfg, output_dir, resume)
    learngene, choice = choose_learngene(cfg, model, records, input_shape)
    learngene.manifest["ancestry_run"] = str(output_dir / COLLECTIVE_DIR / _task_dir(len(records) - 1))
    learngene.save(output_dir / LEARNGENE_DIR)
    return learngene, choice


def read_stream(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The per-task records of a collective run's stream.jsonl, checked (a CheckpointError names the line).
    With `repair` (before appending to it), a last line torn by a killed write is cut from the file."""
    records = repair_jsonl(path) if repair else read_metrics(path)
    if not records and not repair:
        raise CheckpointError(f"{path} records no finished task; rerun `heur-learngene collective`")
    layers = records[0].get("update") if records else None
    for number, record in enumerate(records, 1):
        for key in ("update", "gradient"):
            values = record.get(key)
            if not (
                isinstance(values, list)
                and len(values) == len(layers if isinstance(layers, list) else [])
                and values
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            ):
                raise CheckpointError(
                    f"{path}:{number}: '{key}' is not a list of finite numbers, one per layer"
                )
        if not isinstance(record.get("task"), int):
            raise CheckpointError(f"{path}:{number}: 'task' is not an integer")
    return records


def rechoose(
    run_dir: str | Path, overrides: list[str], layers: list[int] | None, output_dir: str | Path
) -> tuple[Learngene, dict[str, Any]]:
    """A new learngene from a finished collective run (other criterion, k, or explicit layers), no retraining."""
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise CheckpointError(f"output dir {output_dir} is not empty; choose another")
    config, stream = run_dir / "config.yaml", run_dir / STREAM_NAME
    for path in (config, stream):
        if not path.is_file():
            raise CheckpointError(f"{path} not found: is {run_dir} a `heur-learngene collective` run?")
    cfg = load_config(config, overrides, CollectiveConfig)
    records = read_stream(stream)
    planned = len(stream_tasks(cfg.stream))
    if len(records) < planned:
        raise CheckpointError(
            f"{run_dir} stopped after {len(records)} of its {planned} tasks; finish it first with "
            f"`heur-learngene collective --resume` (same --config, --output-dir {run_dir})"
        )
    last = run_dir / COLLECTIVE_DIR / _task_dir(len(records) - 1)
    model, _ = load_ancestry(AncestryConfig(run=str(last)), None, ())
    input_shape = tuple(read_metadata(last / "final")["input_shape"])
    learngene, choice = choose_learngene(cfg, model, records, input_shape, layers)
    learngene.manifest["ancestry_run"] = str(last)
    learngene.save(output_dir)
    return learngene, choice
