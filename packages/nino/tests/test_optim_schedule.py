"""The NiNo wrapper's schedule (spec A.8): snapshots, nowcast calls, untouched base state, closures."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.errors import ConfigError, ModelError
from nino.graph import flatten_params
from nino.model import NiNoNet, WNNPlus
from nino.optim import NiNo

PERIOD, CTX = 10, 5


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))


def make_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


def small_nino(**kwargs) -> NiNoNet:
    torch.manual_seed(0)
    return NiNoNet(hid=16, wte_pos_enc=False, **kwargs)


def wrap(model, base=None, **kwargs) -> NiNo:
    base = base if base is not None else torch.optim.AdamW(model.parameters(), lr=1e-2)
    args = {"period": PERIOD, "ctx": CTX, "max_steps": 40, "nino_model": small_nino(), **kwargs}
    return NiNo(base_opt=base, model=model, **args)


def readme_step(opt, model, x, y) -> None:
    """One iteration in the seed README's shape."""
    if opt.need_grads:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
    opt.step()


class Jump:
    """Stands in for `NiNo.predict`: records its inputs and returns the latest state + 1."""

    def __init__(self):
        self.calls = []

    def __call__(self, states, k):
        self.calls.append(([s.clone() for s in states], k))
        return states[-1] + 1.0


def test_snapshots_are_the_parameters_before_each_fifth_of_a_period_and_jump_replaces_the_update():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model)
    opt.predict = jump = Jump()
    before = {}
    for call in range(1, 21):
        before[call] = flatten_params(model)
        readme_step(opt, model, x, y)
        if call == PERIOD:
            # the nowcast call: parameters = last snapshot + jump, no base update in that call
            torch.testing.assert_close(flatten_params(model), before[PERIOD] + 1.0)
    assert len(jump.calls) == 2
    (states, k), (states2, k2) = jump.calls
    for got, call in zip(states, [2, 4, 6, 8, 10]):
        assert torch.equal(got, before[call])
    for got, call in zip(states2, [12, 14, 16, 18, 20]):
        assert torch.equal(got, before[call])
    assert (k, k2) == (opt.schedule[0], opt.schedule[1]) == (40, 21)


def test_need_grads_is_false_exactly_on_nowcast_calls():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model)
    flags = []
    for _ in range(35):
        flags.append(opt.need_grads)
        readme_step(opt, model, x, y)
    assert [i + 1 for i, f in enumerate(flags) if not f] == [10, 20, 30]
    assert [r["step"] for r in opt.history] == [10, 20, 30]


def test_base_optimizer_state_is_untouched_by_the_nowcast():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model)
    for _ in range(PERIOD - 1):
        readme_step(opt, model, x, y)
    state = copy.deepcopy(opt.base_opt.state_dict())
    assert not opt.need_grads
    readme_step(opt, model, x, y)  # the nowcast
    after = opt.base_opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for i, s in state["state"].items():
        for key, value in s.items():
            assert torch.equal(after["state"][i][key], value), key
    assert int(after["state"][0]["step"]) == PERIOD - 1
    readme_step(opt, model, x, y)  # the base optimizer simply continues
    assert int(opt.base_opt.state_dict()["state"][0]["step"]) == PERIOD


def test_between_nowcasts_the_wrapper_is_transparent():
    model_a, model_b, (x, y) = make_model(), make_model(), make_batch()
    plain = torch.optim.AdamW(model_a.parameters(), lr=1e-2)
    opt = wrap(model_b)
    for _ in range(PERIOD - 1):
        plain.zero_grad()
        F.cross_entropy(model_a(x), y).backward()
        plain.step()
        readme_step(opt, model_b, x, y)
    assert torch.equal(flatten_params(model_a), flatten_params(model_b))


def test_step_with_closure_logs_loss_before_and_after_each_nowcast():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model, guard_factor=None)  # log only: every jump kept

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    losses = [opt.step(closure) for _ in range(2 * PERIOD)]
    assert all(isinstance(v, (float, torch.Tensor)) for v in losses)
    assert [r["step"] for r in opt.history] == [10, 20]
    for record in opt.history:
        assert record["accepted"] and record["k"] in opt.schedule
        assert record["loss_before"] > 0 and record["loss_after"] > 0
    # the logged "after" loss is the loss of the parameters the nowcast wrote
    assert opt.history[-1]["loss_after"] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    assert float(losses[-1]) == pytest.approx(opt.history[-1]["loss_before"])


def test_real_graph_nowcast_moves_parameters_and_training_goes_on():
    model, (x, y) = make_model(), make_batch()
    net = small_nino()
    with torch.no_grad():
        net.edge_out.fc[2].bias.fill_(0.1)  # a definite forward move of +0.1 sigma per parameter
    opt = wrap(model, nino_model=net)
    before = None
    for call in range(1, 3 * PERIOD + 1):
        if call == PERIOD:
            before = flatten_params(model)
        readme_step(opt, model, x, y)
        if call == PERIOD:
            moved = flatten_params(model) - before
            assert torch.all(moved > 0)  # every parameter moved by its tensor's sigma * ~0.1
    assert len(opt.history) == 3 and all(r["accepted"] for r in opt.history)


def test_nan_prediction_is_rejected_with_a_warning_and_training_continues():
    model, (x, y) = make_model(), make_batch()
    net = small_nino()
    with torch.no_grad():
        net.edge_out.fc[2].bias.fill_(float("nan"))
    opt = wrap(model, nino_model=net)
    for _ in range(PERIOD - 1):
        readme_step(opt, model, x, y)
    before = flatten_params(model)
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        readme_step(opt, model, x, y)
    assert torch.equal(flatten_params(model), before)
    assert opt.history[-1]["accepted"] is False and "non-finite" in opt.history[-1]["reason"]
    readme_step(opt, model, x, y)  # the next call is an ordinary base step
    assert torch.isfinite(flatten_params(model)).all() and not torch.equal(flatten_params(model), before)


def test_guard_rejects_a_nowcast_whose_loss_jumps_and_restores_the_parameters():
    def run(guard):
        model, (x, y) = make_model(), make_batch()
        net = small_nino()
        with torch.no_grad():
            net.edge_out.fc[2].bias.fill_(40.0)  # a wild jump: 40 sigma for every parameter
        opt = wrap(model, nino_model=net, guard_factor=guard)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        before = None
        for call in range(1, PERIOD + 1):
            if call == PERIOD:
                before = flatten_params(model)
            opt.step(closure)
        return opt.history[-1], before, flatten_params(model)

    free, _, _ = run(None)
    assert free["accepted"] and free["loss_after"] > 1.5 * free["loss_before"]
    guarded, before, after = run(1.5)
    assert not guarded["accepted"] and "1.5" in guarded["reason"]
    assert torch.equal(after, before)


def test_frozen_parameters_are_left_alone():
    model, (x, y) = make_model(), make_batch()
    model[0].bias.requires_grad_(False)
    frozen = model[0].bias.detach().clone()
    net = small_nino()
    with torch.no_grad():
        net.edge_out.fc[2].bias.fill_(1.0)
    opt = wrap(
        model,
        base=torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1),
        nino_model=net,
    )
    for _ in range(PERIOD):
        readme_step(opt, model, x, y)
    assert opt.history[-1]["accepted"] and torch.equal(model[0].bias, frozen)


def test_state_dict_round_trip_and_lr_scheduler():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)  # NiNo is a torch Optimizer
    for _ in range(7):
        readme_step(opt, model, x, y)
        sched.step()
    assert opt.base_opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**7)
    state = opt.state_dict()
    assert state["nino"]["step_idx"] == 7 and len(state["nino"]["states"]) == 3
    fresh = wrap(model)
    fresh.load_state_dict(state)
    assert fresh.step_idx == 7 and all(torch.equal(a, b) for a, b in zip(fresh.states, opt.states))
    assert fresh.base_opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**7)
    assert [fresh.need_grads, fresh.step_idx] == [True, 7]


def test_conv_kernels_use_all_nine_slots():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    net = small_nino()
    with torch.no_grad():
        net.edge_out.fc[2].bias.zero_()
        net.edge_out.fc[2].bias[8 * 40 : 9 * 40] = 1.0  # only kernel slot 8 (the last tap) gets a jump
    opt = wrap(model, nino_model=net)
    assert opt.graph.max_feat_size == 9
    for _ in range(PERIOD - 1):
        readme_step(opt, model, x, y)
    before = [p.detach().clone() for p in model.parameters()]
    readme_step(opt, model, x, y)
    moved = (model[0].weight - before[0]).flatten(1)  # [out, in * 9]
    assert torch.all(moved[:, 8] > 0) and torch.allclose(moved[:, :8], torch.zeros(4, 8), atol=1e-3)


def test_wnn_plus_works_as_the_nowcaster():
    model, (x, y) = make_model(), make_batch()
    opt = wrap(model, nino_model=WNNPlus(hid=8))
    for _ in range(PERIOD):
        readme_step(opt, model, x, y)
    assert opt.history[-1]["accepted"]


def test_bad_configuration_is_reported():
    model = make_model()
    with pytest.raises(ConfigError, match="multiple of ctx"):
        wrap(model, period=7)
    with pytest.raises(ConfigError, match="ctx=4"):
        wrap(model, ctx=4, period=8)
    with pytest.raises(ConfigError, match="guard_factor"):
        wrap(model, guard_factor=0)
    opt = NiNo(base_opt=None, nino_model=small_nino(), period=PERIOD)
    with pytest.raises(ModelError, match="set_model"):
        opt.step()


def test_diverged_parameters_stop_the_nowcast_with_a_training_error():
    from learngene_core.errors import TrainingError

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    opt = NiNo(torch.optim.SGD(model.parameters(), lr=0.1), model=model, period=5, nino_model=WNNPlus(hid=4))
    for _ in range(4):
        opt.step()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="NaN/Inf.*lower its learning rate"):
        opt.step()


# ------------------------------------------------------------------------------------------ delayed check
def dropout_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 3))


def wild_nino() -> NiNoNet:
    net = small_nino()
    with torch.no_grad():
        net.edge_out.fc[2].bias.fill_(40.0)  # 40 sigma for every parameter: far worse than the base run
    return net


def delayed_setup(model, predict=None, held=None, **kwargs):
    """NiNo with a held-out loss (eval mode) on one batch, and a gradient closure on another."""
    (x, y), g = make_batch(), torch.Generator().manual_seed(2)
    hx, hy = held or (torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g))

    @torch.no_grad()
    def holdout() -> float:
        model.eval()
        loss = float(F.cross_entropy(model(hx), hy))
        model.train()
        return loss

    args = {"check_after": 1, "max_steps": 1000, "holdout": holdout, **kwargs}
    opt = wrap(model, **args)
    if predict is not None:
        opt.predict = predict

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return opt, closure


def train_delayed(model, calls: int, predict=None, held=None, **kwargs):
    """`calls` steps of `delayed_setup`'s NiNo."""
    opt, closure = delayed_setup(model, predict, held, **kwargs)
    torch.manual_seed(7)  # the dropout masks
    for _ in range(calls):
        opt.step(closure)
    return opt


def adamw_run(model, calls: int) -> torch.optim.AdamW:
    (x, y) = make_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(7)
    for _ in range(calls):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return opt


def adamw_params(calls: int) -> torch.Tensor:
    model = make_model()
    adamw_run(model, calls)
    return flatten_params(model)


def test_delayed_check_rolls_every_bad_jump_back_to_the_base_run_bitwise_dropout_masks_included():
    model, plain = dropout_model(), dropout_model()
    # held-out = the training batch: its loss falls, so the over-fitting stop (on by default) lets every jump come
    opt = train_delayed(model, 3 * PERIOD + 3, nino_model=wild_nino(), check_after=1, held=make_batch())
    adamw = adamw_run(plain, 3 * PERIOD + 3)
    assert opt.stopped_at is None
    assert [(r["step"], r["checked_at"], r["accepted"]) for r in opt.history] == [
        (10, 11, False), (20, 21, False), (30, 31, False)
    ]  # fmt: skip
    assert all(r["loss_after"] > r["loss_base"] for r in opt.history)
    assert torch.equal(flatten_params(model), flatten_params(plain))
    ours, theirs = opt.base_opt.state_dict()["state"], adamw.state_dict()["state"]
    for i, values in theirs.items():
        for key, value in values.items():
            assert torch.equal(ours[i][key], value), key


def test_delayed_check_keeps_a_jump_that_beats_the_base_run():
    future = make_model()
    adamw_run(future, 300)  # where AdamW is 300 steps later: a perfect nowcast
    target = flatten_params(future)
    model = make_model()
    jump = lambda states, k: target.clone()  # noqa: E731
    opt = train_delayed(model, PERIOD + 1, predict=jump, held=make_batch())  # held-out = what AdamW fits
    [record] = opt.history
    assert record["accepted"] and record["loss_after"] < record["loss_base"]
    # the run continues from the jump: its AdamW state skipped the jump call (A.8), the shadow's did not
    assert int(opt.base_opt.state_dict()["state"][0]["step"]) == PERIOD
    assert not torch.equal(flatten_params(model), adamw_params(PERIOD + 1))


def test_delayed_check_compares_with_the_base_run_not_with_the_loss_before_the_jump():
    """A "jump" to where the run already is: one base step behind the shadow at the check, though lower than
    before the jump (one batch, loss falls every step). The delayed check refuses it; the immediate one keeps it."""
    model = make_model()
    stay = lambda states, k: states[-1].clone()  # noqa: E731
    opt = train_delayed(model, PERIOD + 1, predict=stay, held=make_batch())
    [record] = opt.history
    assert record["loss_after"] < record["loss_before"] and record["loss_after"] > record["loss_base"]
    assert not record["accepted"]
    assert torch.equal(flatten_params(model), adamw_params(PERIOD + 1))
    immediate = train_delayed(make_model(), PERIOD, predict=stay, held=make_batch(), check_after=0)
    assert immediate.history[-1]["accepted"]


def test_no_jump_whose_delayed_check_would_end_after_max_steps():
    model = make_model()
    opt = train_delayed(model, PERIOD, nino_model=wild_nino(), max_steps=PERIOD)
    assert opt.history == []
    assert torch.equal(flatten_params(model), adamw_params(PERIOD))


def test_delayed_check_bad_settings_are_config_errors():
    model = make_model()
    with pytest.raises(ConfigError, match="snapshot spacing"):
        wrap(model, check_after=PERIOD // CTX)
    with pytest.raises(ConfigError, match="check_after"):
        wrap(model, check_after=-1)
    opt = wrap(model, holdout=lambda: 1.0)  # delayed by default: snapshot_every // 2 = 1
    assert opt.check_after == 1
    with pytest.raises(ConfigError, match="step\\(closure\\)"):
        for _ in range(PERIOD):
            readme_step(opt, model, *make_batch())


# ------------------------------------------------------------------------------------------ over-fitting stop
class Scripted:
    """A held-out loss that falls until call `turn` and rises after it (a run that starts to over-fit)."""

    def __init__(self, turn: int):
        self.turn, self.opt = turn, None

    def __call__(self) -> float:
        t = self.opt.step_idx + 1  # the call being made
        return 1.0 / t if t < self.turn else float(t)


def test_once_the_held_out_loss_rises_above_its_lowest_no_more_jumps_and_the_base_optimizer_trains_alone():
    model, (x, y) = make_model(), make_batch()
    holdout = Scripted(turn=25)
    opt = wrap(model, holdout=holdout, check_after=1, max_steps=1000)
    holdout.opt = opt
    opt.predict = lambda states, k: states[-1] + 1e-3  # a small jump; the scripted loss keeps it

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(26):
        opt.step(closure)
    assert opt.stopped_at == 26  # the first snapshot (every 2 calls) after the turn
    assert [(r["step"], r["accepted"]) for r in opt.history] == [(10, True), (20, True)]
    plain_model = copy.deepcopy(model)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=1e-2)
    plain.load_state_dict(copy.deepcopy(opt.base_opt.state_dict()))  # load_state_dict would share the tensors
    assert opt.need_grads
    for _ in range(4 * PERIOD):  # calls 27-66: the periods ending at 30, 40, 50, 60 make no jump
        opt.step(closure)
        plain.zero_grad()
        F.cross_entropy(plain_model(x), y).backward()
        plain.step()
    assert len(opt.history) == 2 and opt.states == []
    assert torch.equal(flatten_params(model), flatten_params(plain_model))


def test_overfitting_stop_is_off_without_a_guard_or_with_tolerance_none():
    for kwargs in ({"guard_factor": None}, {"overfit_tolerance": None}):
        model = make_model()
        holdout = Scripted(turn=5)
        opt = wrap(model, holdout=holdout, check_after=1, max_steps=1000, **kwargs)
        holdout.opt = opt
        opt.predict = lambda states, k: states[-1] + 1e-3
        (x, y) = make_batch()

        def closure(opt=opt, model=model, x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(2 * PERIOD + 1):
            opt.step(closure)
        assert opt.stopped_at is None and [r["step"] for r in opt.history] == [10, 20]
    with pytest.raises(ConfigError, match="overfit_tolerance"):
        wrap(make_model(), overfit_tolerance=-0.1)


@pytest.mark.parametrize("kept", [False, True])
def test_state_dict_inside_a_delayed_check_window_resumes_bitwise(kept):
    """Saved 2 calls into a 3-call window (period 20, snapshots every 4): the resumed run finishes the check
    against the same shadow and ends bitwise equal to the uninterrupted run (dropout masks included)."""
    import io

    future = dropout_model()
    adamw_run(future, 300)
    target = flatten_params(future)
    jump = (lambda states, k: target.clone()) if kept else (lambda states, k: states[-1] + 40.0)

    def start():
        model = dropout_model()
        return model, *delayed_setup(model, jump, make_batch(), period=20, check_after=3)

    model, opt, closure = start()
    torch.manual_seed(7)
    for _ in range(22):
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}, buffer)
    for _ in range(8):
        opt.step(closure)
    assert [(r["step"], r["checked_at"], r["accepted"]) for r in opt.history] == [(20, 23, kept)]

    resumed_model, resumed, resumed_closure = start()
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["opt"])
    torch.set_rng_state(saved["rng"])
    for _ in range(8):
        resumed.step(resumed_closure)
    untimed = lambda history: [{k: v for k, v in r.items() if "seconds" not in k} for r in history]  # noqa: E731
    assert untimed(resumed.history) == untimed(opt.history)
    assert torch.equal(flatten_params(resumed_model), flatten_params(model))
    ours, theirs = resumed.base_opt.state_dict()["state"], opt.base_opt.state_dict()["state"]
    for i, values in theirs.items():
        for key, value in values.items():
            assert torch.equal(ours[i][key], value), key
