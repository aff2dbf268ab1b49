"""Ctrl-C and a closed output pipe, for every console script (all run through `clitools.run_cli`).

Ctrl-C exits 130 (the shell convention 128 + SIGINT) with one line giving the command that continues the run;
a reader that stops reading (`learngene list | head -1`) ends the script silently with 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from learngene_core.cli import main
from learngene_core.clitools import CliParser, run_cli
from learngene_core.testing import interrupt_console_cases


def _command(resumable: bool):
    def command(argv):
        parser = CliParser(prog="tool")
        verbs = parser.add_subparsers(dest="verb", required=True)
        train = verbs.add_parser("train")
        train.add_argument("--output-dir")
        if resumable:
            train.add_argument("--resume", action="store_true")
        parser.parse_args(argv)
        raise KeyboardInterrupt

    return command


def test_ctrl_c_is_one_line_with_the_command_that_continues(capsys):
    argv = ["train", "--output-dir", "runs/my run"]
    assert run_cli("tool", _command(resumable=True), argv) == 130
    assert capsys.readouterr().err.splitlines() == [
        "tool: interrupted; to continue, run: tool train --output-dir 'runs/my run' --resume"
    ]
    assert run_cli("tool", _command(resumable=True), [*argv, "--resume"]) == 130
    assert capsys.readouterr().err.endswith("'runs/my run' --resume\n")  # not twice
    assert run_cli("tool", _command(resumable=False), argv) == 130
    assert capsys.readouterr().err.splitlines() == [
        "tool: interrupted; to start over, run: tool train --output-dir 'runs/my run' "
        "(with a new --output-dir if it already wrote there)"
    ]


def test_sigint_in_training_stops_with_one_line_and_the_resume_command_finishes(tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "--config",
        "digits-vit",
        "--output-dir",
        str(out),
        "train.epochs=1",
        "train.progress=false",
    ]
    [done] = interrupt_console_cases([("learngene_core.cli", argv)])
    assert done["code"] == 130, done["stderr"]
    lines = done["stderr"].splitlines()
    assert len(lines) == 1 and "Traceback" not in done["stderr"], done["stderr"]
    prefix = "learngene: interrupted; to continue, run: "
    assert lines[0] == prefix + shlex.join(["learngene", *argv, "--resume"])
    assert not (out / "final").exists()
    assert main(shlex.split(lines[0][len(prefix) :])[1:]) == 0  # the advised command, as printed
    assert (out / "final" / "model.safetensors").is_file()


def test_a_closed_output_pipe_ends_silently_with_141():
    script = Path(sys.executable).with_name("learngene")
    proc = subprocess.Popen([str(script), "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write: `learngene list | head -0`
    err = proc.communicate(timeout=300)[1].decode()
    assert (proc.returncode, err) == (141, "")


def test_a_closed_pipe_inside_a_command_is_141_and_silent(capsys):
    def command(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert run_cli("tool", command, []) == 141
    assert capsys.readouterr().err == ""
