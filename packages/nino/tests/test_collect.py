"""`nino collect` and nino.trajectories: what is written is what the run did; both layouts read back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from learngene_core.errors import CheckpointError, DataError
from nino.cli import main as nino_main
from nino.collect import CollectConfig, collect
from nino.tasks import build_task_model
from nino.trajectories import FORMAT, INDEX_NAME, REFERENCE_TASKS, Trajectory, TrajectoryWriter, open_dataset


def test_index_records_task_seed_steps_and_shapes(trajectory_dir):
    index = json.loads((trajectory_dir / INDEX_NAME).read_text())
    assert index["format"] == FORMAT
    records = {(r["task"], r["seed"]): r for r in index["trajectories"]}
    assert set(records) == {("mlp-digits", 0), ("cnn-digits-16", 0)}
    cnn = records[("cnn-digits-16", 0)]
    assert cnn["steps"] == list(range(0, 201, 10))
    model = build_task_model("cnn-digits-16")
    assert cnn["param_names"] == [n for n, _ in model.named_parameters()]
    assert cnn["param_shapes"] == [list(p.shape) for p in model.parameters()]
    assert len(cnn["val_loss"]) == 21 and cnn["val_loss"][-1] < cnn["val_loss"][0]


def test_snapshots_are_float16_and_start_at_the_seeded_init(trajectory_dir):
    dataset = open_dataset(trajectory_dir)
    trajectory = next(t for t in dataset if t.task == "cnn-digits-16")
    array = trajectory.array()
    assert array.dtype == np.float16 and array.shape == (21, 14_378)
    init = torch.cat([p.detach().flatten() for p in build_task_model("cnn-digits-16", seed=0).parameters()])
    assert torch.allclose(torch.from_numpy(array[0].astype(np.float32)), init, atol=1e-3)
    assert not np.array_equal(array[0], array[-1])  # training moved the parameters
    states = trajectory.states(2, 5)
    assert states.shape == (14_378, 5) and torch.equal(states[:, 0], torch.from_numpy(array[2].astype("f4")))


def test_collect_refuses_a_non_empty_dir_and_resume_adds_only_missing_runs(tmp_path, trajectory_dir):
    out = tmp_path / "data"
    cfg = CollectConfig(tasks=["mlp-digits"], seeds=[0], steps=20, snapshot_every=10, progress=False)
    collect(cfg, out)
    before = (out / "traj_00000.npy").read_bytes()
    with pytest.raises(CheckpointError, match="not empty"):
        collect(cfg, out)
    collect(CollectConfig(tasks=["mlp-digits"], seeds=[0, 1], steps=20, snapshot_every=10, progress=False),
            out, resume=True)  # fmt: skip
    dataset = open_dataset(out)
    assert [(t.task, t.seed) for t in dataset] == [("mlp-digits", 0), ("mlp-digits", 1)]
    assert (out / "traj_00000.npy").read_bytes() == before


def test_cli_collect_into_non_empty_dir_is_one_line_error_and_changes_nothing(capsys, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = nino_main(["collect", "--config", "collect-tiny", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(out) in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unknown_task_in_collect_config_is_a_config_error(capsys, tmp_path):
    code = nino_main(["collect", "--config", "collect-tiny", "--output", str(tmp_path / "o"), "tasks=[nope]"])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------ the reference's published layout


def test_reference_layout_reads_npy_and_raw_memmaps_with_their_strides(tmp_path):
    root = tmp_path / "nino_metatrain"
    rng = np.random.default_rng(0)
    fm = rng.standard_normal((120, 14_378)).astype(np.float16)  # 120 checkpoints, 4 steps apart
    (root / "fm-16" / "part0").mkdir(parents=True)
    np.save(root / "fm-16" / "part0" / "000.npy", fm)
    c10 = rng.standard_normal((60, 14_666)).astype(np.float16)
    (root / "c10-16").mkdir()
    c10.tofile(root / "c10-16" / "000.dat")  # raw float16 memmap, rows inferred from the size
    dataset = open_dataset(root)
    assert dataset.layout == "reference" and dataset.tasks() == ["c10-16", "fm-16"]
    fm_traj = next(t for t in dataset if t.task == "fm-16")
    assert fm_traj.stride == REFERENCE_TASKS["fm-16"][1] == 50
    assert fm_traj.num_states() == 3  # rows 0, 50, 100
    assert torch.equal(fm_traj.states(1, 2), torch.from_numpy(fm[[50, 100]].astype("f4")).T)
    c10_traj = next(t for t in dataset if t.task == "c10-16")
    assert c10_traj.array().shape == (60, 14_666)
    assert c10_traj.param_names == [n for n, _ in build_task_model("c10-16-cnn").named_parameters()]


def test_reference_raw_file_of_the_wrong_size_names_the_file(tmp_path):
    (tmp_path / "fm-16").mkdir()
    bad = tmp_path / "fm-16" / "broken.dat"
    bad.write_bytes(b"\x00" * 1001)
    dataset = open_dataset(tmp_path)
    with pytest.raises(DataError, match="broken.dat"):
        dataset[0].array()


def test_a_directory_in_neither_layout_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a trajectory dataset"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "missing")


def test_writer_rejects_states_of_the_wrong_width(tmp_path):
    meta = Trajectory(file="", task="t", model="m", seed=0, param_names=["w"], param_shapes=[[3, 2]])
    with pytest.raises(DataError, match="6 parameters"):
        TrajectoryWriter(tmp_path).add(meta, np.zeros((4, 5), dtype=np.float32))


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (
            lambda path: path.write_bytes(path.read_bytes()[:100]),
            "not a readable .npy trajectory",
        ),  # truncated
        (lambda path: path.write_bytes(b"garbage\n"), "not a readable .npy trajectory"),
        (
            lambda path: np.save(path, np.array([object()]), allow_pickle=True),
            "not a readable .npy trajectory",
        ),
        (lambda path: np.save(path, np.full_like(np.load(path), np.nan)), "hold NaN or infinite values"),
    ],
    ids=["truncated", "garbage", "object-array", "nan"],
)
def test_a_damaged_npy_trajectory_is_a_data_error_naming_the_file(tmp_path, trajectory_dir, damage, error):
    """Before: a numpy traceback for the first three; for NaN states a meta-loss NaN that blamed the lr."""
    data = tmp_path / "data"
    shutil.copytree(trajectory_dir, data)
    damage(data / "traj_00000.npy")
    trajectory = open_dataset(data)[0]
    with pytest.raises(DataError, match=f"traj_00000.npy: .*{error}") as raised:
        trajectory.states(0, trajectory.num_states())
    assert "allow_pickle" not in str(raised.value)  # no advice to load an untrusted file unsafely
