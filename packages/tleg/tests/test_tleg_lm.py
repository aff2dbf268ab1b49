"""TLEG on Hugging Face decoder LMs: a learngene extracted from a deeper (6-layer) Llama by distillation on
synthetic text, and random TLEG learngenes for Llama and GPT-2, expand into shallower and deeper LMs whose
layer i of L is exactly theta_A + (i / L) theta_B, loadable with transformers alone.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from learngene_core import experiment
from learngene_core.config import ExperimentConfig, from_dict
from learngene_core.learngene import AuxNet, ExtractConfig, Learngene, expand, extract
from learngene_core.metrics import read_metrics
from learngene_core.testing import LM_LAYERS, TINY_LM_KWARGS, TINY_VOCAB, tiny_lm_config
from tleg import TLEG

AUX_DEPTH, TEACHER_DEPTH = 4, 6
INHERITED = {
    "llama": ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"],
    "gpt2": ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "lm_head.weight"],
}
DATA = {"name": "synthetic-text", "seq_len": 16, "batch_size": 16, "options": {"vocab_size": TINY_VOCAB}}
METHOD = TLEG()


def lm_config(kind: str, depth: int):
    return tiny_lm_config(kind, depth)


def random_learngene(kind: str) -> tuple[Learngene, AuxNet]:
    """A TLEG learngene of an (untrained) aux LM whose A and B tensors are all random (so B matters everywhere)."""
    torch.manual_seed(0)
    template = AutoModelForCausalLM.from_config(lm_config(kind, AUX_DEPTH))
    spec = METHOD.parse_spec({"aux_depth": AUX_DEPTH})
    aux = AuxNet(template, METHOD, spec)
    with torch.no_grad():
        for p in aux.learngene.parameters():
            p.normal_(0, 0.05)
    backbone, state = aux.backbone, template.state_dict()
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in backbone.inherited_names(template)})
    manifest = {"method": "tleg", "backbone": backbone.name, "arch": backbone.arch(template), "spec": spec}
    return Learngene(tensors, manifest), aux


def check_descendant(lg: Learngene, kind: str, depth: int) -> None:
    model, inheritance = expand(lg, METHOD, list(range(depth)))
    state, prefix = model.state_dict(), LM_LAYERS[kind]
    names = [k[2:] for k in lg.tensors if k.startswith("A.")]
    assert names and len(state) == depth * len(names) + len(lg.tensors) - 2 * len(names)
    for i in range(depth):
        for n in names:
            expected = lg.tensors[f"A.{n}"] + (i / depth) * lg.tensors[f"B.{n}"]
            assert torch.equal(state[f"{prefix}.{i}.{n}"], expected), (i, n)
            assert inheritance[f"{prefix}.{i}.{n}"] == "expanded"
    for n in INHERITED[kind]:
        assert inheritance[n] == "copied" and torch.equal(state[n], lg.tensors[f"inherited.{n}"]), n
    assert set(inheritance.values()) == {"expanded", "copied"}
    plain = AutoModelForCausalLM.from_config(lm_config(kind, depth))
    plain.load_state_dict(state, strict=True)
    x = torch.randint(TINY_VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain.eval()(input_ids=x).logits, model.eval()(input_ids=x).logits)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("depth", [2, 8])
def test_random_tleg_lm_learngene_expands_linearly_and_loads_strictly(kind, depth):
    lg, _ = random_learngene(kind)
    check_descendant(lg, kind, depth)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_tleg_aux_lm_forward_equals_hf_model_built_from_generated_state(kind):
    _, aux = random_learngene(kind)
    plain = AutoModelForCausalLM.from_config(lm_config(kind, AUX_DEPTH))
    state = {k: v for k, v in aux.template.state_dict().items() if not k.startswith(LM_LAYERS[kind])}
    state.update(aux.generated_state())
    plain.load_state_dict(state, strict=True)
    x = torch.randint(TINY_VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, expected = aux.eval()(input_ids=x).logits, plain.eval()(input_ids=x).logits
    assert torch.allclose(out, expected, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ extraction from a deeper LM ancestry


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A 6-layer Llama trained briefly on synthetic text, and a 4-layer TLEG learngene distilled from it."""
    root = tmp_path_factory.mktemp("tleg-lm")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = {"source": "hf", "name": "llama", "kwargs": {**TINY_LM_KWARGS["llama"], "num_hidden_layers": 6}}
    train = {"epochs": 2, "lr": 3e-3, "progress": False, "best_metric": "loss", "best_mode": "min"}
    teacher_cfg = from_dict(ExperimentConfig, {"model": model, "data": DATA, "train": train})
    experiment.train(teacher_cfg, root / "ancestry")
    aux_model = {"source": "hf", "name": "llama", "kwargs": TINY_LM_KWARGS["llama"]}
    cfg = from_dict(
        ExtractConfig,
        {
            "ancestry": {"run": str(root / "ancestry")},
            "model": aux_model,
            "data": DATA,
            "train": {**train, "epochs": 3, "log_every": 2},
            "method": {"aux_depth": AUX_DEPTH},
        },
    )
    learngene, metrics = extract(METHOD, cfg, root / "lg")
    torch.set_num_threads(before)
    return root / "lg", learngene, metrics


def test_distillation_loss_falls_when_extracting_from_an_lm_ancestry(extracted):
    directory, _, _ = extracted
    train = [r for r in read_metrics(directory / "aux-run" / "metrics.jsonl") if r["split"] == "train"]
    kd = [r["kd_loss"] for r in train]
    assert len(kd) >= 4, kd
    assert sum(kd[-2:]) / 2 < 0.7 * kd[0], kd


def test_extracted_lm_manifest_names_the_backbone_and_the_depthless_config(extracted):
    directory, learngene, _ = extracted
    back = Learngene.load(directory, method="tleg")
    assert back.backbone == "hf-causal-lm" and back.manifest["backbone"] == "hf-causal-lm"
    assert back.arch["model_type"] == "llama" and back.arch["hidden_size"] == 32
    assert "num_hidden_layers" not in back.arch
    assert back.manifest["aux_layout"] == list(range(AUX_DEPTH))
    assert back.manifest["ancestry"]["parameters"] > back.manifest["parameters"]["learngene"]


@pytest.mark.parametrize("depth", [2, 8])
def test_extracted_lm_learngene_initialises_shallower_and_deeper_lms(extracted, depth):
    directory, _, _ = extracted
    check_descendant(Learngene.load(directory, method="tleg"), "llama", depth)


def test_tleg_expand_cli_writes_an_lm_descendant_transformers_loads(extracted, tmp_path):
    import json

    from tleg.cli import main

    directory, learngene, _ = extracted
    out = tmp_path / "d3"
    assert main(["expand", "--learngene", str(directory), "--depth", "3", "--output-dir", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert model.config.num_hidden_layers == 3
    expected, _ = expand(learngene, METHOD, [0, 1, 2])
    ours, theirs = expected.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    inheritance = json.loads((out / "inheritance.json").read_text())
    assert inheritance["model.embed_tokens.weight"] == "copied"
    assert inheritance["model.layers.2.mlp.up_proj.weight"] == "expanded"
    bad = ["expand", "--learngene", str(directory), "--depth", "2", "--img-size", "32"]
    assert main([*bad, "--output-dir", str(tmp_path / "bad")]) != 0


def test_tleg_train_from_an_lm_learngene_beats_scratch_on_loss(extracted, tmp_path):
    """`tleg train --init learngene:DIR` builds a 2-layer Llama from the learngene; scratch gets the same shape."""
    import yaml

    from tleg.cli import main

    directory, _, _ = extracted
    config = tmp_path / "descendant.yaml"
    train = {"epochs": 2, "lr": 3e-3, "progress": False, "best_metric": "loss", "best_mode": "min"}
    config.write_text(
        yaml.safe_dump({"model": {"source": "hf", "name": "llama"}, "data": DATA, "train": train})
    )
    common = ["--depth", "2", "--config", str(config)]
    assert (
        main(["train", "--init", f"learngene:{directory}", *common, "--output-dir", str(tmp_path / "lg")])
        == 0
    )
    assert (
        main(
            [
                "train",
                "--init",
                "scratch",
                "--learngene",
                str(directory),
                *common,
                "--output-dir",
                str(tmp_path / "sc"),
            ]
        )
        == 0
    )
    test_loss = {
        run: next(r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["split"] == "test")
        for run in ("lg", "sc")
    }
    assert test_loss["lg"] < test_loss["sc"], test_loss


@pytest.mark.parametrize("key", ["hidden_size=48", "drop_path_rate=0.1"])
def test_tleg_train_lm_with_a_shape_or_foreign_model_kwarg_is_one_line_error(
    extracted, tmp_path, capsys, key
):
    import yaml

    from tleg.cli import main

    directory, _, _ = extracted
    config = tmp_path / "descendant.yaml"
    config.write_text(yaml.safe_dump({"model": {"source": "hf", "name": "llama"}, "data": DATA}))
    out = tmp_path / "run"
    argv = ["train", "--init", f"learngene:{directory}", "--depth", "2", "--config", str(config),
            "--output-dir", str(out), f"model.kwargs.{key}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and key.split("=")[0] in err, err
    assert not out.exists()
