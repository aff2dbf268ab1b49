"""From a config to a trained model: data, model, Trainer and the files of a run directory.

A run directory holds `config.yaml` (the resolved config), `metrics.jsonl`, `metrics.png`,
`checkpoints/last/` (resumable), `best/` and `final/` (model.safetensors + metadata.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader

from .checkpoint import load_model_weights
from .config import ExperimentConfig, read_yaml_file, save_config, to_dict
from .data import DatasetSplits, build_dataloaders, build_datasets
from .errors import CheckpointError
from .metrics import METRICS_NAME, PLOT_NAME
from .models import build_model, count_parameters
from .tasks import Task, task_for
from .trainer import Trainer

CONFIG_NAME = "config.yaml"


@dataclass
class Run:
    """Everything built from an ExperimentConfig before training starts."""

    cfg: ExperimentConfig
    splits: DatasetSplits
    loaders: tuple[DataLoader, DataLoader, DataLoader]
    task: Task

    def build_model(self) -> nn.Module:
        """A fresh model of the config, sized for this run's data, initialised from the config's seed."""
        set_seed(self.cfg.seed)
        return build_model(
            self.cfg.model,
            num_classes=self.splits.num_classes,
            input_shape=self.splits.input_shape,
            vocab_size=self.splits.vocab_size,
        )


def prepare_run(cfg: ExperimentConfig) -> Run:
    """Load the data of `cfg` and its loaders (seeded by `cfg.seed`)."""
    splits = build_datasets(cfg.data, cfg.seed)
    loaders = build_dataloaders(splits, cfg.data, cfg.seed)
    return Run(cfg, splits, loaders, task_for(splits.task))


def check_output_dir(output_dir: str | Path, cfg: Any, resume: bool) -> None:
    """Refuse to reuse a run directory unless resuming it with the same config (nothing is written here).

    A run that stopped before its first checkpoint (Ctrl-C, NaN loss, a bad file: only config.yaml and
    metrics are there) is no run to protect: rerunning the command starts it over, with --resume or without.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CheckpointError(
            f"output dir {output_dir} is a file, not a directory; choose another --output-dir"
        )
    unfinished = is_unfinished_run(output_dir, cfg)
    if not resume:
        if output_dir.is_dir() and any(output_dir.iterdir()) and not unfinished:
            raise CheckpointError(
                f"output dir {output_dir} is not empty; pass --resume to continue its run or choose another"
            )
        return
    saved = output_dir / CONFIG_NAME
    if not saved.is_file():
        if output_dir.is_dir() and any(output_dir.iterdir()):
            raise CheckpointError(
                f"cannot resume: {saved} not found (was {output_dir} written by a training run?)"
            )
        return  # nothing was written yet: the run starts from step 0
    diff = _first_difference(read_yaml_file(saved, CheckpointError), to_dict(cfg))
    if diff:
        hint = (
            "it has no checkpoint yet: rerun without --resume to start it over with the new config"
            if unfinished
            else "resume with the same config"
        )
        raise CheckpointError(f"cannot resume {output_dir}: config differs at {diff}; {hint}")


UNFINISHED_RUN_FILES = {CONFIG_NAME, METRICS_NAME, PLOT_NAME}


def is_unfinished_run(output_dir: str | Path, cfg: Any = None) -> bool:
    """Whether `output_dir` holds a run that stopped before writing any checkpoint (or nothing at all).

    Such a directory has only config.yaml, metrics.jsonl, metrics.png and leftovers of a killed save
    (`.*.tmp`); checkpoints/ may exist but holds no checkpoint (not even one moved aside to `.last.old`).
    With `cfg`, its config.yaml must also have every section a run of that config writes (a resolved config
    lists them all), so a user's own, hand-written config.yaml there is not taken for a run's and replaced.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return True
    for entry in output_dir.iterdir():
        if entry.name in UNFINISHED_RUN_FILES or _is_temp(entry):
            continue
        if entry.name == "checkpoints" and entry.is_dir() and all(_is_temp(e) for e in entry.iterdir()):
            continue
        return False
    return _is_config_of(output_dir / CONFIG_NAME, cfg)


def check_new_output_dir(output_dir: str | Path, first_run: str, cfg: Any = None) -> None:
    """Refuse a non-empty `output_dir` of a command that trains the run directories under it in turn, starting
    with `first_run` (a relative path), unless all it holds is that first run, stopped before its first
    checkpoint: the command then starts over in place, as `train` does over an unfinished run. With `cfg`, the
    command writes its own config.yaml at the top first (see `check_runs_dir`): one with `cfg`'s sections may
    be there too, and the refusal points at --resume."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CheckpointError(f"output dir {output_dir} is a file, not a directory; choose another")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    first = output_dir / first_run
    own_config = output_dir / CONFIG_NAME
    outside = [
        p
        for p in output_dir.rglob("*")
        if p not in first.parents and p != first and first not in p.parents and p != own_config
    ]
    if cfg is None and own_config.exists():
        outside.append(own_config)
    if outside or not is_unfinished_run(first) or not _is_config_of(own_config, cfg):
        hint = "pass --resume to continue its run or choose another" if cfg is not None else "choose another"
        raise CheckpointError(f"output dir {output_dir} is not empty; {hint}")


def check_runs_dir(output_dir: str | Path, cfg: Any, first_run: str, resume: bool) -> None:
    """Check the `output_dir` of a command that writes `cfg` to its config.yaml, then trains the run directories
    under it in turn (`first_run` first) and records its progress there, so that `resume` continues it: with
    `resume`, config.yaml must equal `cfg` (else one error naming the first differing key) or nothing is there
    yet; without, the directory must be new or hold only a first run stopped before its first checkpoint."""
    output_dir = Path(output_dir)
    if resume and (output_dir / first_run).is_dir() and not (output_dir / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"cannot resume {output_dir}: it has {first_run}/ but no {CONFIG_NAME}, so it was written before this "
            "command could resume (its runs lack the state to continue); run it again into a new --output-dir"
        )
    if resume:
        check_output_dir(output_dir, cfg, resume=True)
    else:
        check_new_output_dir(output_dir, first_run, cfg)


def save_runs_config(cfg: Any, output_dir: str | Path, resume: bool) -> None:
    """Write `cfg` to the config.yaml of a `check_runs_dir` directory (kept when resuming a run that has one);
    call it once the bad input that can be found before training has been, right before the first run."""
    path = Path(output_dir) / CONFIG_NAME
    if not (resume and path.is_file()):
        save_config(cfg, path)


def _is_config_of(path: Path, cfg: Any) -> bool:
    """Whether `path` is absent or a config.yaml with the sections of `cfg` (not a user's own file)."""
    if cfg is None or not path.is_file():
        return True
    try:
        written = read_yaml_file(path, CheckpointError)
    except CheckpointError:
        return False
    return isinstance(written, dict) and set(written) == set(to_dict(cfg))


def _is_temp(entry: Path) -> bool:
    return entry.name.startswith(".") and entry.name.endswith(".tmp")


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"'{prefix.rstrip('.')}' ({a!r} in the run, {b!r} now)"


def train(
    cfg: ExperimentConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    model: nn.Module | None = None,
    run: Run | None = None,
    metadata: dict[str, Any] | None = None,
    **hooks: Any,
) -> dict[str, float]:
    """Train `model` (default: a fresh one from `cfg.model`) and return its final test metrics.

    `hooks` are passed to `Trainer` (loss_fn, loss_terms, param_groups, extra_modules, callbacks, eval_fn).
    A config without a `model` section (the caller builds the model) records the model's class name.
    """
    check_output_dir(output_dir, cfg, resume)
    run = run or prepare_run(cfg)
    model = model if model is not None else run.build_model()
    output_dir = Path(output_dir)
    meta = {
        "model": to_dict(cfg.model) if hasattr(cfg, "model") else type(model).__name__,
        "data": run.splits.description,
        "task": run.splits.task,
        "num_classes": run.splits.num_classes,
        "input_shape": list(run.splits.input_shape),
        "parameters": count_parameters(model),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        **(metadata or {}),
    }
    trainer = Trainer(
        model,
        cfg.train,
        run.task,
        *run.loaders,
        output_dir=output_dir,
        seed=cfg.seed,
        metadata=meta,
        **hooks,
    )
    trainer.accelerator.wait_for_everyone()  # every process has checked the output dir before main writes
    if trainer.accelerator.is_main_process and not (resume and (output_dir / CONFIG_NAME).is_file()):
        save_config(cfg, output_dir / CONFIG_NAME)
    trainer.accelerator.print(
        f"{run.splits.description}; model {cfg.model.name if hasattr(cfg, 'model') else type(model).__name__}: "
        f"{meta['trainable_parameters']:,} trainable parameters"
    )
    return trainer.fit(resume=resume)


def evaluate(cfg: ExperimentConfig, weights: str | Path, split: str = "test") -> dict[str, float]:
    """Evaluate the weights at `weights` (a checkpoint dir or file) on a split of the config's data."""
    if split not in ("train", "val", "test"):
        raise CheckpointError(f"unknown split '{split}'; use train, val or test")
    run = prepare_run(cfg)
    model = run.build_model()
    load_model_weights(model, weights)
    loader = run.loaders[("train", "val", "test").index(split)]
    cfg.train.progress = False
    trainer = Trainer(model, cfg.train, run.task, loader, output_dir=Path(weights).parent, seed=cfg.seed)
    return trainer.evaluate(trainer.train_loader, split)
