"""NiNo inside learngene-core's Trainer: the after-step callback, and NiNo as the (accelerate) optimizer."""

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
    callback = NiNoCallback(nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS)
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

    callback = NiNoCallback(nino_model=nino_net(), period=PERIOD, ctx=5, max_steps=STEPS)
    make_trainer(tmp_path / "a", [Spy(), callback, Spy()]).fit()  # Spy before and after the callback
    after_jump = seen[PERIOD]  # the later Spy overwrote the entry: parameters after the jump
    seen_plain = {}

    class PlainSpy:
        def on_step_end(self, trainer):
            seen_plain[trainer.state.step] = flatten_params(trainer.model)

    make_trainer(tmp_path / "b", [PlainSpy()]).fit()
    assert torch.equal(seen[PERIOD - 1], seen_plain[PERIOD - 1])  # identical until the first jump
    assert torch.all(after_jump > seen_plain[PERIOD])  # NiNo moved every parameter forward


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
