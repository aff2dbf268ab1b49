"""The state spacing a NiNo network was meta-trained on: recorded in its checkpoint, the wrapper's default period."""

import json
import logging

import numpy as np
import pytest
import torch

from learngene_core.errors import CheckpointError, ConfigError, DataError
from nino.checkpoint import load_nino, save_nino
from nino.cli import main as nino_main
from nino.metatrain import MetatrainConfig, metatrain
from nino.model import NiNoNet
from nino.optim import NiNo
from nino.schedule import k_schedule
from nino.tasks import build_task_model
from nino.train import TrainRunConfig, run
from nino.trajectories import Trajectory, TrajectoryWriter, open_dataset, snapshot_spacing


def small_net(hid: int = 8) -> NiNoNet:
    torch.manual_seed(0)
    return NiNoNet(hid=hid, wte_pos_enc=False)


def official_file(path):
    """A file in the official layout: only 'state_dict' and 'model_args', no spacing key."""
    torch.save({"state_dict": small_net().state_dict(), "model_args": {"wte_pos_enc": False, "hid": 8}}, path)
    return path


def nino_warnings(caplog):
    return [r for r in caplog.records if r.name == "nino" and r.levelno == logging.WARNING]


def test_official_checkpoint_without_the_key_means_200_steps_and_period_1000(tmp_path, caplog):
    net = load_nino(official_file(tmp_path / "nino.pt"))
    assert net.snapshot_every == 200
    with caplog.at_level(logging.WARNING, logger="nino"):
        opt = NiNo(model=torch.nn.Linear(3, 2), ckpt=tmp_path / "nino.pt", max_steps=10_000)
    assert (opt.period, opt.snapshot_every) == (1000, 200)
    assert opt.schedule == k_schedule(10_000, 1000)  # the spec's 10k-step schedule, 40 ... 1
    assert nino_warnings(caplog) == []


def test_our_checkpoint_records_its_spacing_and_sets_the_period(tmp_path, caplog):
    path = save_nino(small_net(), tmp_path / "ours.pt", snapshot_every=20)
    assert torch.load(path, weights_only=True)["snapshot_every"] == 20
    net = load_nino(path)
    assert net.snapshot_every == 20
    with caplog.at_level(logging.WARNING, logger="nino"):
        opt = NiNo(model=torch.nn.Linear(3, 2), ckpt=path, max_steps=1000)
        assert NiNo(model=torch.nn.Linear(3, 2), nino_model=net, period=100).period == 100  # explicit, agrees
    assert (opt.period, opt.snapshot_every) == (100, 20)
    assert nino_warnings(caplog) == []
    assert save_nino(net, tmp_path / "again.pt") and load_nino(tmp_path / "again.pt").snapshot_every == 20


def test_shipped_checkpoint_is_used_every_200_steps_by_default():
    assert load_nino(None).snapshot_every == 40  # meta-trained on every 2nd snapshot of 20-step collections
    opt = NiNo(model=torch.nn.Linear(3, 2), max_steps=1000)
    assert (opt.period, opt.snapshot_every) == (200, 40)
    assert TrainRunConfig().period is None  # `nino train` and the bench follow the checkpoint


def test_a_period_in_another_unit_logs_one_warning_naming_the_expected_period(caplog):
    net = small_net()
    net.snapshot_every = 20
    with caplog.at_level(logging.WARNING, logger="nino"):
        opt = NiNo(model=torch.nn.Linear(3, 2), nino_model=net, period=1000, max_steps=5000)
    assert opt.period == 1000  # the user's choice is kept
    (record,) = nino_warnings(caplog)
    message = record.getMessage()
    assert "20 steps apart" in message and "period=100" in message and "every 200 steps" in message


def test_bad_spacing_values_are_rejected(tmp_path):
    blob = {"state_dict": small_net().state_dict(), "model_args": {"wte_pos_enc": False, "hid": 8}}
    torch.save({**blob, "snapshot_every": 0}, tmp_path / "zero.pt")
    with pytest.raises(CheckpointError, match="snapshot_every"):
        load_nino(tmp_path / "zero.pt")
    with pytest.raises(CheckpointError, match="snapshot_every"):
        save_nino(small_net(), tmp_path / "bad.pt", snapshot_every=2.5)
    assert not (tmp_path / "bad.pt").exists()


def test_max_k_caps_the_schedule_only_when_asked():
    net = small_net()
    plain = NiNo(model=torch.nn.Linear(3, 2), nino_model=net, period=1000, max_steps=10_000)
    capped = NiNo(model=torch.nn.Linear(3, 2), nino_model=net, period=1000, max_steps=10_000, max_k=10)
    assert plain.schedule == [40, 33, 26, 21, 16, 11, 8, 5, 3, 1]  # spec A.7, unchanged by default
    assert capped.schedule == [10, 10, 10, 10, 10, 10, 8, 5, 3, 1]
    with pytest.raises(ConfigError, match="max_k"):
        NiNo(model=torch.nn.Linear(3, 2), nino_model=net, period=1000, max_k=0)


def test_metatrain_writes_the_spacing_of_its_trajectories(nino_ckpt):
    """The conftest dataset has a snapshot every 10 steps."""
    assert torch.load(nino_ckpt, weights_only=True)["snapshot_every"] == 10
    assert load_nino(nino_ckpt).snapshot_every == 10
    assert json.loads((nino_ckpt.parent / "summary.json").read_text())["snapshot_every"] == 10
    opt = NiNo(model=torch.nn.Linear(3, 2), ckpt=nino_ckpt, max_steps=200)
    assert opt.period == 50


def test_train_run_uses_the_checkpoints_period(nino_ckpt):
    cfg = TrainRunConfig(task="mlp-digits", steps=60, eval_every=30, ckpt=str(nino_ckpt), progress=False)
    result = run(cfg, "nino")
    assert result.period == 50 and [r["step"] for r in result.nowcasts] == [50]


def _write_mlp_runs(root, spacings):
    model = build_task_model("mlp-digits")
    names = [n for n, _ in model.named_parameters()]
    shapes = [list(p.shape) for p in model.parameters()]
    writer = TrajectoryWriter(root)
    rng = np.random.default_rng(0)
    for seed, every in enumerate(spacings):
        states = rng.standard_normal((20, sum(int(np.prod(s)) for s in shapes))).astype("f4")
        meta = Trajectory(file="", task="mlp-digits", model="mlp-digits", seed=seed, param_names=names,
                          param_shapes=shapes, steps=list(range(0, 20 * every, every)))  # fmt: skip
        writer.add(meta, states)


def test_metatrain_refuses_trajectories_of_mixed_spacings(tmp_path, capsys):
    _write_mlp_runs(tmp_path / "data", [10, 20])
    with pytest.raises(DataError, match="mix snapshot spacings.*10 steps apart.*20"):
        metatrain(MetatrainConfig(hid=8, steps=2, min_future=5, horizon=10, progress=False),
                  tmp_path / "data", tmp_path / "out")  # fmt: skip
    assert not (tmp_path / "out").exists()
    argv = ["metatrain", "--config", "metatrain-tiny", "--data", str(tmp_path / "data"), "--output"]
    assert nino_main([*argv, str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mix snapshot spacings" in err[0]


def test_spacing_is_steps_times_stride_and_the_reference_layout_is_200(tmp_path):
    _write_mlp_runs(tmp_path / "ours", [20, 20])
    assert snapshot_spacing(open_dataset(tmp_path / "ours").trajectories) == 20
    strided = Trajectory(file="x", task="t", model="m", seed=0, param_names=[], param_shapes=[],
                         steps=[0, 4, 8], stride=50)  # fmt: skip
    assert strided.snapshot_every() == 200
    (tmp_path / "ref" / "fm-16").mkdir(parents=True)
    np.zeros((3, 14_378), np.float16).tofile(tmp_path / "ref" / "fm-16" / "a.dat")
    assert snapshot_spacing(open_dataset(tmp_path / "ref").trajectories) == 200  # 4 steps x stride 50
    unknown = Trajectory(file="y", task="t", model="m", seed=0, param_names=[], param_shapes=[])
    with pytest.raises(DataError, match="y .*spacing"):
        snapshot_spacing([unknown])
    uneven = Trajectory(
        file="z", task="t", model="m", seed=0, param_names=[], param_shapes=[], steps=[0, 5, 20]
    )
    with pytest.raises(DataError, match="not evenly spaced"):
        uneven.snapshot_every()
