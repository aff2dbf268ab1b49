"""`nino` console script: graph counts, training with/without NiNo, and one-line user errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from learngene_core.testing import assert_one_error_line
from nino.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "nino", *culprits)


def test_graph_prints_the_fm16_counts(capsys):
    code, out, _ = run(capsys, "graph", "--model", "fm16-cnn")
    assert code == 0
    assert "nodes: 95 " in out and "edges: 2,057 " in out
    assert "conv" in out and "self_loop" in out


def test_graph_draws_the_adjacency(capsys, tmp_path):
    png = tmp_path / "adj.png"
    code, _, _ = run(capsys, "graph", "--model", "mlp-digits", "--plot", png)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_is_one_line_error_naming_it(capsys):
    code, _, err = run(capsys, "graph", "--model", "resnet-9000")
    assert_user_error(code, err, "resnet-9000")


def test_missing_checkpoint_is_one_line_error_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    missing = tmp_path / "nope.pt"
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", out, "--ckpt", missing)
    assert_user_error(code, err, str(missing))
    assert not out.exists()


@pytest.mark.parametrize("period, culprit", [("0", "--period"), ("-5", "--period"), ("7", "period")])
def test_bad_period_is_one_line_error(capsys, tmp_path, period, culprit):
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", out, "--period", period)
    assert_user_error(code, err, culprit)
    assert not out.exists()


def test_unknown_preset_and_unknown_key_are_one_line_errors(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", "train-tinyy", "--output", tmp_path / "a")
    assert_user_error(code, err, "train-tinyy", "did you mean")
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", tmp_path / "b", "stepz=3")
    assert_user_error(code, err, "stepz")


def test_metatrain_on_a_missing_dataset_is_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, "metatrain", "--data", tmp_path / "nodata", "--output", tmp_path / "o")
    assert_user_error(code, err, "nodata")
    assert not (tmp_path / "o").exists()


def test_train_compare_writes_both_curves_and_nowcasts(capsys, tmp_path, nino_ckpt):
    out = tmp_path / "cmp"
    code, stdout, err = run(
        capsys, "train", "--config", "train-tiny", "--compare", "--output", out, "--ckpt", nino_ckpt
    )
    assert code == 0, err
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"adamw", "nino"}
    # 120 steps at the tiny checkpoint's period 50 (5 x its 10-step spacing): nowcasts at calls 50 and 100, none
    # from the over-fitting stop on (the held-out loss rose above its lowest)
    stop = summary["nino"]["stopped_at"] or 121
    assert [r["step"] for r in summary["nino"]["nowcasts"]] == [s for s in (50, 100) if s < stop] != []
    assert summary["adamw"]["stopped_at"] is None
    assert summary["adamw"]["nowcasts"] == []
    for name in ("adamw", "nino"):
        lines = Path(out / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(0, 121, 10))


def test_every_shipped_preset_loads_into_its_config():
    from learngene_core.config import load_config, preset_names
    from nino.collect import CollectConfig
    from nino.metatrain import MetatrainConfig
    from nino.train import TrainRunConfig

    kinds = {"collect": CollectConfig, "metatrain": MetatrainConfig, "train": TrainRunConfig}
    names = preset_names("nino.configs")
    assert {"collect-cpu", "metatrain-cpu", "metatrain-paper", "train-cnn-digits"} <= set(names)
    for name in names:
        cfg = load_config(name, cls=kinds[name.split("-")[0]], package="nino.configs")
        assert cfg is not None
    paper = load_config("metatrain-paper", cls=MetatrainConfig, package="nino.configs")
    assert (
        paper.hid,
        paper.steps,
        paper.lr,
        paper.trajectories_per_batch * paper.windows_per_trajectory,
    ) == (128, 20_000, 3e-3, 16)


def test_public_api_exports_resolve():
    import nino

    for name in ("NiNo", "NiNoNet", "WNNPlus", "build_graph", "load_nino"):
        assert name in nino.__all__ and callable(getattr(nino, name))
    with pytest.raises(AttributeError):
        nino.no_such_name  # noqa: B018


def test_train_with_the_shipped_checkpoint_nowcasts_on_schedule(capsys, caplog, tmp_path):
    out = tmp_path / "n"
    # the over-fitting stop off (extra.overfit_tolerance=null): on this MLP the held-out loss rises above its
    # lowest before step 200, which would end nowcasting before the schedule under test
    args = ("--optimizer", "nino", "--output", out, "steps=240", "extra.overfit_tolerance=null")
    code, stdout, err = run(capsys, "train", "--config", "train-tiny", *args)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nino"]["stopped_at"] is None
    # the shipped checkpoint's period 200 (no spacing warning): one nowcast, checked 20 steps later
    assert "wrong unit" not in caplog.text
    [nowcast] = summary["nino"]["nowcasts"]
    assert (nowcast["step"], nowcast["k"], nowcast["checked_at"]) == (200, 40, 220)
    assert (out / "loss.png").is_file()


def test_train_lr_override_sets_adamw_learning_rate(capsys, tmp_path):
    """lr=... replaces the task's AdamW rate: a vanishing rate leaves the validation loss where it started."""
    out = tmp_path / "lr"
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", out, "lr=1e-12", "steps=20")
    assert code == 0, err
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] == pytest.approx(losses[0], rel=1e-6)
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", tmp_path / "bad", "lr=0")
    assert_user_error(code, err, "lr")


def test_override_help_shows_a_key_the_command_accepts(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "e.g. steps=500 lr=3e-3" in capsys.readouterr().out


def test_nan_loss_stops_with_one_line_and_resume_starts_the_run_over(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--config", "train-tiny", "--optimizer", "adamw", "--output", out]
    code, _, err = run(capsys, *argv, "lr=1e30")
    assert_user_error(code, err, "loss is nan", "--resume", str(out))
    assert not (out / "summary.json").exists()
    code, _, err = run(capsys, *argv, "lr=1e30")  # a plain rerun is refused, the message said --resume
    assert_user_error(code, err, "not empty")
    code, stdout, _ = run(capsys, *argv, "--resume", "lr=3e-3")
    assert code == 0 and "val loss" in stdout
    assert json.loads((out / "summary.json").read_text())["adamw"]["final_val"]["loss"] < 2.3
    code, _, err = run(capsys, *argv, "--resume")  # a run with a checkpoint is never cleared
    assert_user_error(code, err, "config differs at 'lr'")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "train", "--config", "train-tiny", "--output", tmp_path / "other", "--resume")
    assert_user_error(code, err, "notes.txt")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


TINY_METATRAIN = ["steps=4", "log_every=2", "checkpoint_every=2", "progress=false"]


def test_metatrain_resume_starts_an_unfinished_run_over_in_place(capsys, tmp_path, trajectory_dir):
    out = tmp_path / "meta"
    out.mkdir()
    (out / "config.yaml").write_text("steps: 12\n")  # what an interrupted run leaves behind
    (out / ".nino.pt.x1.tmp").write_bytes(b"half")
    (out / "nino-step00010.pt").write_bytes(b"a kept checkpoint of the interrupted run")
    argv = [
        "metatrain",
        "--config",
        "metatrain-tiny",
        "--data",
        trajectory_dir,
        "--output",
        out,
        *TINY_METATRAIN,
        "keep_checkpoints=true",
    ]
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, "not empty")
    code, _, _ = run(capsys, *argv, "--resume")
    assert code == 0 and (out / "nino.pt").is_file() and not (out / ".nino.pt.x1.tmp").exists()
    assert sorted(p.name for p in out.glob("nino-step*.pt")) == ["nino-step00002.pt", "nino-step00004.pt"]
    shutil.rmtree(out / "checkpoints")  # a run finished without a checkpoint to resume (older versions)
    code, _, err = run(capsys, *argv, "--resume")
    assert_user_error(code, err, "finished run")  # is never cleared
