"""The meta-network: non-negative pair weights, a meta-gradient through torch.func inner steps, the read-out."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from auto_learngene.condense import aggregate
from auto_learngene.config import AutoSpec
from auto_learngene.meta import AncestryFeatures, MetaTransferLoss
from auto_learngene.transfer import MetaWeights, Regressor, Student, layer_pairs
from learngene_core.checkpoint import load_weights
from learngene_core.learngene import Learngene
from learngene_core.tasks import ClassificationTask

VIT = dict(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=2,
           in_chans=1, class_token=False, global_pool="avg")  # fmt: skip


def setup(spec: AutoSpec, dtype=torch.float32):
    torch.manual_seed(0)
    ancestry = timm.create_model("vit_learngene", **VIT).to(dtype)
    net = timm.create_model("vit_learngene", **VIT).to(dtype)
    x = torch.randn(6, 1, 8, 8, dtype=dtype)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    features = AncestryFeatures(ancestry)
    sources = features(x)
    student = Student(net, {}, spec.feature_norm)
    with torch.no_grad():
        net(x)
    targets = student.tap.take()
    pairs = layer_pairs(2, 2, spec.max_layer_distance)
    student.regressors.update({f"{m}_{n}": Regressor(targets[n], sources[m]).to(dtype) for m, n in pairs})
    meta = MetaWeights(sources, pairs, spec.weight_activation).to(dtype)
    return MetaTransferLoss(features, meta, spec, ExactCE()), student, x, y, sources


class ExactCE(ClassificationTask):
    """Cross-entropy in the logits' own dtype (the core task casts to float32; the float64 test needs float64)."""

    def loss(self, logits, targets, label_smoothing=0.0):
        return torch.nn.functional.cross_entropy(logits, targets)


def test_pairs_within_a_distance():
    assert layer_pairs(3, 3, None) == [(m, n) for m in range(3) for n in range(3)]
    assert layer_pairs(3, 3, 0) == [(0, 0), (1, 1), (2, 2)]


@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_pair_weights_are_non_negative(activation):
    loss, _, _, _, sources = setup(AutoSpec(weight_activation=activation))
    for head in loss.meta.heads:
        torch.nn.init.normal_(head.weight, std=5.0)
    assert all((w >= 0).all() for w in loss.meta(sources).values())


def test_meta_gradient_through_the_inner_steps_matches_finite_differences():
    spec = AutoSpec(inner_steps=2, inner_lr=0.5, meta_lr=1.0)
    loss, student, x, y, sources = setup(spec, torch.float64)
    bias = loss.meta.heads[1].bias
    with torch.no_grad():
        bias.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))

    def meta_loss_at(value: torch.Tensor) -> float:
        with torch.no_grad():
            bias.copy_(value)
        probe = MetaTransferLoss(loss.sources, loss.meta, spec, loss.task)
        probe.optimizer = torch.optim.SGD(loss.meta.parameters(), lr=0.0)
        return probe.meta_step(student, x, y, sources)

    start = bias.detach().clone()
    eps = 1e-5
    numeric = []
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = eps
        numeric.append((meta_loss_at(start + step) - meta_loss_at(start - step)) / (2 * eps))
    with torch.no_grad():
        bias.copy_(start)
    probe = MetaTransferLoss(loss.sources, loss.meta, spec, loss.task)
    probe.optimizer = torch.optim.SGD(loss.meta.parameters(), lr=1.0)  # one plain step: delta = -grad
    probe.meta_step(student, x, y, sources)
    analytic = (start - bias.detach()).tolist()
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-8)
    assert any(abs(g) > 1e-6 for g in analytic)


def test_training_step_leaves_phi_to_the_meta_optimizer():
    loss, student, x, y, _ = setup(AutoSpec())
    total, logits, parts = loss(student, x, y)
    total.backward()
    assert all(p.grad is None for p in loss.meta.parameters())
    assert all(p.grad is not None for p in student.regressors.parameters())
    assert set(parts) == {"ce", "transfer", "meta_ce"} and logits.shape == (6, 2)


def test_regressor_maps_conv_features_to_the_ancestry_shape():
    regressor = Regressor(torch.zeros(2, 6, 8, 8), torch.zeros(2, 4, 4, 4))
    assert regressor(torch.randn(2, 6, 8, 8)).shape == (2, 4, 4, 4)


def test_aggregate_sums_or_maxes_over_descendant_layers():
    weights = {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 0.5, (1, 1): 4.0}
    assert aggregate(weights, 2, "sum") == [3.0, 4.5]
    assert aggregate(weights, 2, "max") == [2.0, 4.0]


def test_condensed_learngene_is_the_top_aggregated_ancestry_layers(condensed_dir, ancestry_dir):
    learngene = Learngene.load(condensed_dir / "learngene", "auto-learngene")
    weights = json.loads((condensed_dir / "weights.json").read_text())
    scores = [sum(row) for row in weights]
    assert learngene.spec["scores"] == pytest.approx(scores)
    assert learngene.spec["layers"] == sorted(sorted(range(len(scores)), key=lambda m: -scores[m])[:2])
    final = load_weights(ancestry_dir / "final" / "model.safetensors")
    assert all(torch.equal(v, final[k]) for k, v in learngene.tensors.items())
    assert {k.split(".")[1] for k in learngene.tensors} == {str(m) for m in learngene.spec["layers"]}
    assert learngene.manifest["meta_losses"]  # the meta-network was trained


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_presets_load_and_paper_reads_cifar100_from_a_local_path(preset):
    from learngene_core.config import load_config

    cfg = load_config(preset, [], __import__("auto_learngene").CondenseConfig, "auto_learngene.configs")
    assert cfg.data.name == ("cifar100" if preset == "paper" else "digits")


def test_meta_step_on_a_causal_lm_moves_phi():
    from transformers import AutoModelForCausalLM

    from learngene_core.tasks import CausalLMTask
    from learngene_core.testing import tiny_lm_config

    torch.manual_seed(0)
    ancestry = AutoModelForCausalLM.from_config(tiny_lm_config("llama", 2))
    net = AutoModelForCausalLM.from_config(tiny_lm_config("llama", 2))
    tokens = torch.randint(64, (4, 12))
    features = AncestryFeatures(ancestry)
    sources = features(tokens)
    student = Student(net, {}, "rms")
    with torch.no_grad():
        student.net(tokens)
    targets = student.tap.take()
    pairs = layer_pairs(2, 2, None)
    student.regressors.update({f"{m}_{n}": Regressor(targets[n], sources[m]) for m, n in pairs})
    loss = MetaTransferLoss(
        features, MetaWeights(sources, pairs, "softplus"), AutoSpec(meta_lr=0.1), CausalLMTask()
    )
    before = [p.detach().clone() for p in loss.meta.parameters()]
    total, logits, parts = loss(student, tokens, tokens)
    assert logits.shape == (4, 12, 64) and torch.isfinite(total)
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.meta.parameters()))
