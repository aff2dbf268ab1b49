"""The functions the speed-up bench and meta-training report with: steps-to-reach, the steps ratio, and the
"no change" (persistence) baseline of the meta-training loss."""

import pytest
import torch

from nino.metatrain import Window, batch_loss, persistence_loss
from nino.train import RunResult, steps_ratio, steps_to_reach


def result(losses: list[float], every: int = 10, train: list[float] | None = None) -> RunResult:
    records = [{"step": i * every, "split": "val", "loss": v} for i, v in enumerate(losses)]
    records += [{"step": i * every, "split": "train", "loss": v} for i, v in enumerate(train or [])]
    return RunResult("adamw", records, 1.0, 0.0, [])


def test_steps_to_reach_is_the_first_evaluated_step_at_or_below_the_target():
    run = result([2.0, 1.0, 0.5, 0.7, 0.4])
    assert steps_to_reach(run, 0.5) == 20  # equal counts, and the later dip to 0.4 does not matter
    assert steps_to_reach(run, 0.45) == 40
    assert steps_to_reach(run, 0.1) is None
    assert steps_to_reach(result([0.1, 0.3]), 0.2) is None  # step 0 (before training) never counts


def test_steps_ratio_counts_both_arms_the_same_way():
    adamw = result([2.0, 1.0, 0.8, 0.6, 0.5, 0.5])  # reaches its final 0.5 at step 40 of 50
    nino = result([2.0, 0.9, 0.5, 0.45, 0.6, 0.55])  # reaches 0.5 at step 20
    assert steps_ratio(nino, adamw, 0.5) == pytest.approx(0.5)  # 20 / 40, never 20 / 50 (AdamW's total)
    assert steps_ratio(adamw, nino, 0.5) == pytest.approx(2.0)
    assert steps_ratio(nino, adamw, 0.3) is None


def test_steps_ratio_on_the_training_curve_reads_only_that_split():
    adamw = result([1.0, 1.0, 1.0], train=[2.0, 0.5, 0.1])
    nino = result([1.0, 0.1, 0.1], train=[2.0, 0.1, 0.1])
    assert steps_to_reach(nino, 0.1, "train") == 10 and steps_to_reach(adamw, 0.1, "train") == 20
    assert steps_ratio(nino, adamw, 0.1, "train") == pytest.approx(0.5)
    assert steps_ratio(nino, adamw, 0.1) is None  # AdamW's validation curve never gets there


class _Last(torch.nn.Module):
    """Predicts "no change": every horizon equals the most recent input state (slot 0)."""

    def forward(self, data):
        last = data.edge_attr.view(data.edge_attr.shape[0], -1, 5)[:, :, -1:]
        return last.expand(-1, -1, 40)


def _window(target: torch.Tensor, latest: torch.Tensor) -> Window:
    from torch_geometric.data import Data

    p = latest.shape[0]
    attr = torch.zeros(p, 5)
    attr[:, -1] = latest
    data = Data(edge_attr=attr, edge_index=torch.zeros(2, p, dtype=torch.long), num_nodes=1)
    return Window(data, torch.arange(p), torch.zeros(p, dtype=torch.long), target, latest)


def test_persistence_loss_hand_computed_and_equal_to_a_no_change_model():
    w1 = _window(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([1.0, 1.0]))  # errors 0, 1, 1, 1
    w2 = _window(torch.tensor([[3.0]]), torch.tensor([0.0]))  # error 3
    assert persistence_loss([w1, w2]) == pytest.approx((0 + 1 + 1 + 1 + 3) / 5)
    assert batch_loss(_Last(), [w1, w2]).item() == pytest.approx(persistence_loss([w1, w2]))
