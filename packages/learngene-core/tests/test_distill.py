"""Knowledge distillation: the soft KD loss, the Distiller as a Trainer loss_fn, and feature matching."""

import pytest
import torch
import torch.nn.functional as F

from learngene_core.config import TrainConfig, from_dict
from learngene_core.distill import DistillConfig, Distiller, soft_cross_entropy_loss, soft_kd_loss
from learngene_core.errors import ConfigError, ModelError
from learngene_core.metrics import read_metrics
from learngene_core.tasks import ClassificationTask
from learngene_core.testing import assert_same_safetensors, model_data_probes
from learngene_core.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")


def kd_config(**overrides) -> TrainConfig:
    base = dict(epochs=4, lr=0.02, warmup_steps=0, log_every=1, progress=False, weight_decay=0.0)
    return TrainConfig(**{**base, **overrides})


def kl_to_teacher(student, teacher, x) -> float:
    with torch.no_grad():
        s, t = F.log_softmax(student(x), -1), F.log_softmax(teacher(x), -1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True).item()


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------ soft KD loss


def test_soft_kd_loss_is_zero_for_identical_logits():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    for temperature in (0.5, 1.0, 4.0):
        assert soft_kd_loss(logits, logits.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)
    # adding a constant per row changes nothing after softmax
    assert soft_kd_loss(logits + 3.0, logits, 2.0).item() == pytest.approx(0.0, abs=1e-5)


def test_soft_kd_loss_is_positive_for_different_logits():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert soft_kd_loss(student, teacher, 1.0).item() > 0.01
    assert soft_kd_loss(student, teacher, 3.0).item() > 0.0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_soft_kd_loss_is_t_squared_times_kl_teacher_to_student(temperature):
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    p = F.softmax(teacher / temperature, -1)
    q = F.softmax(student / temperature, -1)
    kl_per_sample = (p * (p.log() - q.log())).sum(-1)
    expected = temperature**2 * kl_per_sample.mean()
    assert soft_kd_loss(student, teacher, temperature).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_kd_loss_averages_over_tokens_of_sequences():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    flat = soft_kd_loss(student.reshape(6, 5), teacher.reshape(6, 5), 2.0)
    assert soft_kd_loss(student, teacher, 2.0).item() == pytest.approx(flat.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------ Distiller


def test_distilling_moves_the_student_toward_the_teacher(tmp_path, tiny_loaders, tiny_mlp):
    teacher, student = tiny_mlp(seed=1, hidden=32), tiny_mlp(seed=2)
    teacher_before = params(teacher)
    held_out = torch.randn(64, 8, generator=torch.Generator().manual_seed(99))
    kl_before = kl_to_teacher(student, teacher, held_out)

    distiller = Distiller(teacher, ClassificationTask(), DistillConfig(alpha=1.0, temperature=2.0))
    train, val, _ = tiny_loaders(n_train=64, batch_size=8)
    Trainer(
        student, kd_config(), ClassificationTask(), train, val, output_dir=tmp_path, loss_fn=distiller
    ).fit()

    assert kl_to_teacher(student, teacher, held_out) < kl_before / 3
    for k, v in params(teacher).items():
        assert torch.equal(v, teacher_before[k]), k
    train_records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert "kd_loss" in train_records[0] and "ce_loss" not in train_records[0]
    assert train_records[-1]["kd_loss"] < train_records[0]["kd_loss"]


def test_teacher_is_frozen_and_in_eval_mode(tiny_mlp):
    teacher = tiny_mlp(dropout=0.5)
    Distiller(teacher, ClassificationTask(), DistillConfig())
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_alpha_zero_equals_plain_cross_entropy(tiny_mlp):
    student, teacher = tiny_mlp(seed=0), tiny_mlp(seed=1)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, logits, parts = Distiller(teacher, ClassificationTask(), DistillConfig(alpha=0.0))(student, x, y)
    assert torch.equal(logits, student(x))
    assert loss.item() == pytest.approx(F.cross_entropy(student(x), y).item(), rel=1e-6)
    assert set(parts) == {"ce_loss"}


def test_alpha_mixes_soft_and_hard_terms(tiny_mlp):
    student, teacher = tiny_mlp(seed=0), tiny_mlp(seed=1)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = DistillConfig(alpha=0.25, temperature=3.0)
    loss, _, parts = Distiller(teacher, ClassificationTask(), cfg)(student, x, y)
    kd = soft_kd_loss(student(x), teacher(x), 3.0)
    ce = F.cross_entropy(student(x), y)
    assert loss.item() == pytest.approx((0.25 * kd + 0.75 * ce).item(), rel=1e-5)
    assert parts["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)


def test_feature_matching_projects_different_widths_and_its_loss_falls(tmp_path, tiny_loaders, tiny_mlp):
    teacher, student = tiny_mlp(seed=1, hidden=32), tiny_mlp(seed=2, hidden=12)
    sample = torch.randn(4, 8)
    cfg = DistillConfig(alpha=0.5, temperature=1.0, feature_weight=1.0, feature_pairs={"body.1": "body.1"})
    distiller = Distiller(teacher, ClassificationTask(), cfg, student=student, sample_inputs=sample)
    proj = distiller.projections["0"]
    assert isinstance(proj, torch.nn.Linear) and (proj.in_features, proj.out_features) == (12, 32)
    proj_before = params(proj)

    train, val, _ = tiny_loaders(n_train=64, batch_size=8)
    Trainer(
        student,
        kd_config(epochs=6, lr=0.03),
        ClassificationTask(),
        train,
        val,
        output_dir=tmp_path,
        loss_fn=distiller,
        extra_modules=[distiller.projections],
    ).fit()

    feature = [r["feature_loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert sum(feature[-4:]) / 4 < 0.5 * sum(feature[:4]) / 4
    assert not torch.equal(proj.weight, proj_before["weight"])  # the projection was trained


def test_feature_matching_with_equal_widths_uses_identity(tiny_mlp):
    teacher, student = tiny_mlp(seed=1), tiny_mlp(seed=2)
    cfg = DistillConfig(feature_weight=1.0, feature_pairs={"body.0": "body.0"})
    distiller = Distiller(
        teacher, ClassificationTask(), cfg, student=student, sample_inputs=torch.randn(2, 8)
    )
    assert isinstance(distiller.projections["0"], torch.nn.Identity)


@pytest.mark.parametrize("pairs", [{"body.7": "body.1"}, {"body.1": "trunk.1"}])
def test_bad_feature_module_name_is_named_in_the_error(tiny_mlp, pairs):
    cfg = DistillConfig(feature_weight=1.0, feature_pairs=pairs)
    bad = next(n for n in [*pairs, *pairs.values()] if n not in ("body.1",))
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        Distiller(tiny_mlp(), ClassificationTask(), cfg, student=tiny_mlp(), sample_inputs=torch.randn(2, 8))


def test_feature_matching_needs_student_and_sample_inputs(tiny_mlp):
    cfg = DistillConfig(feature_weight=1.0, feature_pairs={"body.1": "body.1"})
    with pytest.raises(ValueError, match="sample inputs"):
        Distiller(tiny_mlp(), ClassificationTask(), cfg)


@pytest.mark.parametrize(
    "kwargs", [dict(alpha=1.5), dict(alpha=-0.1), dict(temperature=0.0), dict(feature_weight=-1.0)]
)
def test_distill_config_rejects_out_of_range_values(kwargs):
    with pytest.raises(ValueError):
        DistillConfig(**kwargs)


def test_distill_config_from_yaml_data_rejects_alpha_above_one():
    with pytest.raises(ConfigError, match="alpha must be in"):
        from_dict(DistillConfig, {"alpha": 1.5}, source="kd.yaml")
    assert from_dict(DistillConfig, {"alpha": 0.5, "feature_pairs": {"a": "b"}}) == DistillConfig(
        alpha=0.5, feature_pairs={"a": "b"}
    )


# ------------------------------------------------------------------------------------------ Learngene Pool's form


def test_soft_cross_entropy_is_the_mean_over_logits_of_teacher_weighted_log_probs():
    g = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    for temperature in (1.0, 2.0):
        expected = (-(F.softmax(teacher / temperature, -1) * F.log_softmax(student / temperature, -1))).mean()
        got = soft_cross_entropy_loss(student, teacher, temperature)
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # no T^2 and a mean over all 24 logits: one sample's sum over classes is 6x the per-logit mean
    assert soft_cross_entropy_loss(student[:1], teacher[:1], 1.0).item() * 6 == pytest.approx(
        F.cross_entropy(student[:1], F.softmax(teacher[:1], -1)).item(), rel=1e-5
    )


def test_soft_ce_distiller_uses_soft_cross_entropy(tiny_mlp):
    student, teacher = tiny_mlp(seed=0), tiny_mlp(seed=1)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = DistillConfig(alpha=0.9, temperature=2.0, soft_loss="soft-ce")
    loss, _, parts = Distiller(teacher, ClassificationTask(), cfg)(student, x, y)
    soft = soft_cross_entropy_loss(student(x), teacher(x), 2.0)
    assert parts["kd_loss"].item() == pytest.approx(soft.item(), rel=1e-6)
    assert loss.item() == pytest.approx((0.9 * soft + 0.1 * F.cross_entropy(student(x), y)).item(), rel=1e-5)


def test_teacher_side_projections_map_teacher_width_to_student_width(tiny_mlp):
    teacher, student = tiny_mlp(seed=1, hidden=32), tiny_mlp(seed=2, hidden=12)
    cfg = DistillConfig(
        feature_weight=1.0, feature_pairs={"body.1": "body.1", "body.0": "body.0"}, project="teacher"
    )
    distiller = Distiller(
        teacher, ClassificationTask(), cfg, student=student, sample_inputs=torch.randn(2, 8)
    )
    for name in ("body.1", "body.0"):
        proj = distiller.projection_of(name)
        assert (proj.in_features, proj.out_features) == (32, 12)
    assert distiller.projection_of("body.0") is distiller.projections["1"]
    with pytest.raises(KeyError, match="head"):
        distiller.projection_of("head")


def test_feature_loss_is_the_sum_or_mean_of_per_pair_mses_with_teacher_projected(tiny_mlp):
    teacher, student = tiny_mlp(seed=1, hidden=32), tiny_mlp(seed=2, hidden=12)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2, 0, 1])
    pairs = {"body.0": "body.0", "body.1": "body.1"}
    losses = {}
    for reduce in ("sum", "mean"):
        cfg = DistillConfig(feature_weight=1.0, feature_pairs=pairs, project="teacher", feature_reduce=reduce)
        torch.manual_seed(0)  # same projections for both reductions
        distiller = Distiller(teacher, ClassificationTask(), cfg, student=student, sample_inputs=x)
        _, _, parts = distiller(student, x, y)
        expected = [
            F.mse_loss(student.body[i](h_s), distiller.projections[str(i)](teacher.body[i](h_t)))
            for i, (h_s, h_t) in enumerate([(x, x), (student.body[0](x), teacher.body[0](x))])
        ]
        losses[reduce] = parts["feature_loss"].item()
        want = sum(expected) if reduce == "sum" else sum(expected) / 2
        assert losses[reduce] == pytest.approx(want.item(), rel=1e-5)
    assert losses["sum"] == pytest.approx(2 * losses["mean"], rel=1e-5)


def test_teacher_projected_feature_loss_falls_in_training(tmp_path, tiny_loaders, tiny_mlp):
    teacher, student = tiny_mlp(seed=1, hidden=32), tiny_mlp(seed=2, hidden=12)
    cfg = DistillConfig(
        alpha=0.9, soft_loss="soft-ce", feature_weight=0.9, feature_pairs={"body.1": "body.1"}, project="teacher",
        feature_reduce="sum",
    )  # fmt: skip
    distiller = Distiller(
        teacher, ClassificationTask(), cfg, student=student, sample_inputs=torch.randn(4, 8)
    )
    before = distiller.projections["0"].weight.detach().clone()
    train, val, _ = tiny_loaders(n_train=64, batch_size=8)
    Trainer(
        student, kd_config(epochs=6, lr=0.03), ClassificationTask(), train, val, output_dir=tmp_path,
        loss_fn=distiller, extra_modules=[distiller.projections],
    ).fit()  # fmt: skip
    feature = [r["feature_loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert sum(feature[-4:]) / 4 < 0.5 * sum(feature[:4]) / 4
    assert not torch.equal(distiller.projections["0"].weight, before)


def test_feature_pairs_with_different_token_counts_are_refused(tiny_vit):
    student, teacher = tiny_vit(seed=0), tiny_vit(seed=1)
    teacher.cls_token = None  # 16 tokens against the student's 17
    teacher.num_prefix_tokens = 0
    teacher.pos_embed = torch.nn.Parameter(teacher.pos_embed[:, 1:].detach().clone())
    cfg = DistillConfig(feature_weight=1.0, feature_pairs={"blocks.1": "blocks.1"}, project="teacher")
    with pytest.raises(ModelError, match="blocks.1.*differ before the last"):
        Distiller(
            teacher, ClassificationTask(), cfg, student=student, sample_inputs=torch.randn(2, 3, 16, 16)
        )


# ------------------------------------------------------------------------------------------ check before step 1


class _Noisy(torch.utils.data.Dataset):
    """Samples with fresh noise from the global RNG each time (an augmentation the check must not advance)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x + 0.1 * torch.randn_like(x), y


def _distil_run(out, tiny_loaders, tiny_mlp) -> Trainer:
    teacher = tiny_mlp(seed=1, hidden=32)
    student = tiny_mlp(seed=2, hidden=12)
    cfg = DistillConfig(alpha=0.5, temperature=2.0, feature_weight=0.5, feature_pairs={"body.1": "body.1"})
    sample = torch.randn(2, 8)
    distiller = Distiller(teacher, ClassificationTask(), cfg, student=student, sample_inputs=sample)
    train, val, test = tiny_loaders(n_train=32, batch_size=8)
    train = torch.utils.data.DataLoader(_Noisy(train.dataset), batch_size=8, shuffle=True)
    return Trainer(
        student, kd_config(epochs=2, lr=0.03), ClassificationTask(), train, val, test, output_dir=out,
        loss_fn=distiller, extra_modules=[distiller.projections],
    )  # fmt: skip


def test_a_distillation_run_is_checked_before_step_1_and_the_check_changes_nothing(
    tmp_path, tiny_loaders, tiny_mlp
):
    with model_data_probes() as calls:
        _distil_run(tmp_path / "probed", tiny_loaders, tiny_mlp).fit()
    assert calls == [0]
    with model_data_probes(enabled=False):
        _distil_run(tmp_path / "unprobed", tiny_loaders, tiny_mlp).fit()
    assert_same_safetensors(tmp_path / "probed", tmp_path / "unprobed")
    records = [read_metrics(tmp_path / name / "metrics.jsonl") for name in ("probed", "unprobed")]
    assert records[0] == records[1]


def test_a_teacher_that_cannot_run_on_the_data_is_named_before_step_1(tmp_path, tiny_loaders, tiny_mlp):
    teacher = tiny_mlp(seed=1, dim=5)  # the data is 8 wide
    distiller = Distiller(teacher, ClassificationTask(), DistillConfig(alpha=0.5))
    train, val, _ = tiny_loaders()
    trainer = Trainer(
        tiny_mlp(), kd_config(), ClassificationTask(), train, val, output_dir=tmp_path, loss_fn=distiller
    )
    with pytest.raises(
        ModelError, match=r"^the teacher \(TinyMLP\) cannot run on a training batch \(inputs \(2, 8\)\)"
    ):
        trainer.fit()
    assert not (tmp_path / "metrics.jsonl").exists()
