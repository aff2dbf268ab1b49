"""Checkpoints: safetensors weights + JSON metadata (+ torch training state), written atomically.

Every write goes to a temporary sibling and is renamed into place, so a failed or interrupted write leaves the
previous checkpoint intact. Loading never unpickles arbitrary objects: weights are safetensors and the
training state is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import read_json_file
from .errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
METADATA_NAME = "metadata.json"
STATE_NAME = "training_state.pt"
LAST_DIR = "checkpoints/last"  # the resumable checkpoint inside a run directory


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file(path: Path) -> Path:
    """A new empty temporary sibling of `path` (`.<name>.XXXX.tmp`), with the mode the umask gives new files.

    `tempfile.mkstemp` makes files 0600 whatever the umask, so a teammate could read metrics.jsonl but not
    the weights written next to it; the mode is set as `open()` would have set it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def temp_dir(target: Path) -> Path:
    """A new temporary sibling directory of `target` (`.<name>.XXXX.tmp`), with the umask's mode (not 0700)."""
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.chmod(tmp, 0o777 & ~_umask())
    return Path(tmp)


def recover_dir(target: Path) -> None:
    """Undo what a killed `write_dir_atomically(target)` left: its temporary siblings, or `target` moved aside.

    A kill between the two renames leaves the previous `target` in `.<name>.old`; it is moved back.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)


def write_dir_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory `target` by filling a temporary sibling with `fill(tmp)` and swapping it in.

    If `fill` raises, `target` is left exactly as it was and the temporary directory is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)  # leftovers of an earlier write that was killed
    tmp = temp_dir(target)
    try:
        fill(tmp)
        with _interrupts_deferred():  # never leave `target` missing between the two renames
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block is done; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple] = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of the model's state dict with tied (shared-storage) tensors deduplicated."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int, tuple], str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:  # tied weights (e.g. LM embeddings and head): safetensors refuses shared storage
            continue
        seen[key] = name
        out[name] = tensor.detach().cpu().contiguous()
    return out


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters and the buffers of `model` (what a frozen base does not need saved again)."""
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    return {name: tensor for name, tensor in state_dict_for_saving(model).items() if name not in frozen}


def save_weights(
    model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None
) -> None:
    """Save a model's (or a tensor dict's) weights as safetensors, atomically."""
    path = Path(path)
    tensors = model if isinstance(model, dict) else state_dict_for_saving(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path)
    try:
        try:
            save_file(tensors, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
        except SafetensorError as exc:  # a full disk or an I/O error, raised by safetensors' own writer
            reason = str(exc).removeprefix("Error while serializing: ")
            raise CheckpointError(f"cannot write {path}: {reason}") from None
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes its file 0600 itself
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a dict of CPU tensors, with a clear error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from None
    return check_finite_weights(state, path)


def check_finite_weights(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """`state`, or a CheckpointError naming the first floating tensor with NaN or infinite values: weights saved
    from a diverged run would otherwise load silently and give NaN everywhere (or a misleading NaN loss later)."""
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{path}: tensor '{name}' holds NaN or infinite values (saved from a diverged run?); "
                "use another checkpoint"
            )
    return state


def load_model_weights(
    model: nn.Module, path: str | Path, strict: bool = True, partial: bool = False
) -> None:
    """Load a safetensors file (or a torch state dict, read with weights_only=True) into `model`.

    `partial`: the file holds what `trainable_state_dict` saves, so the model's frozen parameters may be
    missing from it (they keep their values); anything else missing or unexpected is still an error.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if path.suffix == ".safetensors":
        state = load_weights(path)
    else:
        if not path.is_file():
            raise CheckpointError(f"weights file not found: {path}")
        state = torch_load_safely(path)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        elif isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if isinstance(state, dict):
            check_finite_weights(state, path)
    own = model.state_dict()
    mismatched = [
        f"{k}: {tuple(v.shape)} in file, {tuple(own[k].shape)} in model"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:  # load_state_dict raises RuntimeError for these even when strict=False
        raise CheckpointError(f"{path} does not fit the model: shape mismatch for {mismatched[:5]}")
    result = model.load_state_dict(state, strict=False)
    if strict:
        allowed = _tied_names(model)
        if partial:
            allowed |= {name for name, param in model.named_parameters() if not param.requires_grad}
        missing = [k for k in result.missing_keys if k not in allowed]
        if missing and not partial and _saved_weights_kind(path) == "trainable":
            raise CheckpointError(
                f"{path} holds only the trainable weights of a parameter-efficient run "
                f"(train.checkpoint_weights=trainable); load it into the model that method builds"
            )
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"{path} does not fit the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
            )


def _saved_weights_kind(weights_path: Path) -> str:
    """'all' or 'trainable', from the metadata.json beside a weights file (Trainer checkpoints record it)."""
    meta = weights_path.parent / METADATA_NAME
    try:
        return str(json.loads(meta.read_text()).get("weights", "all"))
    except (OSError, ValueError, AttributeError):
        return "all"


def _tied_names(model: nn.Module) -> set[str]:
    """Names in the state dict that share storage with an earlier name (dropped when saving)."""
    names, seen = set(), set()
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            names.add(name)
        seen.add(key)
    return names


def save_model_dir(
    model: nn.Module | dict[str, torch.Tensor], directory: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write `directory/` with model.safetensors and metadata.json, replacing any previous one atomically."""

    def fill(tmp: Path) -> None:
        save_weights(model, tmp / WEIGHTS_NAME)
        (tmp / METADATA_NAME).write_text(json.dumps(metadata or {}, indent=2, default=str))

    return write_dir_atomically(Path(directory), fill)


def save_training_checkpoint(
    directory: str | Path,
    model: nn.Module | dict[str, torch.Tensor],
    training_state: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint: weights (safetensors), metadata (JSON) and optimizer/RNG state (torch)."""

    def fill(tmp: Path) -> None:
        save_weights(model, tmp / WEIGHTS_NAME)
        (tmp / METADATA_NAME).write_text(json.dumps(metadata or {}, indent=2, default=str))
        torch.save(training_state, tmp / STATE_NAME)

    return write_dir_atomically(Path(directory), fill)


def rng_state() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch, cuda) in a form `torch.load(weights_only=True)` reads back."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    version, *rest = state["python"]
    random.setstate((version, tuple(rest[0]), rest[1]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """Read `metadata.json` of a checkpoint directory; an `input_shape` or `num_classes` (absent for some models,
    e.g. LMs) that an edit or damage made anything but a list of positive integers / a positive integer is
    refused by name, before a reader builds a model from it."""
    path = Path(directory) / METADATA_NAME
    if not path.is_file():
        raise CheckpointError(f"no {METADATA_NAME} in {directory}: not a checkpoint directory")
    meta = read_json_file(path)
    _check_metadata_shapes(meta, path)
    return meta


def _check_metadata_shapes(meta: dict[str, Any], path: Path) -> None:
    def positive(value: object) -> bool:
        return type(value) is int and value > 0

    shape, classes = meta.get("input_shape"), meta.get("num_classes")
    for key, value, fits, kind in (
        ("input_shape", shape, isinstance(shape, list) and shape and all(map(positive, shape)), "a list of positive integers"),
        ("num_classes", classes, positive(classes), "a positive integer"),
    ):  # fmt: skip
        if value is not None and not fits:
            raise CheckpointError(f"{path}: '{key}' is {value!r}, not {kind}")


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """Read the optimizer/scheduler/RNG state of a checkpoint without unpickling arbitrary objects."""
    path = Path(directory) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"no {STATE_NAME} in {directory}: not a resumable checkpoint")
    return torch_load_safely(path)


def torch_load_safely(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` on CPU; a corrupt or hostile file is one CheckpointError, never run."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(describe_torch_load_error(path, exc)) from None


def describe_torch_load_error(path: Path, exc: BaseException) -> str:
    """Why `torch.load(path, weights_only=True)` failed, without torch's advice to retry with weights_only=False.

    That advice is right for a trusted pickle of custom objects and wrong for a corrupt or hostile file.
    """
    found = re.search(r"GLOBAL (\S+)", str(exc))
    if found:
        return (
            f"refused {path}: it asks to import {found.group(1)}, which a weights file never needs "
            "(only tensors and plain containers are read)"
        )
    return f"cannot read {path}: not a torch checkpoint, or a corrupt or truncated one"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a torch pickle, for importing checkpoints made elsewhere.

    Pickles are read by `torch_load_safely`: only tensors and plain containers are rebuilt, so no code in the
    file runs; a file that needs anything else is refused with a CheckpointError. A `{"state_dict": ...}` or
    `{"model": ...}` wrapper (training scripts' checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_weights(path)
    state = torch_load_safely(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (a mapping of names to tensors)")
    return check_finite_weights(dict(state), path)
