"""NiNo inside learngene-core's Trainer: the after-step callback, and NiNo as the (accelerate) optimizer."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learngene_core.config import TrainConfig
from learngene_core.metrics import read_metrics
from learngene_core.tasks import ClassificationTask
from learngene_core.trainer import Trainer
from nino.graph import flatten_params
from nino.model import NiNoNet
from nino.optim import NiNo, NiNoCallback

PERIOD, STEPS = 10, 20


def make_trainer(tmp_path, callbacks=()):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32)
    cfg = TrainConfig(
        max_steps=STEPS, lr=1e-2, warmup_steps=0, log_every=5, progress=False, max_grad_norm=None
    )
    return Trainer(
        model, cfg, ClassificationTask(), train, val, output_dir=tmp_path, seed=0, callbacks=callbacks
    )


def nino_net() -> NiNoNet:
    torch.manual_seed(0)
    net = NiNoNet(hid=16, wte_pos_enc=False)
    with torch.no_grad():
        net.edge_out.fc[2].bias.fill_(0.05)  # a definite small forward move
    return net


def test_callback_nowcasts_after_every_period_and_logs_to_metrics(tmp_path):
    callback = NiNoCallback(nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS, guard_factor=None)
    trainer = make_trainer(tmp_path, [callback])
    trainer.fit()
    history = callback.nino.history
    assert [r["step"] for r in history] == [10, 20]
    assert all(r["accepted"] and r["loss_before"] > 0 and r["loss_after"] > 0 for r in history)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "nino"]
    assert [(r["step"], r["k"]) for r in records] == [(10, 40), (20, 1)]
    # the Trainer's optimizer made all 20 base steps; NiNo never touched its state
    state = trainer.optimizer.state_dict()["state"]
    assert all(int(s["step"]) == STEPS for s in state.values())


def test_callback_jump_changes_the_parameters_the_trainer_continues_from(tmp_path):
    seen = {}

    class Spy:
        def on_step_end(self, trainer):
            seen[trainer.state.step] = flatten_params(trainer.model)

    callback = NiNoCallback(nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS, guard_factor=None)
    make_trainer(tmp_path / "a", [Spy(), callback, Spy()]).fit()  # Spy before and after the callback
    after_jump = seen[PERIOD]  # the later Spy overwrote the entry: parameters after the jump
    seen_plain = {}

    class PlainSpy:
        def on_step_end(self, trainer):
            seen_plain[trainer.state.step] = flatten_params(trainer.model)

    make_trainer(tmp_path / "b", [PlainSpy()]).fit()
    assert torch.equal(seen[PERIOD - 1], seen_plain[PERIOD - 1])  # identical until the first jump
    assert torch.all(after_jump > seen_plain[PERIOD])  # NiNo moved every parameter forward


def test_callback_stops_nowcasting_once_the_held_out_loss_rises(tmp_path):
    """NiNo's default over-fitting stop in the Trainer: the held-out loss (here scripted: falling until step 12,
    rising after) is measured at every snapshot (every 2 steps); from the first rise on, no more jumps."""
    scripted = lambda trainer: 1.0 / trainer.state.step if trainer.state.step < 12 else trainer.state.step  # noqa: E731
    callback = NiNoCallback(nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS, loss_fn=scripted)
    trainer = make_trainer(tmp_path, [callback])
    trainer.fit()
    nino = callback.nino
    assert nino.stopped_at == 12
    assert [(r["step"], r["accepted"]) for r in nino.history] == [(10, True)]  # none at 20
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "nino"]
    assert [r["step"] for r in records] == [10]


def test_callback_rejects_a_nino_with_its_own_base_optimizer():
    model = nn.Linear(2, 2)
    nino = NiNo(torch.optim.SGD(model.parameters(), lr=0.1), model, nino_model=nino_net(), period=PERIOD)
    with pytest.raises(Exception, match="base_opt=None"):
        NiNoCallback(nino)


def test_nino_can_be_the_trainers_optimizer_under_accelerate(tmp_path):
    """What a Trainer `optimizer wrapper` hook would do: NiNo inside accelerate's optimizer + LR scheduler."""
    trainer = make_trainer(tmp_path)
    inner = trainer.optimizer.optimizer  # accelerate's AcceleratedOptimizer wraps the AdamW
    nino = NiNo(inner, trainer.model, nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS)
    trainer.optimizer.optimizer = nino
    trainer.fit()
    assert [r["step"] for r in nino.history] == [10, 20]
    # 20 calls = 18 AdamW updates + 2 nowcasts (A.8); the scheduler stepped every call
    assert all(int(s["step"]) == STEPS - 2 for s in inner.state_dict()["state"].values())
    assert trainer.scheduler.last_epoch == STEPS


def _wild_checkpoint(path):
    """A WNN+ whose every jump moves each parameter 40 sigma: always refused by the held-out check."""
    from nino.checkpoint import save_nino
    from nino.model import WNNPlus

    net = WNNPlus(hid=4)
    with torch.no_grad():
        net.edge_mlp.fc[-1].bias.fill_(40.0)
    return save_nino(net, path, snapshot_every=10)


@pytest.mark.parametrize("check_after", [None, 0])  # delayed (default: 5 steps here) and immediate check
def test_refused_jumps_fall_back_to_the_base_step_so_the_run_equals_adamw(tmp_path, check_after):
    from nino.train import TrainRunConfig, run

    cfg = TrainRunConfig(task="mlp-digits", steps=100, eval_every=25, period=50, progress=False,
                         ckpt=str(_wild_checkpoint(tmp_path / "wild.pt")), check_after=check_after)  # fmt: skip
    adamw, guarded = run(cfg, "adamw"), run(cfg, "nino")
    # delayed: no jump at call 100, its check would end after the last step; none after the over-fitting stop
    planned = [50] if check_after is None else [50, 100]
    stop = guarded.stopped_at or 101
    assert [r["step"] for r in guarded.nowcasts] == [s for s in planned if s < stop] != []
    assert not any(r["accepted"] for r in guarded.nowcasts)
    reference = "loss_base" if check_after is None else "loss_before"
    assert all(r["loss_after"] > r[reference] for r in guarded.nowcasts)
    # bitwise: same init, batches and base updates (an evaluation inside a delayed check's window, here at
    # step 50, sees the jumped run under test)
    open_window = {s for r in guarded.nowcasts for s in range(r["step"], r.get("checked_at", r["step"]))}
    assert [v for v in guarded.val_losses() if v[0] not in open_window] == [
        v for v in adamw.val_losses() if v[0] not in open_window
    ]
    unguarded = run(dataclasses.replace(cfg, guard_factor=None), "nino")
    assert all(r["accepted"] for r in unguarded.nowcasts)
    assert unguarded.val_losses()[-1][1] > adamw.val_losses()[-1][1]


def test_holdout_is_a_random_twelfth_of_the_training_split_and_never_trained_on():
    from learngene_core.config import DataConfig
    from learngene_core.data import build_datasets
    from nino.tasks import _tensors, build_task, evaluate

    task = build_task("mlp-digits", 0, 0)
    n_train, n_hold = len(task.train.inputs), len(task.holdout.inputs)
    assert n_hold == (n_train + n_hold) // 12
    split, _ = _tensors(build_datasets(DataConfig(name="digits", batch_size=64), 0).train)
    rows = lambda x: sorted(map(bytes, x.flatten(1).numpy()))  # noqa: E731
    assert rows(torch.cat([task.train.inputs, task.holdout.inputs])) == rows(split)  # a partition of it
    assert not set(rows(task.holdout.inputs)) & set(rows(task.train.inputs))
    assert rows(task.holdout.inputs) != rows(split[-n_hold:])  # not the split's tail (digits: by writer)
    assert torch.equal(build_task("mlp-digits", 1, 0).holdout.inputs, task.holdout.inputs)  # data_seed only
    assert task.holdout_loss() == evaluate(task, task.model, task.holdout)["loss"]
    assert task.holdout_loss() != task.evaluate()["loss"]
