"""Every console script, on Ctrl-C and on a closed output pipe (`script list | head -1`).

Ctrl-C (a real SIGINT after the first optimizer step of a training verb) ends with exit code 130 and one line
giving the command that continues (or restarts) the run, never a traceback; a reader that closed the pipe ends
the script silently with exit code 141.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from learngene_core.cli import main as learngene
from learngene_core.testing import interrupt_console_cases

SCRIPTS = ["learngene", "tleg", "sws", "learngene-pool", "heur-learngene", "auto-learngene", "loramoe", "snell",
           "nino", "l2c"]  # fmt: skip
QUIET = "train.progress=false"


# `learngene-pool list` lists a pool (it needs --pool); l2c trains with `run`
PIPED = [
    *[(script, ["--help"]) for script in SCRIPTS],
    *[(script, ["run" if script == "l2c" else "train", "--help"]) for script in SCRIPTS],
    *[(script, ["list"]) for script in SCRIPTS if script != "learngene-pool"],
]


@pytest.mark.parametrize(("script", "argv"), PIPED, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_closed_output_pipe_ends_silently(script, argv):
    proc = subprocess.Popen([str(Path(sys.executable).with_name(script)), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first write, as after `| head -0`
    err = proc.communicate(timeout=300)[1].decode()
    assert (proc.returncode, err) == (141, "")  # 128 + SIGPIPE, for `--help` as for any other output


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrl-c")
    ancestry = str(root / "ancestry")
    assert (
        learngene(
            ["train", "--config", "digits-ancestry", "--output-dir", ancestry, "train.max_steps=2", QUIET]
        )
        == 0
    )
    out = str(root / "out")
    cases = {
        "learngene": ("learngene_core.cli", ["train", "--config", "digits-vit", "--output-dir", f"{out}/core", QUIET]),
        "tleg": ("tleg.cli", ["extract", "--config", "tiny", "--output-dir", f"{out}/tleg", f"ancestry.run={ancestry}", QUIET]),
        "sws": ("sws.cli", ["extract", "--config", "tiny", "--output-dir", f"{out}/sws", f"ancestry.run={ancestry}", QUIET]),
        "learngene-pool": ("learngene_pool.cli", ["distill", "--config", "tiny-aux-narrow", "--output-dir", f"{out}/pool", f"ancestry.run={ancestry}", QUIET]),
        "heur-learngene": ("heur_learngene.cli", ["collective", "--config", "tiny", "--output-dir", f"{out}/heur", QUIET]),
        "auto-learngene": ("auto_learngene.cli", ["condense", "--config", "tiny", "--output-dir", f"{out}/auto", f"ancestry.run={ancestry}", QUIET]),
        "loramoe": ("loramoe.cli", ["train", "--config", "tiny", "--output-dir", f"{out}/loramoe", QUIET]),
        "snell": ("snell.cli", ["train", "--config", "tiny", "--output-dir", f"{out}/snell", QUIET]),
        "nino": ("nino.cli", ["train", "--config", "train-tiny", "--output", f"{out}/nino", "progress=false"]),
        "l2c": ("l2c.cli", ["train-selector", "--config", "tiny", "--output-dir", f"{out}/l2c"]),
    }  # fmt: skip
    assert list(cases) == SCRIPTS
    return dict(zip(cases, zip(cases.values(), interrupt_console_cases(list(cases.values())))))


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_is_one_line_with_the_command_to_go_on_and_exit_code_130(interrupted, script):
    (_, argv), result = interrupted[script]
    assert result["code"] == 130, result["stderr"]
    assert "Traceback" not in result["stderr"]
    said = [line for line in result["stderr"].splitlines() if "interrupted" in line]
    assert said == result["stderr"].splitlines()[-1:], result["stderr"]
    command = shlex.join([script, *argv])
    assert said[0] in (
        f"{script}: interrupted; to continue, run: {command} --resume",
        f"{script}: interrupted; to start over, run: {command} (with a new --output-dir if it already wrote there)",
    ), said[0]
