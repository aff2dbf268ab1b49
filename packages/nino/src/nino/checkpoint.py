"""NiNo checkpoints in the official format: a torch file holding {'state_dict': ..., 'model_args': {...}}.

`model_args` lists only the constructor arguments that differ from the defaults (the official files hold
e.g. {'wte_pos_enc': False} or {'gnn': False, 'hid': 32}), so official checkpoints load here and ours load in
the same way. Ours add an optional top-level `snapshot_every`: the optimizer steps between the states the
network was meta-trained on (its horizon unit, so NiNo's natural period is ctx x snapshot_every). A file
without it (every official checkpoint) means the paper's 200; `load_nino` puts it on the returned network. Reading uses `torch.load(weights_only=True)` (no code is unpickled) and a strict key/shape check.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_core.checkpoint import temp_file
from learngene_core.errors import CheckpointError, LearngeneError

from .model import PAPER_SNAPSHOT_EVERY, NiNoNet, WNNPlus, build_nino, check_model_args, model_args_of
from .published import resolve_checkpoint

__all__ = ["load_nino", "save_nino", "shipped_checkpoint"]

SHIPPED_NAME = "nino.pt"
SNAPSHOT_KEY = "snapshot_every"
# PyG's degree-scaler aggregation (PNA) keeps running-degree buffers; with NiNo's mean aggregator and identity
# scaler they are never read, so checkpoints that carry them load without them.
_UNUSED_KEYS = re.compile(r"^gnn\.convs\.\d+\.aggr_module\.(avg_deg_lin|avg_deg_log)$")


def shipped_checkpoint() -> Path:
    """The checkpoint inside the package (`nino/checkpoints/nino.pt`, else the only `*.pt` there)."""
    folder = Path(str(resources.files("nino"))) / "checkpoints"
    preferred = folder / SHIPPED_NAME
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    if len(found) == 1:
        return found[0]
    raise CheckpointError(f"no shipped NiNo checkpoint in {folder}; pass ckpt=PATH to a NiNo checkpoint")


def _read(path: Path, map_location: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any], int]:
    if not path.is_file():
        raise CheckpointError(f"NiNo checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle that weights_only refuses
        raise CheckpointError(f"cannot read NiNo checkpoint {path}: {_load_failure(exc)}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a NiNo checkpoint (expected a dict with 'state_dict')")
    model_args = blob.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise CheckpointError(f"{path}: 'model_args' must be a dict, got {type(model_args).__name__}")
    spacing = blob.get(SNAPSHOT_KEY, PAPER_SNAPSHOT_EVERY)
    if not _positive_int(spacing):
        raise CheckpointError(
            f"{path}: {SNAPSHOT_KEY!r} must be a positive integer of steps, got {spacing!r}"
        )
    return blob["state_dict"], model_args, int(spacing)


def _load_failure(exc: Exception) -> str:
    """Why torch.load failed, without torch's advice to retry with weights_only=False."""
    text = str(exc)
    if "Unsupported global" in text:
        found = re.search(r"Unsupported global[^.\n]*", text)
        return (
            f"it holds pickled code, refused unread ({found.group(0).strip() if found else 'unsafe pickle'})"
        )
    # a byte no plain-data pickle has: garbage, or an old code-running opcode
    if "Unsupported operand" in text:
        return "not a torch checkpoint (corrupt, or a pickle that is not plain data: refused unread)"
    if "weights_only" in text.lower() or isinstance(exc, (EOFError, RuntimeError, ValueError)):
        return "not a torch checkpoint or truncated/corrupt"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: {key!r} holds {bad} NaN/Inf values; this checkpoint is unusable")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_keys(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(
            f"{path}: missing key {missing[0]!r} ({len(missing)} missing) for {_describe(model)}"
        )
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(state[key].shape)}, the model expects {tuple(tensor.shape)}"
            )


def _describe(model: nn.Module) -> str:
    return f"{type(model).__name__}({', '.join(f'{k}={v!r}' for k, v in model_args_of(model).items())})"


def load_nino(path: str | Path | None = None, map_location: Any = "cpu") -> NiNoNet | WNNPlus:
    """Load a NiNo/WNN+ checkpoint (official or ours), strictly: a path, a name of `nino.published`
    ("nino-no-posw", "nino-mlp": downloaded on first use; "nino-cpu"), or None for the shipped checkpoint.

    The returned network's `snapshot_every` is the file's recorded state spacing (200 when it has none).
    """
    path = resolve_checkpoint(path) or shipped_checkpoint()
    state, model_args, spacing = _read(path, map_location)
    try:
        with torch.random.fork_rng(
            devices=[]
        ):  # its random init is overwritten: leave the caller's RNG alone
            model = build_nino(**model_args)
    except LearngeneError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = {k: v for k, v in state.items() if not _UNUSED_KEYS.match(k)}
    _check_keys(model, state, path)
    _check_finite(state, path)
    model.load_state_dict(state, strict=True)
    model.snapshot_every = spacing
    return model.eval()


def save_nino(
    model: NiNoNet | WNNPlus, path: str | Path, *, snapshot_every: int | None = None, **model_args: Any
) -> Path:
    """Write `model` as {'state_dict', 'model_args', 'snapshot_every'} (non-default constructor args, then
    `model_args`; the spacing defaults to `model.snapshot_every`).

    The file is written to a temporary sibling and renamed, so an existing checkpoint is never half-written.
    """
    args = {**model_args_of(model), **model_args}
    check_model_args(args)
    spacing = model.snapshot_every if snapshot_every is None else snapshot_every
    if not _positive_int(spacing):
        raise CheckpointError(f"snapshot_every must be a positive integer of steps, got {spacing!r}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path)  # mode from the umask, not mkstemp's 0600
    try:
        torch.save({"state_dict": state, "model_args": args, SNAPSHOT_KEY: int(spacing)}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
