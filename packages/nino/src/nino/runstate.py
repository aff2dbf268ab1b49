"""The resumable checkpoint of a `nino train` / `nino metatrain` run: `OUTPUT/checkpoints/last`.

Written with learngene-core's machinery (weights as safetensors, the rest with `torch.save`, the directory
swapped in atomically) and read back without unpickling code. The training state a loop passes in is saved
with the global RNG states (python, numpy, torch) added; `resume_from_last` restores those and returns the
rest, so the loop continues exactly where the checkpoint was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from learngene_core.checkpoint import (
    LAST_DIR,
    load_model_weights,
    load_training_state,
    read_metadata,
    recover_dir,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from learngene_core.errors import CheckpointError

__all__ = ["has_checkpoint", "misfit", "resume_from_last", "save_last"]


def has_checkpoint(output_dir: str | Path) -> bool:
    """Whether `output_dir` holds a checkpoint to resume from (after repairing what a killed save left)."""
    last = Path(output_dir) / LAST_DIR
    recover_dir(last)
    return last.is_dir()


def save_last(
    output_dir: str | Path, model: nn.Module, state: dict[str, Any], metadata: dict[str, Any]
) -> None:
    """Write `checkpoints/last`: the model's weights, `state` plus the global RNG states, and `metadata`."""
    save_training_checkpoint(Path(output_dir) / LAST_DIR, model, {**state, "rng": rng_state()}, metadata)


def resume_from_last(output_dir: str | Path, model: nn.Module, metadata: dict[str, Any]) -> dict[str, Any]:
    """Load `checkpoints/last` into `model`, restore the global RNG states and return the saved training state.

    Each `metadata` entry must equal the checkpoint's (e.g. the data a run was trained on): else one
    CheckpointError naming it, before anything is changed.
    """
    last = Path(output_dir) / LAST_DIR
    saved = read_metadata(last)
    for key, value in metadata.items():
        if saved.get(key) != value:
            raise CheckpointError(
                f"cannot resume {output_dir}: its {key} was {saved.get(key)!r}, this command gives {value!r}; "
                "use the same command"
            )
    state = load_training_state(last)
    try:
        load_model_weights(model, last)
        set_rng_state(state.pop("rng"))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise misfit(output_dir, exc) from None
    return state


def misfit(output_dir: str | Path, exc: BaseException) -> CheckpointError:
    """The error for a checkpoint whose training state does not fit the run that loads it."""
    return CheckpointError(
        f"{Path(output_dir) / LAST_DIR} does not fit this run ({type(exc).__name__}: {exc}); it was written by "
        "another model or version"
    )
