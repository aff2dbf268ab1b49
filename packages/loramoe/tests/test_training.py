"""`loramoe train / eval / generate` on the tiny preset through the core Trainer, and one-line CLI errors."""

from __future__ import annotations

import json

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from learngene_core.checkpoint import load_model_weights
from learngene_core.config import load_config
from learngene_core.models import build_model
from learngene_core.testing import assert_one_error_line, assert_resume_is_exact
from loramoe import get_loramoe_model
from loramoe.cli import main
from loramoe.experiment import LoraMoEExperimentConfig, load_adapter

from .conftest import TINY_RUN


def records(run, split):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_lm_loss_falls_and_both_losses_are_logged(tiny_run):
    train = records(tiny_run, "train")
    assert train[-1]["lm_loss"] < train[0]["lm_loss"] - 0.3
    assert all(r["blc_loss"] > 0 for r in train)
    for r in train:  # each line's loss is the sum of its logged parts (all averaged over the same steps)
        assert abs(r["loss"] - (r["lm_loss"] + r["blc_loss"])) < 1e-5 * max(1.0, r["loss"]), r
    assert records(tiny_run, "test")[0]["loss"] < 5.0  # answer tokens; uniform over 257 bytes is 5.55


def test_run_writes_a_small_adapter_and_the_usage_table(tiny_run):
    assert sorted(p.name for p in (tiny_run / "adapter").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    adapter = load_file(tiny_run / "adapter" / "adapter_model.safetensors")
    assert all(".lora_" in k for k in adapter)
    usage = json.loads((tiny_run / "usage.json").read_text())
    assert len(usage["usage"]) == 2 and all(abs(sum(row) - 1) < 1e-4 for row in usage["usage"])


def test_base_is_bit_identical_after_training_and_adapter_reloads_exactly(tiny_run):
    cfg = load_config(tiny_run / "config.yaml", cls=LoraMoEExperimentConfig)
    set_seed(cfg.seed)
    fresh = build_model(cfg.model, vocab_size=257)
    saved = AutoModelForCausalLM.from_pretrained(tiny_run / "base-model", local_files_only=True).state_dict()
    assert sorted(saved) == sorted(fresh.state_dict())  # every weight of the base, tied ones included
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(saved[key], tensor), key
    # the Trainer's final/ (experts and routers only: checkpoint_weights=trainable) on the same base, and
    # adapter/ on the saved base, give the same logits
    assert not any(
        ".base_layer." in k or "embed" in k for k in load_file(tiny_run / "final" / "model.safetensors")
    )
    set_seed(cfg.seed)
    full = get_loramoe_model(build_model(cfg.model, vocab_size=257), cfg.loramoe)
    load_model_weights(full, tiny_run / "final", partial=True)
    loaded, codec = load_adapter(tiny_run / "adapter")
    ids = torch.tensor([codec.prompt_ids("Reverse the letters of the word.\nabcd")])
    assert torch.equal(loaded(input_ids=ids).logits, full.eval()(input_ids=ids).logits)


def test_eval_reports_metrics_per_task_type(tiny_run, capsys):
    assert main(["eval", "--run", str(tiny_run), "eval.batch_size=32", "train.progress=false"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("exact_match/downstream", "exact_match/world-knowledge", "option_accuracy/world-knowledge",
                "loss/downstream"):  # fmt: skip
        assert 0.0 <= metrics[key] <= (1.0 if "loss" not in key else 10.0), key
    assert metrics["samples"] == 80


def test_generate_answers_each_prompt(tiny_run, capsys):
    code = main(["generate", "--adapter", str(tiny_run / "adapter"), "--prompt", "Reverse the letters of the "
                 "word.\nabc", "--prompt", "Question: what is the code of xyz?\nAnswer:", "--max-new-tokens", "4"])  # fmt: skip
    assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def assert_one_line_error(capsys, code, *culprits):
    assert_one_error_line(code, capsys.readouterr().err, "loramoe", *culprits)


def test_cli_errors_are_one_line_and_write_nothing(capsys, tmp_path, tiny_run):
    out = tmp_path / "out"
    assert_one_line_error(
        capsys, main(["train", "--config", "tinyy", "--output-dir", str(out)]), "tinyy", "tiny"
    )
    code = main(["train", "--config", "tiny", "--output-dir", str(out), "loramoe.num_expert=4"])
    assert_one_line_error(capsys, code, "loramoe.num_expert", "num_experts")
    code = main(["train", "--config", "tiny", "--output-dir", str(out), "loramoe.num_experts=3"])
    assert_one_line_error(capsys, code, "num_experts=3", "expert_groups")
    assert not out.exists()
    code = main(["train", "--config", "tiny", "--output-dir", str(tiny_run)])
    assert_one_line_error(capsys, code, str(tiny_run), "--resume")


def test_cli_bad_data_names_file_and_line(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(
        '{"instruction": "q", "output": "a", "task_type": 0}\n{"instruction": "q"}\n'
    )
    out = tmp_path / "out"
    code = main(["train", "--config", "tiny", "--output-dir", str(out), "data.name=instructions",
                 f"data.path={data}", "data.options={}"])  # fmt: skip
    assert_one_line_error(capsys, code, f"{data / 'train.jsonl'}:2", "output")
    assert not out.exists()


def test_train_interrupted_after_a_checkpoint_resumes_exactly(tmp_path):
    argv = ["train", "--config", "tiny", *TINY_RUN, "train.max_steps=12", "train.checkpoint_every=4"]
    assert_resume_is_exact(main, argv, tmp_path, list(range(5, 13)))  # adapter/ included
