"""The core Trainer: learning, exact resume, output-dir safety, NaN handling, logging, schedule and hooks."""

import math
import os
import stat
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from learngene_core.checkpoint import load_model_weights, load_training_state, load_weights, read_metadata
from learngene_core.config import TrainConfig
from learngene_core.errors import CheckpointError, ModelError, TrainingError
from learngene_core.metrics import read_metrics
from learngene_core.tasks import CausalLMTask, ClassificationTask
from learngene_core.testing import assert_same_safetensors, model_data_probes
from learngene_core.trainer import LAST_DIR, Trainer, build_scheduler, default_param_groups

pytestmark = pytest.mark.usefixtures("single_thread")


def config(**overrides) -> TrainConfig:
    base = dict(epochs=2, lr=0.05, warmup_steps=0, log_every=1, progress=False)
    return TrainConfig(**{**base, **overrides})


def make_trainer(out, loaders, model, cfg, **kwargs) -> Trainer:
    train, val, test = loaders
    return Trainer(model, cfg, ClassificationTask(), train, val, test, output_dir=out, seed=0, **kwargs)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder:
    """Counts callback invocations and optionally interrupts training after a given step."""

    def __init__(self, interrupt_at: int | None = None):
        self.interrupt_at = interrupt_at
        self.steps: list[int] = []
        self.evaluations: list[tuple[str, int, dict]] = []
        self.ended = 0

    def on_step_end(self, trainer):
        self.steps.append(trainer.state.step)
        if trainer.state.step == self.interrupt_at:
            raise KeyboardInterrupt

    def on_evaluate(self, trainer, split, metrics):
        self.evaluations.append((split, trainer.state.step, dict(metrics)))

    def on_train_end(self, trainer):
        self.ended += 1


# ------------------------------------------------------------------------------------------ learning


def test_loss_falls_on_a_learnable_problem(tmp_path, tiny_loaders, tiny_mlp):
    trainer = make_trainer(tmp_path, tiny_loaders(n_train=64), tiny_mlp(), config(epochs=6, lr=0.02))
    before = trainer.evaluate()
    test = trainer.fit()
    after = trainer.evaluate()
    assert after["loss"] < 0.6 * before["loss"]
    train = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert sum(train[-4:]) / 4 < 0.6 * sum(train[:4]) / 4
    assert test["accuracy"] >= 0.75


def test_gradients_left_on_the_model_do_not_join_the_first_step(tmp_path, tiny_loaders, tiny_mlp):
    clean, stale = tiny_mlp(), tiny_mlp()
    for param in stale.parameters():  # e.g. left by an earlier optimizer on the same parameters
        param.grad = torch.ones_like(param)
    for name, model in (("clean", clean), ("stale", stale)):
        make_trainer(tmp_path / name, tiny_loaders(), model, config(epochs=1)).fit()
    assert all(
        torch.equal(a, b) for a, b in zip(weights(clean).values(), weights(stale).values(), strict=True)
    )


def test_outputs_and_metric_records_after_fit(tmp_path, tiny_loaders, tiny_mlp):
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=2, log_every=3)).fit()
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (tmp_path / LAST_DIR / "training_state.pt").is_file()
    assert (tmp_path / "metrics.png").stat().st_size > 0

    records = read_metrics(tmp_path / "metrics.jsonl")
    for r in records:
        assert {"step", "split", "loss"} <= r.keys()
        assert isinstance(r["loss"], float) and math.isfinite(r["loss"])
    by_split = {s: [r for r in records if r["split"] == s] for s in ("train", "val", "test")}
    assert [r["step"] for r in by_split["train"]] == [3, 6, 9, 12, 15, 16]  # log_every=3, plus the last step
    assert [r["step"] for r in by_split["val"]] == [8, 16]  # once per epoch
    assert [r["step"] for r in by_split["test"]] == [16]
    for r in by_split["val"] + by_split["test"]:
        assert 0.0 <= r["accuracy"] <= 1.0
    assert all("lr" in r for r in by_split["train"])
    assert read_metadata(tmp_path / "final")["step"] == 16


def test_best_checkpoint_holds_the_best_validation_model(tmp_path, tiny_loaders, tiny_mlp):
    recorder = Recorder()
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=3), callbacks=[recorder]).fit()
    accs = [m["accuracy"] for split, _, m in recorder.evaluations if split == "val"]
    meta = read_metadata(tmp_path / "best")
    assert meta["metrics"]["accuracy"] == max(accs)
    assert meta["step"] == [s for _, s, m in recorder.evaluations if m["accuracy"] == max(accs)][0]


def test_max_steps_stops_exactly_there(tmp_path, tiny_loaders, tiny_mlp):
    recorder = Recorder()
    trainer = make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=50, max_steps=11), callbacks=[recorder]
    )
    trainer.fit()
    assert recorder.steps == list(range(1, 12))
    assert trainer.state.step == 11
    assert read_metadata(tmp_path / "final")["step"] == 11
    assert read_metadata(tmp_path / LAST_DIR)["train_state"]["step"] == 11
    assert max(r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")) == 11


# ------------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize(
    ("dropout", "accum", "epochs", "every", "interrupt_at"),
    [
        (0.0, 1, 2, 3, 11),  # 8 steps/epoch: checkpoints at 3, 6, 8, 9 -> resumes mid-epoch from step 9
        (0.3, 2, 3, 3, 7),  # 4 steps/epoch: checkpoints at 3, 4, 6 -> resumes mid-epoch from step 6
        (0.3, 2, 3, 4, 5),  # 4 steps/epoch: checkpoint at 4 -> resumes at an epoch boundary
    ],
    ids=["plain", "dropout-accum2", "dropout-accum2-epoch-boundary"],
)
def test_resume_matches_uninterrupted_run(
    tmp_path, tiny_loaders, tiny_mlp, dropout, accum, epochs, every, interrupt_at
):
    cfg = config(epochs=epochs, grad_accum_steps=accum, checkpoint_every=every, eval_every=2)
    assert interrupt_at % every != 0

    full = make_trainer(tmp_path / "full", tiny_loaders(), tiny_mlp(dropout=dropout), cfg)
    full.fit()

    recorder = Recorder(interrupt_at=interrupt_at)
    first = make_trainer(
        tmp_path / "run", tiny_loaders(), tiny_mlp(dropout=dropout), cfg, callbacks=[recorder]
    )
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert recorder.steps[-1] == interrupt_at
    resumed_from = read_metadata(tmp_path / "run" / LAST_DIR)["train_state"]["step"]
    assert resumed_from < interrupt_at

    # a fresh process would build everything again, with a differently initialised model
    second = make_trainer(tmp_path / "run", tiny_loaders(), tiny_mlp(seed=7, dropout=dropout), cfg)
    second.fit(resume=True)

    expected, got = weights(full.model), weights(second.model)
    for k in expected:
        assert torch.equal(expected[k], got[k]), k
    assert load_weights(tmp_path / "run" / "final" / "model.safetensors").keys() == expected.keys()
    for k, v in load_weights(tmp_path / "run" / "final" / "model.safetensors").items():
        assert torch.equal(v, expected[k]), k

    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys))
    assert records == read_metrics(tmp_path / "full" / "metrics.jsonl")


def frozen_body_mlp(make_mlp, seed: int, frozen_from: nn.Module | None = None) -> nn.Module:
    """A TinyMLP whose body is frozen (copied from `frozen_from` when given): a stand-in for PEFT."""
    model = make_mlp(seed=seed)
    if frozen_from is not None:
        model.body.load_state_dict(frozen_from.body.state_dict())
    model.body.requires_grad_(False)
    return model


def test_trainable_checkpoints_hold_only_trainable_weights_and_resume_exactly(
    tmp_path, tiny_loaders, tiny_mlp
):
    cfg = config(epochs=2, checkpoint_every=3, checkpoint_weights="trainable")
    full = make_trainer(tmp_path / "full", tiny_loaders(), frozen_body_mlp(tiny_mlp, 0), cfg)
    full.fit()
    for name in ("best", "final", LAST_DIR):
        assert set(load_weights(tmp_path / "full" / name / "model.safetensors")) == {
            "head.weight",
            "head.bias",
        }
        assert read_metadata(tmp_path / "full" / name)["weights"] == "trainable"

    with pytest.raises(KeyboardInterrupt):
        make_trainer(
            tmp_path / "run",
            tiny_loaders(),
            frozen_body_mlp(tiny_mlp, 0),
            cfg,
            callbacks=[Recorder(interrupt_at=5)],
        ).fit()
    # a new process: the same frozen base, a different head; the head and the optimizer come from the checkpoint
    second = make_trainer(
        tmp_path / "run", tiny_loaders(), frozen_body_mlp(tiny_mlp, 7, frozen_from=tiny_mlp(0)), cfg
    )
    second.fit(resume=True)
    expected, got = weights(full.model), weights(second.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)

    plain = tiny_mlp(seed=3)  # a model that is not the frozen base: the partial file cannot fill it
    with pytest.raises(CheckpointError, match="only the trainable weights"):
        load_model_weights(plain, tmp_path / "full" / "final")


def test_resume_before_the_first_checkpoint_starts_over_like_a_fresh_run(tmp_path, tiny_loaders, tiny_mlp):
    fresh = make_trainer(tmp_path / "fresh", tiny_loaders(), tiny_mlp(), config(max_steps=4))
    fresh.fit()
    stopped = make_trainer(
        tmp_path / "run",
        tiny_loaders(),
        tiny_mlp(),
        config(max_steps=4),
        callbacks=[Recorder(interrupt_at=2)],
    )
    with pytest.raises(KeyboardInterrupt):
        stopped.fit()  # stopped at step 2: metrics.jsonl written, no checkpoint yet
    assert not (tmp_path / "run" / LAST_DIR).exists() and (tmp_path / "run" / "metrics.jsonl").is_file()
    resumed = make_trainer(tmp_path / "run", tiny_loaders(), tiny_mlp(), config(max_steps=4))
    resumed.fit(resume=True)
    assert read_metrics(tmp_path / "run" / "metrics.jsonl") == read_metrics(
        tmp_path / "fresh" / "metrics.jsonl"
    )
    for k, v in weights(fresh.model).items():
        assert torch.equal(v, weights(resumed.model)[k]), k


def test_resume_recovers_a_checkpoint_left_aside_by_a_killed_save(tmp_path, tiny_loaders, tiny_mlp):
    cfg = config(max_steps=6, checkpoint_every=2)
    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), cfg, callbacks=[Recorder(interrupt_at=3)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    last = tmp_path / LAST_DIR
    last.rename(last.with_name(".last.old"))  # killed between the two renames of a save
    (last.parent / ".last.abc123.tmp").mkdir()  # and another save's half-written directory
    resumed = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), cfg)
    resumed.fit(resume=True)
    assert resumed.state.step == 6
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # resumed from the step-2 checkpoint, not from scratch


def test_checkpoint_files_follow_the_umask(tmp_path, tiny_loaders, tiny_mlp):
    previous = os.umask(0o022)
    try:
        make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=2)).fit()
    finally:
        os.umask(previous)
    for path in [tmp_path / LAST_DIR, tmp_path / "final", tmp_path / LAST_DIR / "model.safetensors",
                 tmp_path / "final" / "model.safetensors"]:  # fmt: skip
        want = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_resume_with_a_different_schedule_is_refused(tmp_path, tiny_loaders, tiny_mlp):
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=4)).fit()
    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=6))
    with pytest.raises(CheckpointError, match="4 steps"):
        trainer.fit(resume=True)


def test_fit_refuses_an_output_dir_that_holds_a_run(tmp_path, tiny_loaders, tiny_mlp):
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=3)).fit()
    before = snapshot(tmp_path)
    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=3))
    with pytest.raises(CheckpointError, match="already holds a run"):
        trainer.fit()
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ NaN


def test_nan_loss_raises_naming_the_step_and_keeps_last_checkpoint(tmp_path, tiny_loaders, tiny_mlp):
    calls = []

    def nan_at_third_step(model, inputs, targets, logits):
        calls.append(1) if model.training else None  # the check before step 1 runs in eval mode
        return {"bad": torch.tensor(float("nan") if len(calls) == 3 else 0.0)}

    trainer = make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(checkpoint_every=2), loss_terms=[nan_at_third_step]
    )
    with pytest.raises(TrainingError, match=r"^loss part 'bad' is not finite: loss became nan at step 3"):
        trainer.fit()
    last = tmp_path / LAST_DIR
    assert read_metadata(last)["train_state"]["step"] == 2
    current = weights(trainer.model)  # the NaN step never reached the optimizer
    saved = load_weights(last / "model.safetensors")
    assert saved.keys() == current.keys()
    for k in saved:
        assert torch.equal(saved[k], current[k]), k
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]
    assert not (tmp_path / "final").exists()


def test_a_nan_loss_on_the_first_batch_is_not_blamed_on_the_learning_rate(tmp_path, tiny_loaders, tiny_mlp):
    train, val, test = tiny_loaders()
    poisoned = [(x.clone(), y) for x, y in train.dataset]
    poisoned[0][0][0] = float("nan")  # a NaN feature in the data
    loaders = (DataLoader(poisoned, batch_size=len(poisoned)), val, test)  # every step sees it
    with pytest.raises(TrainingError) as raised:
        make_trainer(tmp_path, loaders, tiny_mlp(), config()).fit()
    assert str(raised.value) == (
        "loss is nan on the first training batch, before any optimizer step (so not the learning rate): the "
        "training batch's inputs hold NaN or infinite values"
    )

    class NanLoss:
        def __call__(self, model, inputs, targets):
            logits = model(inputs)
            return logits.sum() * float("nan"), logits, {}

    with pytest.raises(
        TrainingError, match=r"before any optimizer step \(so not the learning rate\): the data, "
    ):
        make_trainer(tmp_path / "b", tiny_loaders(), tiny_mlp(), config(), loss_fn=NanLoss()).fit()
    NanLoss.divergence_hint = lambda self: "lower method.meta_lr"  # a hook's own hint still wins
    with pytest.raises(TrainingError, match=r"loss became nan at step 1 .*; lower method.meta_lr$"):
        make_trainer(tmp_path / "c", tiny_loaders(), tiny_mlp(), config(), loss_fn=NanLoss()).fit()


def test_a_non_finite_validation_value_never_counts_as_the_best_and_is_said_once(
    tmp_path, tiny_loaders, tiny_mlp, capsys
):
    values = iter([float("nan"), 0.2, float("nan"), 0.4, 0.5])  # four validations, then the test split

    def eval_fn(trainer, loader, split):
        return {"accuracy": next(values)}

    recorder = Recorder()
    make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=4), eval_fn=eval_fn, callbacks=[recorder]
    ).fit()
    steps = [step for split, step, _ in recorder.evaluations if split == "val"]
    meta = read_metadata(tmp_path / "best")
    assert (meta["step"], meta["metrics"]["accuracy"]) == (
        steps[3],
        0.4,
    )  # not the NaN of the first validation
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f"warning: validation accuracy is nan at step {steps[0]}: a non-finite value never counts as the best, "
        "so best/ is not updated by it (not repeated)"
    ]


def test_non_finite_parameters_stop_training_and_keep_the_last_good_checkpoint(
    tmp_path, tiny_loaders, tiny_mlp
):
    class PoisonAtStep4:
        def on_step_end(self, trainer):
            if trainer.state.step == 4:  # a finite loss whose step left an inf weight, just before a save
                with torch.no_grad():
                    trainer.model.head.weight[0, 0] = float("inf")

    trainer = make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(checkpoint_every=2, eval_every=100),
        callbacks=[PoisonAtStep4()],
    )  # fmt: skip
    with pytest.raises(TrainingError, match="head.weight became non-finite at step 4"):
        trainer.fit()
    assert read_metadata(tmp_path / LAST_DIR)["train_state"]["step"] == 2
    assert all(
        torch.isfinite(v).all() for v in load_weights(tmp_path / LAST_DIR / "model.safetensors").values()
    )


def test_a_model_that_cannot_run_on_the_data_fails_before_the_first_step(tmp_path, tiny_loaders):
    wrong_width = nn.Linear(5, 3)  # the data has 8 features
    trainer = make_trainer(tmp_path, tiny_loaders(), wrong_width, config())
    with pytest.raises(ModelError, match=r"cannot run on a training batch \(inputs \(2, 8\)\)"):
        trainer.fit()
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_loss_term_that_does_not_fit_the_logits_is_named_before_the_first_step(
    tmp_path, tiny_loaders, tiny_mlp
):
    def fine(model, inputs, targets, logits):
        return {"fine": logits.sum() * 0}

    def five_classes(model, inputs, targets, logits):  # the model has 3
        return {"agree": (logits @ torch.ones(5, 1)).mean()}

    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(), loss_terms=[fine, five_classes])
    with pytest.raises(ModelError, match=r"^loss term 2 \(five_classes\) cannot run on a training batch "
                                         r"\(inputs \(2, 8\), logits \(2, 3\)\): mat1 and mat2"):  # fmt: skip
        trainer.fit()
    assert not (tmp_path / "metrics.jsonl").exists()


class NoisyTerm:
    """A loss term that draws from the global RNG and records the mode of each call."""

    def __init__(self):
        self.modes: list[bool] = []

    def __call__(self, model, inputs, targets, logits):
        self.modes.append(model.training)
        return {"noise": 0.1 * (logits * torch.randn_like(logits)).mean()}


def test_loss_terms_join_the_check_before_step_1_and_it_changes_nothing(tmp_path, tiny_loaders, tiny_mlp):
    runs = {}
    for name, enabled in (("probed", True), ("unprobed", False)):
        term = NoisyTerm()
        model = tiny_mlp(dropout=0.3)
        with model_data_probes(enabled):
            make_trainer(tmp_path / name, tiny_loaders(), model, config(max_steps=6), loss_terms=[term]).fit()
        runs[name] = (term.modes, weights(model))
    assert runs["probed"][0] == [False] + [True] * 6  # checked once in eval mode, then six training steps
    assert runs["unprobed"][0] == [True] * 6
    assert runs["probed"][1].keys() == runs["unprobed"][1].keys()
    assert all(torch.equal(runs["probed"][1][k], runs["unprobed"][1][k]) for k in runs["probed"][1])
    assert_same_safetensors(tmp_path / "probed", tmp_path / "unprobed")


def test_a_loss_term_with_probe_is_checked_through_it(tmp_path, tiny_loaders, tiny_mlp):
    class Stateful(NoisyTerm):
        def probe(self, model, inputs, targets, logits):
            self.probed = logits.shape

    term = Stateful()
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=2), loss_terms=[term]).fit()
    assert term.probed == (2, 3) and term.modes == [True, True]


# ------------------------------------------------------------------------------------------ schedule


def _lrs(cfg: TrainConfig, total: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(cfg, opt, total)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_schedule_values():
    lrs = _lrs(TrainConfig(lr=1.0, warmup_steps=3, scheduler="cosine", min_lr_ratio=0.1), total=11)
    assert lrs[0] == pytest.approx(1 / 4)  # lr * (step + 1) / (warmup + 1)
    assert lrs[1] == pytest.approx(2 / 4)
    assert lrs[2] == pytest.approx(3 / 4)
    assert lrs[3] == pytest.approx(1.0)  # warmup done: cosine starts at the peak
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the 8 cosine steps
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert lrs[11] == pytest.approx(0.1)  # the floor is lr * min_lr_ratio


def test_linear_and_constant_schedules():
    lin = _lrs(TrainConfig(lr=2.0, warmup_steps=0, scheduler="linear"), total=4)
    assert lin == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    const = _lrs(TrainConfig(lr=2.0, warmup_steps=1, scheduler="constant"), total=4)
    assert const == pytest.approx([1.0, 2.0, 2.0, 2.0, 2.0])


def test_trainer_uses_the_scheduled_lr(tmp_path, tiny_loaders, tiny_mlp):
    cfg = config(max_steps=6, lr=0.5, warmup_steps=2, scheduler="linear", optimizer="sgd")
    seen = []

    class LrProbe:
        def on_step_end(self, trainer):
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), cfg, callbacks=[LrProbe()]).fit()
    # after optimizer step s the scheduler has advanced to factor(s): warmup 1/3, 2/3, then linear to 0 at 6
    assert seen == pytest.approx([0.5 * 2 / 3, 0.5 * 1.0, 0.5 * 0.75, 0.5 * 0.5, 0.5 * 0.25, 0.0])


# ------------------------------------------------------------------------------------------ hooks


def test_loss_terms_are_added_to_the_loss_and_logged(tmp_path, tiny_loaders, tiny_mlp):
    def constant(model, inputs, targets, logits):
        return {"const_term": torch.tensor(5.0)}  # zero gradient: the trajectory is unchanged

    cfg = config(max_steps=5)
    make_trainer(tmp_path / "plain", tiny_loaders(), tiny_mlp(), cfg).fit()
    make_trainer(tmp_path / "term", tiny_loaders(), tiny_mlp(), cfg, loss_terms=[constant]).fit()
    plain = [r for r in read_metrics(tmp_path / "plain" / "metrics.jsonl") if r["split"] == "train"]
    term = [r for r in read_metrics(tmp_path / "term" / "metrics.jsonl") if r["split"] == "train"]
    assert len(term) == len(plain) == 5
    for p, t in zip(plain, term):
        assert t["const_term"] == 5.0
        assert t["loss"] == pytest.approx(p["loss"] + 5.0, abs=1e-5)


def test_loss_term_gradients_reach_the_model(tmp_path, tiny_loaders, tiny_mlp):
    def shrink(model, inputs, targets, logits):
        return {"l2": 10.0 * sum((p**2).sum() for p in model.parameters())}

    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=16), loss_terms=[shrink])
    norm_before = sum((p**2).sum() for p in trainer.model.parameters()).item()
    trainer.fit()
    assert sum((p**2).sum() for p in trainer.model.parameters()).item() < 0.2 * norm_before


def test_param_groups_hook_controls_what_is_trained(tmp_path, tiny_loaders, tiny_mlp):
    model = tiny_mlp()
    body_before, head_before = weights(model.body), weights(model.head)
    trainer = make_trainer(
        tmp_path,
        tiny_loaders(),
        model,
        config(max_steps=5, weight_decay=0.5),
        param_groups=lambda m: [{"params": list(m.head.parameters())}],
    )
    trainer.fit()
    for k, v in weights(model.body).items():
        assert torch.equal(v, body_before[k]), k
    assert all(not torch.equal(v, head_before[k]) for k, v in weights(model.head).items())


def test_extra_modules_are_trained_and_checkpointed(tmp_path, tiny_loaders, tiny_mlp):
    scale = nn.Linear(3, 3)
    before = weights(scale)

    def loss_fn(model, inputs, targets):
        logits = scale(model(inputs))
        return F.cross_entropy(logits, targets), logits, {}

    trainer = make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=4), loss_fn=loss_fn, extra_modules=[scale]
    )
    trainer.fit()
    assert not torch.equal(scale.weight, before["weight"])
    saved = load_training_state(tmp_path / LAST_DIR)["extra_modules"]
    assert torch.equal(saved["0.weight"], scale.weight) and torch.equal(saved["0.bias"], scale.bias)


def test_callbacks_are_called_the_right_number_of_times(tmp_path, tiny_loaders, tiny_mlp):
    recorder = Recorder()
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=3), callbacks=[recorder, object()]).fit()
    assert recorder.steps == list(range(1, 25))  # 8 steps per epoch
    assert [(split, step) for split, step, _ in recorder.evaluations] == [
        ("val", 8),
        ("val", 16),
        ("val", 24),
    ]
    assert all({"loss", "accuracy"} <= m.keys() for _, _, m in recorder.evaluations)
    assert recorder.ended == 1


def test_eval_every_controls_validation_steps(tmp_path, tiny_loaders, tiny_mlp):
    recorder = Recorder()
    make_trainer(
        tmp_path, tiny_loaders(), tiny_mlp(), config(max_steps=10, eval_every=4), callbacks=[recorder]
    ).fit()
    assert [step for _, step, _ in recorder.evaluations] == [4, 8, 10]  # and the last step, so best/ sees it


def test_default_param_groups_exempt_1d_params_and_tokens_from_decay():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
            self.proj = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)
            self.frozen = nn.Linear(8, 8)
            self.frozen.requires_grad_(False)

    net = Net()
    decay, no_decay = default_param_groups(net, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}
    assert ids(decay["params"]) == ids([net.proj.weight])
    assert ids(no_decay["params"]) == ids(
        [net.pos_embed, net.cls_token, net.proj.bias, net.norm.weight, net.norm.bias]
    )


def test_default_param_groups_drop_empty_groups():
    groups = default_param_groups(nn.LayerNorm(4), 0.1)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


# ------------------------------------------------------------------------------------------ tasks


def test_causal_lm_per_sample_matches_hand_computation():
    logits = torch.tensor(
        [
            [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]],
            [[0.0, 0.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
        ]
    )
    targets = torch.tensor([[0, 1, 2], [2, 2, 0]])
    loss, acc = CausalLMTask().per_sample(logits, targets)
    # sample 0: position 0 predicts token 1, position 1 predicts token 2 (the last position predicts nothing)
    l00 = -math.log(1 / (math.e**2 + 2))
    l01 = -math.log(1 / (math.e + 2))
    # sample 1: position 0 predicts token 2, position 1 predicts token 0
    l10 = -math.log(math.e**3 / (math.e**3 + 2))
    l11 = -math.log(math.e / (math.e + math.e**2 + math.e**3))
    assert loss.tolist() == pytest.approx([(l00 + l01) / 2, (l10 + l11) / 2], abs=1e-6)
    assert acc.tolist() == [0.0, 0.5]
    mean = CausalLMTask().loss(logits, targets)
    assert mean.item() == pytest.approx((l00 + l01 + l10 + l11) / 4, abs=1e-6)


def test_classification_per_sample_matches_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    loss, acc = ClassificationTask().per_sample(logits, targets)
    assert loss.tolist() == pytest.approx(F.cross_entropy(logits, targets, reduction="none").tolist())
    assert acc.tolist() == [1.0, 0.0, 0.0]


def test_resume_at_the_last_step_drops_the_test_record_logged_after_the_checkpoint(tmp_path):
    """A run stopped after its final checkpoint but before `final/` logs its test metrics again on resume."""
    from learngene_core.metrics import MetricsLog, read_metrics

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step, split in [(10, "train"), (17, "val"), (20, "train"), (20, "val"), (20, "test"), (30, "train")]:
        log.log(step, split, loss=1.0)
    MetricsLog(tmp_path / "metrics.jsonl").truncate_after(20)
    kept = [(r["step"], r["split"]) for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert kept == [(10, "train"), (17, "val"), (20, "train"), (20, "val")]


# ------------------------------------------------------------------------------------------ clipping, precision


@pytest.mark.parametrize("clip", [None, 0.1])
def test_gradient_clipping_scales_the_step_to_max_grad_norm(tmp_path, tiny_loaders, tiny_mlp, clip):
    loaders = tiny_loaders(n_train=32, batch_size=32)  # one full batch: the step's gradient is known
    reference = tiny_mlp()
    x, y = loaders[0].dataset.tensors
    F.cross_entropy(reference(x), y).backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters()}
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
    assert norm > 4 * 0.1  # clipping to 0.1 must bite
    model = tiny_mlp()
    before = weights(model)
    cfg = config(max_steps=1, optimizer="sgd", momentum=0.0, lr=1.0, weight_decay=0.0, scheduler="constant",
                 max_grad_norm=clip)  # fmt: skip
    make_trainer(tmp_path, loaders, model, cfg).fit()
    scale = 1.0 if clip is None else clip / float(norm)
    for (
        name,
        param,
    ) in model.named_parameters():  # plain SGD, lr 1: the update is minus the (clipped) gradient
        torch.testing.assert_close(before[name] - param.detach(), grads[name] * scale, atol=1e-6, rtol=1e-4)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state whose precision cannot change: reset it around the test."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.usefixtures("fresh_accelerator_state")
@pytest.mark.parametrize(("precision", "dtype"), [("no", torch.float32), ("bf16", torch.bfloat16)])
def test_mixed_precision_bf16_autocasts_the_forward_on_cpu_and_still_learns(
    tmp_path, tiny_loaders, tiny_mlp, precision, dtype
):
    model = tiny_mlp()
    seen: list[torch.dtype] = []
    model.head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    trainer = make_trainer(tmp_path, tiny_loaders(n_train=64), model, config(epochs=6, lr=0.02,
                           mixed_precision=precision))  # fmt: skip
    before = trainer.evaluate()["loss"]
    seen.clear()
    trainer.fit()
    assert seen and set(seen) == {dtype}  # every forward of training and evaluation ran in this precision
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert trainer.evaluate()["loss"] < 0.7 * before


def test_an_empty_validation_split_is_one_data_error_before_any_work(tmp_path, tiny_loaders, tiny_mlp):
    from torch.utils.data import DataLoader, TensorDataset

    from learngene_core.errors import DataError

    train, _, test = tiny_loaders()
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), batch_size=8)
    with pytest.raises(DataError, match="the val split is empty"):
        make_trainer(tmp_path / "run", (train, empty, test), tiny_mlp(), config(max_steps=3))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ stateful hooks


class RunningLoss:
    """A callback with state across steps: the sum of the training losses so far, checkpointed by the Trainer."""

    def __init__(self) -> None:
        self.total, self.steps = 0.0, 0

    def on_step_end(self, trainer) -> None:
        self.total += trainer.state.step * 0.5
        self.steps += 1

    def checkpoint_state(self) -> dict:
        return {"total": self.total, "steps": self.steps}

    def restore_checkpoint_state(self, state: dict) -> None:
        self.total, self.steps = state["total"], state["steps"]


def seeded_loaders(tiny_loaders):
    """The toy loaders with a train loader shuffled by its own seeded generator, as `build_dataloaders` makes."""
    train, val, test = tiny_loaders()
    generator = torch.Generator().manual_seed(0)
    return (
        torch.utils.data.DataLoader(train.dataset, batch_size=4, shuffle=True, generator=generator),
        val,
        test,
    )


def test_a_stateful_hook_resumes_with_its_state_and_a_finished_run_resumes_to_the_same_loader_order(
    tmp_path, tiny_loaders, tiny_mlp
):
    cfg = config(epochs=3)
    full_hook, loaders = RunningLoss(), seeded_loaders(tiny_loaders)
    make_trainer(tmp_path / "full", loaders, tiny_mlp(), cfg, callbacks=[full_hook]).fit()
    first_batch = next(iter(loaders[0]))[1]  # a use of the train loader after training (auto's read-out)

    hook = RunningLoss()
    first = make_trainer(
        tmp_path / "run", seeded_loaders(tiny_loaders), tiny_mlp(), cfg, callbacks=[hook, Recorder(11)]
    )
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = RunningLoss()
    trainer = make_trainer(
        tmp_path / "run", seeded_loaders(tiny_loaders), tiny_mlp(seed=7), cfg, callbacks=[resumed]
    )
    trainer.fit(resume=True)
    assert (resumed.total, resumed.steps) == (full_hook.total, full_hook.steps) == (sum(range(1, 25)) / 2, 24)

    # resumed once more: no step, the hook as the finished run left it, the train loader where training left it
    again, loaders = RunningLoss(), seeded_loaders(tiny_loaders)
    make_trainer(tmp_path / "run", loaders, tiny_mlp(seed=7), cfg, callbacks=[again]).fit(resume=True)
    assert (again.total, again.steps) == (full_hook.total, 24)
    assert torch.equal(next(iter(loaders[0]))[1], first_batch)


def test_a_checkpoint_without_a_hooks_state_is_refused(tmp_path, tiny_loaders, tiny_mlp):
    make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=1)).fit()
    trainer = make_trainer(tmp_path, tiny_loaders(), tiny_mlp(), config(epochs=1), callbacks=[RunningLoss()])
    with pytest.raises(CheckpointError, match="does not fit this run.*stateful hooks"):
        trainer.fit(resume=True)
