"""nino.tasks: the task nets have the paper's shapes, build deterministically by seed and are trainable."""

from __future__ import annotations

import math

import pytest
import torch

from learngene_core.config import load_config
from learngene_core.errors import ModelError
from nino.collect import CollectConfig
from nino.tasks import MODELS, VALIDATION_TASKS, build_task, build_task_model, conv_net, mlp_net, task_names


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, count",
    [("fm16-cnn", 14_378), ("c10-16-cnn", 14_666), ("fm32-cnn", 56_394), ("c10-32-cnn", 56_970)],
)
def test_conv_nets_have_the_paper_parameter_counts(name, count):
    assert n_params(build_task_model(name)) == count


def test_digits_cnn_is_the_fm16_shape_and_synth_cnn_the_c10_16_shape():
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    assert shapes(build_task_model("cnn-digits-16")) == shapes(build_task_model("fm16-cnn"))
    assert shapes(build_task_model("cnn-synth-16")) == shapes(build_task_model("c10-16-cnn"))
    first = build_task_model("fm16-cnn")[0]
    assert first.stride == (2, 2) and first.kernel_size == (3, 3)


def test_same_seed_same_init_other_seed_other_init():
    a, b, c = (build_task_model("cnn-digits-16", seed) for seed in (3, 3, 4))
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert torch.equal(flat(a), flat(b))
    assert not torch.equal(flat(a), flat(c))


def test_unknown_task_and_model_name_the_culprit():
    with pytest.raises(ModelError, match="no-such-task"):
        build_task("no-such-task")
    with pytest.raises(ModelError, match="cnn-digit-16.*did you mean"):
        MODELS.get("cnn-digit-16")


def test_adamw_lowers_the_digits_mlp_validation_loss():
    task = build_task("mlp-digits", seed=0)
    before = task.evaluate()["loss"]
    opt, batches = task.optimizer(), task.train.forever()
    for _ in range(60):
        opt.zero_grad()
        task.loss_fn(task.model, next(batches)).backward()
        opt.step()
    after = task.evaluate()
    assert after["loss"] < 0.5 * before
    assert after["accuracy"] > 0.7


def test_lm_task_reports_perplexity_of_its_loss():
    task = build_task("llama-tiny", seed=0)
    metrics = task.evaluate()
    assert task.kind == "causal-lm" and task.metric == "perplexity"
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-5)
    assert metrics["loss"] == pytest.approx(math.log(128), abs=0.3)  # untrained: near uniform over 128 tokens


def test_nino_list_reads_every_model_name_from_the_source():
    """`nino list` reads the MODELS registrations without importing torch; it sees the registry."""
    from learngene_core.registry import declared_entries
    from nino.cli import MODEL_SOURCE

    assert list(declared_entries([MODEL_SOURCE], "MODELS")) == MODELS.names()


def test_every_task_builds():
    assert set(task_names()) <= set(MODELS.names())


def test_depth_and_width_variants_have_the_layers_they_name():
    convs = lambda m: [layer for layer in m if isinstance(layer, torch.nn.Conv2d)]  # noqa: E731
    assert [c.out_channels for c in convs(conv_net(1, 16, depth=4))] == [16, 32, 32, 32]
    assert [c.out_channels for c in convs(build_task_model("cnn-synth-16-d2"))] == [16, 32]
    assert n_params(conv_net(1, 16, depth=3)) == 14_378  # the default is still FM-16
    linears = [layer for layer in build_task_model("mlp-digits-d3") if isinstance(layer, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (64, 32),
        (32, 32),
        (32, 32),
        (32, 10),
    ]
    assert n_params(mlp_net()) == n_params(build_task_model("mlp-digits")) == 3_466


BENCH_HELD_OUT = {"cnn-digits-32", "cnn-synth-32", "gpt2-3-24"}  # tools/bench/nino_speedup.py's unseen tasks


@pytest.mark.parametrize("preset", ["collect-cpu", "collect-cpu-wide"])
def test_meta_training_data_and_validation_tasks_avoid_each_other_and_the_bench(preset):
    trained = set(load_config(preset, [], cls=CollectConfig, package="nino.configs").tasks)
    assert len(trained) >= 12 and {"gpt2-tiny", "llama-1-24"} <= trained  # transformers among them
    assert not trained & set(VALIDATION_TASKS)
    assert not (trained | set(VALIDATION_TASKS)) & BENCH_HELD_OUT
    assert set(VALIDATION_TASKS) <= set(task_names())
