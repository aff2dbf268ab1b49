"""The `learngene` console script: the digits contract, resume after an interrupt, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learngene_core.cli import main

SHORT = ["train.epochs=2", "train.progress=false"]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the console script as a user would (a fresh interpreter)."""
    cmd = [sys.executable, "-m", "learngene_core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_train_digits_preset_meets_the_contract(tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["train", "--config", "digits-vit", "--output-dir", str(out), "train.progress=false"]) == 0

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all({"step", "split"} <= r.keys() for r in records)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert all("loss" in r for r in records)
    test = [r for r in records if r["split"] == "test"]
    assert len(test) == 1 and test[0]["accuracy"] >= 0.90
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0] / 5  # the loss falls on real data
    assert (out / "config.yaml").is_file()
    assert "model.safetensors" in os.listdir(out / "final")
    assert (out / "metrics.png").stat().st_size > 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["accuracy"] == pytest.approx(test[0]["accuracy"])


def test_eval_reproduces_the_final_test_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "digits-vit", "--output-dir", str(out), *SHORT]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", "--run", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])
    threads = json.loads((out / "final" / "metadata.json").read_text())[
        "threads"
    ]  # the run records its threads
    assert threads["threads"] == torch.get_num_threads()
    assert threads["source"].startswith("default") or threads["source"] == "OMP_NUM_THREADS"


def test_existing_output_dir_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert main(["train", "--config", "digits-vit", "--output-dir", str(out), *SHORT]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and str(out) in err
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--config", "digits-vit", "train.lrr=0.1"], "train.lrr"),
        (["--config", "digits-vit", "bogus=1"], "bogus"),
        (["--config", "digits-vit", "train.epochs=many"], "train.epochs"),
        (["--config", "no/such/file.yaml"], "no/such/file.yaml"),
        (["--config", "digits-vitt"], "digits-vit"),  # did-you-mean names the preset
        (["--config", "digits-vit", "model.name=vit_nonexistent_model"], "vit_nonexistent_model"),
        (["--config", "digits-vit", "data.name=digitz"], "digitz"),
    ],
)
def test_bad_input_gives_one_error_line_and_writes_nothing(tmp_path, capsys, args, culprit):
    out = tmp_path / "run"
    assert main(["train", *args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("learngene: error: ") and culprit in err[0]
    assert not out.exists()


def test_console_script_error_has_no_traceback(tmp_path):
    result = run_cli("train", "--config", "digits-vit", "--output-dir", str(tmp_path / "r"), "train.nope=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "Traceback" not in result.stderr and "train.nope" in result.stderr


def test_list_shows_presets_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-vit", "tiny-llama", "digits", "synthetic-images", "synthetic-text", "cifar100"):
        assert name in out


def test_help_has_examples():
    result = run_cli("--help", timeout=120)
    assert result.returncode == 0 and "learngene train --config digits-vit" in result.stdout


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    args = ["--config", "digits-vit", "train.epochs=4", "train.checkpoint_every=7", "train.progress=false"]
    reference = tmp_path / "reference"
    assert main(["train", *args, "--output-dir", str(reference)]) == 0

    run = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "learngene_core.cli", "train", *args, "--output-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "last" / "metadata.json").exists():  # wait for a first checkpoint
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:  # interrupted mid-run (it may rarely finish first on a fast machine)
        assert proc.returncode == 130 and "--resume" in err
        assert not (run / "final").exists()

    assert main(["train", *args, "--output-dir", str(run), "--resume"]) == 0
    expected, resumed = _final_weights(reference), _final_weights(run)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    steps = [
        (r["step"], r["split"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    ]
    assert len(steps) == len(set(steps))


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "digits-vit", "--output-dir", str(out), *SHORT]) == 0
    capsys.readouterr()
    assert (
        main(
            ["train", "--config", "digits-vit", "--output-dir", str(out), *SHORT, "train.lr=0.1", "--resume"]
        )
        == 2
    )
    assert "train.lr" in capsys.readouterr().err


def test_two_cpu_processes_share_the_data(tmp_path):
    """The same command under torchrun (gloo on CPU): each process sees half the batches, main writes once."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "learngene_core.cli",
        "train",
        "--config",
        "digits-vit",
        "--output-dir",
        str(out),
        "train.epochs=1",
        "train.progress=false",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 9  # ceil(1078 / 64 / 2) steps per process, one epoch
    assert [r["split"] for r in records].count("test") == 1
    assert len([line for line in result.stdout.splitlines() if line.startswith('{"split": "test"')]) == 1


def test_tiny_llama_preset_trains_a_causal_lm(tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["train", "--config", "tiny-llama", "--output-dir", str(out), "train.progress=false"]) == 0
    val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r["split"] == "val"]
    assert val[-1]["loss"] < val[0]["loss"] and val[-1]["perplexity"] < 20  # vocab 128: chance is 128
