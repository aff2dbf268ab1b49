"""On-disk trajectory datasets: flat parameter snapshots of optimizer runs, read lazily as float16 memmaps.

Our own layout (written by `nino collect`)::

    DIR/index.json            {"format": "nino-trajectories/1", "trajectories": [{file, task, model, seed,
                                param_names, param_shapes, steps, train_loss, val_loss, stride}, ...]}
    DIR/traj_00000.npy        float16 array [num_snapshots, num_params] (np.load(mmap_mode="r"))

Every trajectory file and every version of the index is written to a temporary name and renamed into place,
so an interrupted collection leaves a readable dataset of the trajectories finished so far.

The reference's published layout (HF dataset `SamsungSAILMontreal/nino_metatrain`, revision `mmap`) is read
from a local copy: one sub-directory per task (`fm-16`, `c10-16`, `lm1b-3-24`, `lm1b-2-32`), each holding one
float16 array of shape [num_checkpoints, num_params] per trained model, as `.npy` files or raw memmaps
(`.dat`/`.bin`/`.mmap`, the row count is inferred from the file size). The parameter names and shapes come
from the task's architecture; vision checkpoints are 4 steps apart (stride 50 = 200 steps), LM checkpoints 200.

`snapshot_spacing` tells the optimizer steps between consecutive meta-training states of a set of trajectories
(recorded steps x stride); `nino metatrain` stores it in the checkpoint as `snapshot_every`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learngene_core.checkpoint import atomic_write_text, temp_file
from learngene_core.errors import DataError

INDEX_NAME = "index.json"
FORMAT = "nino-trajectories/1"
RAW_SUFFIXES = (".dat", ".bin", ".mmap")

# The reference dataset's tasks: task dir -> (architecture in nino.tasks.MODELS, stride in stored checkpoints,
# optimizer steps between stored checkpoints); stride x steps = the paper's 200-step spacing.
REFERENCE_TASKS: dict[str, tuple[str, int, int]] = {
    "fm-16": ("fm16-cnn", 50, 4),
    "c10-16": ("c10-16-cnn", 50, 4),
    "lm1b-3-24": ("lm1b-3-24", 1, 200),
    "lm1b-2-32": ("lm1b-2-32", 1, 200),
}


@dataclass
class Trajectory:
    """One optimizer run: metadata plus a lazily read [num_snapshots, num_params] float16 array."""

    file: str
    task: str
    model: str  # architecture name (nino.tasks.MODELS); informational, the graph is built from names/shapes
    seed: int
    param_names: list[str]
    param_shapes: list[list[int]]
    steps: list[int] = field(default_factory=list)  # optimizer step of each stored snapshot
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    stride: int = 1  # stored snapshots per meta-training state (reference vision data: 50)
    graph_args: dict[str, int] = field(default_factory=dict)  # build_graph keywords (num_heads, num_kv_heads)
    step_every: int = 0  # optimizer steps between stored snapshots when `steps` is not recorded (reference)
    root: str = ""

    @property
    def num_params(self) -> int:
        return int(sum(int(np.prod(s)) if s else 1 for s in self.param_shapes))

    def array(self) -> np.ndarray:
        """The snapshots as a read-only memmap [num_snapshots, num_params] (float16)."""
        path = Path(self.root) / self.file
        if not path.is_file():
            raise DataError(f"trajectory file not found: {path}")
        if path.suffix == ".npy":
            try:  # mmap_mode never unpickles: an object array is refused, not run
                array = np.load(path, mmap_mode="r")
            except (ValueError, OSError, EOFError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if "pickle" in reason:  # not numpy's advice to load it with allow_pickle=True
                    reason = "it holds pickled Python objects, refused unread"
                raise DataError(
                    f"{path}: not a readable .npy trajectory ({reason}); collect it again"
                ) from None
        else:
            rows, rest = divmod(path.stat().st_size, 2 * self.num_params)
            if rest or rows == 0:
                raise DataError(
                    f"{path}: {path.stat().st_size} bytes is not a whole number of float16 rows of "
                    f"{self.num_params} parameters ({self.model})"
                )
            array = np.memmap(path, dtype=np.float16, mode="r", shape=(rows, self.num_params))
        if array.ndim != 2 or array.shape[1] != self.num_params:
            raise DataError(
                f"{path}: shape {tuple(array.shape)} does not match {self.num_params} parameters of {self.model}"
            )
        return array

    def num_states(self) -> int:
        """Number of meta-training states (stored snapshots / stride)."""
        return -(-self.array().shape[0] // self.stride)

    def states(self, start: int, count: int) -> torch.Tensor:
        """States start..start+count-1 (in strided units) as float32 [num_params, count]."""
        rows = np.arange(start, start + count) * self.stride
        states = torch.from_numpy(np.asarray(self.array()[rows], dtype=np.float32)).T.contiguous()
        if not bool(torch.isfinite(states).all()):  # else a NaN meta-loss would blame the learning rate
            raise DataError(
                f"{Path(self.root) / self.file}: states {start}..{start + count - 1} hold NaN or infinite values "
                f"(a diverged run, or float16 overflow); collect it again or leave it out"
            )
        return states

    def snapshot_every(self) -> int | None:
        """Optimizer steps between consecutive meta-training states (stored spacing x stride); None: unknown."""
        if len(self.steps) >= 2:
            gaps = sorted({b - a for a, b in zip(self.steps, self.steps[1:])})
            if len(gaps) != 1 or gaps[0] <= 0:
                raise DataError(f"{self.file}: snapshots are not evenly spaced (step gaps {gaps[:5]})")
            return gaps[0] * self.stride
        return self.step_every * self.stride if self.step_every > 0 else None

    def meta(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("root")
        return record


class TrajectoryDataset:
    """The trajectories of one directory, in either supported layout (see the module docstring)."""

    def __init__(self, trajectories: list[Trajectory], root: Path, layout: str) -> None:
        self.trajectories = trajectories
        self.root = root
        self.layout = layout

    def __len__(self) -> int:
        return len(self.trajectories)

    def __getitem__(self, index: int) -> Trajectory:
        return self.trajectories[index]

    def tasks(self) -> list[str]:
        return sorted({t.task for t in self.trajectories})

    def by_task(self) -> dict[str, list[Trajectory]]:
        out: dict[str, list[Trajectory]] = {}
        for t in self.trajectories:
            out.setdefault(t.task, []).append(t)
        return out


def open_dataset(path: str | Path) -> TrajectoryDataset:
    """Open a trajectory directory: ours (index.json) or a local copy of the reference's layout."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"trajectory dataset not found: {root}")
    if (root / INDEX_NAME).is_file():
        return _open_ours(root)
    if any((root / task).is_dir() for task in REFERENCE_TASKS):
        return _open_reference(root)
    raise DataError(
        f"{root} is not a trajectory dataset: no {INDEX_NAME} (written by `nino collect`) and none of the "
        f"reference task directories {', '.join(REFERENCE_TASKS)}"
    )


def _open_ours(root: Path) -> TrajectoryDataset:
    try:
        index = json.loads((root / INDEX_NAME).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{root / INDEX_NAME} is not valid JSON: {exc}") from None
    if index.get("format") != FORMAT:
        raise DataError(f"{root / INDEX_NAME}: unknown format {index.get('format')!r}, expected {FORMAT!r}")
    fields = set(Trajectory.__dataclass_fields__)
    trajectories = []
    for record in index.get("trajectories", []):
        unknown = set(record) - fields
        if unknown:
            raise DataError(f"{root / INDEX_NAME}: unknown trajectory keys {sorted(unknown)}")
        trajectories.append(Trajectory(**{**record, "root": str(root)}))
    if not trajectories:
        raise DataError(f"{root} holds no trajectories")
    return TrajectoryDataset(trajectories, root, "nino")


def _open_reference(root: Path) -> TrajectoryDataset:
    from .tasks import build_task_model, graph_args

    trajectories = []
    for task, (model_name, stride, step_every) in REFERENCE_TASKS.items():
        directory = root / task
        if not directory.is_dir():
            continue
        files = sorted(p for p in directory.rglob("*") if p.suffix in (".npy", *RAW_SUFFIXES) and p.is_file())
        if not files:
            continue
        with torch.device("meta"):
            model = build_task_model(model_name)
        named = list(model.named_parameters())
        names = [n for n, _ in named]
        shapes = [list(p.shape) for _, p in named]
        for i, file in enumerate(files):
            trajectories.append(
                Trajectory(
                    file=str(file.relative_to(root)),
                    task=task,
                    model=model_name,
                    seed=i,
                    param_names=names,
                    param_shapes=shapes,
                    stride=stride,
                    graph_args=graph_args(model),
                    step_every=step_every,
                    root=str(root),
                )
            )
    if not trajectories:
        raise DataError(
            f"{root}: the reference task directories hold no .npy/.dat/.bin/.mmap trajectory files"
        )
    return TrajectoryDataset(trajectories, root, "reference")


def snapshot_spacing(trajectories: list[Trajectory]) -> int:
    """The one step spacing of the trajectories' meta-training states; mixed or unknown spacings: DataError."""
    spacings: dict[int, Trajectory] = {}
    for t in trajectories:
        spacing = t.snapshot_every()
        if spacing is None:
            raise DataError(
                f"{t.file} ({t.task}, seed {t.seed}) records neither its snapshot steps nor their spacing; "
                "cannot tell the step spacing NiNo is meta-trained on"
            )
        spacings.setdefault(spacing, t)
    if len(spacings) > 1:
        (a, ta), (b, tb) = sorted(spacings.items())[:2]
        raise DataError(
            f"the trajectories mix snapshot spacings: {ta.file} ({ta.task}) is {a} steps apart, {tb.file} "
            f"({tb.task}) {b}; NiNo's horizon unit must be one spacing, so meta-train on one of them"
        )
    if not spacings:
        raise DataError("no trajectories to tell the snapshot spacing from")
    return next(iter(spacings))


class TrajectoryWriter:
    """Appends trajectories to a directory in our layout, each file and index update atomic."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        index_path = self.root / INDEX_NAME
        self.records: list[dict[str, Any]] = (
            json.loads(index_path.read_text())["trajectories"] if index_path.is_file() else []
        )

    def done(self) -> set[tuple[str, int]]:
        """(task, seed) pairs already written."""
        return {(r["task"], r["seed"]) for r in self.records}

    def add(self, trajectory: Trajectory, states: np.ndarray) -> Trajectory:
        """Write `states` [num_snapshots, num_params] as float16 and record `trajectory` in the index."""
        if states.ndim != 2 or states.shape[1] != trajectory.num_params:
            raise DataError(f"states of shape {states.shape} do not match {trajectory.num_params} parameters")
        trajectory.file = f"traj_{len(self.records):05d}.npy"
        target = self.root / trajectory.file
        tmp = temp_file(target)  # mode from the umask, not mkstemp's 0600
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, states.astype(np.float16))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.records.append(trajectory.meta())
        index = {"format": FORMAT, "trajectories": self.records}
        atomic_write_text(self.root / INDEX_NAME, json.dumps(index))
        trajectory.root = str(self.root)
        return trajectory
