"""distill -> build -> list -> train through the console script: losses fall on real digits, files and tables
are what the README says, and fine-tuning resumes like every core run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from learngene_core.errors import CheckpointError
from learngene_core.metrics import read_metrics
from learngene_pool.build import load_pool
from learngene_pool.cli import main
from learngene_pool.descendant import load_descendant


def train_records(run_dir, key="loss"):
    return [r[key] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]


def test_distillation_loss_terms_fall_and_the_aux_model_learns(narrow_dir):
    manifest = json.loads((narrow_dir / "aux.json").read_text())
    assert manifest["feature_pairs"] == {
        "blocks.0": "blocks.0",
        "blocks.1": "blocks.1",
        "blocks.2": "blocks.2",
        "blocks.0.attn": "blocks.0.attn",
        "blocks.1.attn": "blocks.1.attn",
        "blocks.2.attn": "blocks.2.attn",
    }  # fmt: skip  ([front,end]: student d/3-1, 2d/3-1, d-1 of 3 blocks; teacher the same of 3 blocks)
    for key in ("kd_loss", "ce_loss", "feature_loss"):
        values = train_records(narrow_dir, key)
        assert sum(values[-3:]) / 3 < sum(values[:3]) / 3, key
    test = [r for r in read_metrics(narrow_dir / "metrics.jsonl") if r["split"] == "test"][-1]
    assert test["accuracy"] > 0.6  # 5 classes: chance is 0.2
    assert manifest["ancestry"]["width"] == 64 and len(manifest["ancestry"]["fingerprint"]) == 16


def test_the_pool_trains_and_its_descendants_classify(pool_dir):
    pool, manifest = load_pool(pool_dir)
    assert manifest["stitch_init"] == "ours" and manifest["train_ids"] == list(range(9))
    from learngene_core.config import load_config
    from learngene_core.experiment import prepare_run

    run = prepare_run(load_config("tiny-train", [], package="learngene_pool.configs"))
    x, y = map(torch.cat, zip(*run.loaders[2]))
    with torch.no_grad():
        accuracies = [(pool.run(c.id, x).argmax(-1) == y).float().mean().item() for c in pool.configs]
    assert sum(accuracies) / len(accuracies) > 0.5, accuracies  # 5 classes: chance is 0.2
    losses = train_records(pool_dir)
    assert losses[-1] < losses[0]


def test_list_counts_flops_with_torch_and_sorts_by_parameters(pool_dir, tmp_path, capsys):
    assert main(["list", "--pool", str(pool_dir), "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 9 and [r["parameters"] for r in rows] == sorted(r["parameters"] for r in rows)
    pool, _ = load_pool(pool_dir)
    with FlopCounterMode(display=False) as counter:
        pool.instances[1](torch.zeros(1, 1, 16, 16))
    assert next(r for r in rows if r["id"] == 1)["flops"] == counter.get_total_flops() > 0
    out = capsys.readouterr().out
    assert "instance 0 alone" in out and "stitch" in out


def test_list_reads_the_rows_build_counted_without_torch_and_counts_them_for_an_older_pool(
    pool_dir, tmp_path
):
    probe = (
        "import sys; from learngene_pool.cli import main; main(['list', '--pool', sys.argv[1]]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(pool_dir)], capture_output=True, text=True)
    listed, heavy = result.stdout.rsplit("\n", 2)[:2]
    assert result.returncode == 0 and heavy == "[]", result.stderr
    older = tmp_path / "older"
    shutil.copytree(pool_dir, older)
    manifest = json.loads((older / "pool.json").read_text())
    del manifest["descendants"]  # as build wrote it before it recorded them
    (older / "pool.json").write_text(json.dumps(manifest))
    counted = subprocess.run([sys.executable, "-c", probe, str(older)], capture_output=True, text=True)
    assert counted.stdout.rsplit("\n", 2)[0] == listed


def test_fine_tuning_a_descendant_is_a_core_run_that_resumes(pool_dir, tmp_path):
    out = tmp_path / "train"
    argv = ["train", "--pool", str(pool_dir), "--config-id", "3", "--config", "tiny-train", "--output-dir", str(out),
            "train.progress=false", "train.epochs=2", "train.lr=1e-3"]  # fmt: skip
    assert main(argv) == 0
    for name in ("config.yaml", "metrics.jsonl", "metrics.png", "best", "final", "checkpoints/last"):
        assert (out / name).exists(), name
    model = load_descendant(out / "final")  # the fine-tuned descendant reloads with its JSON
    assert model.spec == load_pool(pool_dir)[0].descendant_spec(3)
    records = read_metrics(out / "metrics.jsonl")
    assert [r for r in records if r["split"] == "test"][-1]["accuracy"] > 0.6
    assert main([*argv[:-2], "train.epochs=3", "train.lr=1e-3", "--resume"]) == 2  # other budget: refused
    assert main([*argv, "--resume"]) == 0  # same config: resumes (nothing left to do) and re-evaluates


def test_scratch_twin_has_the_same_architecture_and_fresh_weights(pool_dir, tmp_path):
    runs = {}
    for init in ("pool", "scratch"):
        out = tmp_path / init
        argv = ["train", "--pool", str(pool_dir), "--config-id", "5", "--init", init, "--config", "tiny-train",
                "--output-dir", str(out), "train.progress=false", "train.epochs=1"]  # fmt: skip
        assert main(argv) == 0
        runs[init] = out
    pool_model, scratch_model = (load_descendant(runs[i] / "final") for i in ("pool", "scratch"))
    assert [p.shape for p in pool_model.parameters()] == [p.shape for p in scratch_model.parameters()]
    first = {i: read_metrics(runs[i] / "metrics.jsonl")[0]["loss"] for i in runs}
    assert first["pool"] < first["scratch"]  # the pool's descendant starts trained


def test_eval_reports_every_descendant_as_the_pool_holds_it(pool_dir, capsys):
    assert main(["eval", "--pool", str(pool_dir), "--config", "tiny-train"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["config_id"] for r in rows] == list(range(9))
    from learngene_core.config import load_config
    from learngene_core.experiment import prepare_run

    pool, _ = load_pool(pool_dir)
    run = prepare_run(load_config("tiny-train", [], package="learngene_pool.configs"))
    x, y = map(torch.cat, zip(*run.loaders[2]))
    with torch.no_grad():
        expected = (pool.run(7, x).argmax(-1) == y).float().mean().item()
    assert rows[7]["accuracy"] == expected


def test_an_ancestry_given_as_timm_model_and_weights_file_is_the_same_ancestry(
    ancestry_dir, narrow_dir, tmp_path
):
    out = tmp_path / "aux"
    kwargs = ("patch_size=4", "embed_dim=64", "depth=3", "num_heads=4", "mlp_ratio=2.0", "class_token=false",
              "global_pool=avg")  # fmt: skip
    argv = ["distill", "--config", "tiny-aux-narrow", "--output-dir", str(out), "train.epochs=1",
            "train.progress=false", "ancestry.model.name=vit_tiny_patch16_224",
            f"ancestry.model.checkpoint={ancestry_dir / 'final' / 'model.safetensors'}",
            *[f"ancestry.model.kwargs.{kw}" for kw in kwargs]]  # fmt: skip
    assert main(argv) == 0
    by_file, by_run = (json.loads((d / "aux.json").read_text())["ancestry"] for d in (out, narrow_dir))
    assert by_file["fingerprint"] == by_run["fingerprint"] and by_file["source"] != by_run["source"]


def test_a_descendant_json_without_its_spec_is_one_error_naming_it(pool_dir, tmp_path):
    assert (
        main(["init", "--pool", str(pool_dir), "--config-id", "1", "--output-dir", str(tmp_path / "d")]) == 0
    )
    config = json.loads((tmp_path / "d" / "descendant.json").read_text())
    (tmp_path / "d" / "descendant.json").write_text(json.dumps({**config, "spec": [1]}))  # was a TypeError
    with pytest.raises(CheckpointError, match=r"descendant.json: 'spec' is missing or not a mapping"):
        load_descendant(tmp_path / "d")
