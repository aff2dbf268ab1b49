"""The shared console-script helpers: `--threads`, help laid out as written, preset descriptions, lazy exports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from learngene_core.clitools import format_presets, make_parser, preset_description
from learngene_core.threads import choose_threads, thread_record

EXAMPLES = "examples:\n  tool train --config tiny --output-dir runs/a   # one\n  tool eval --run runs/a\n"


def parser():
    p = make_parser("tool", "A tool.", EXAMPLES, presets="learngene_core.configs")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("train", help="train", epilog=EXAMPLES)
    verbs.add_parser("list", help="list", threads=False)
    return p


@pytest.fixture
def restore_threads(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_option_sets_torch_threads_and_the_environment(restore_threads):
    args = parser().parse_args(["train", "--threads", "2"])
    assert args.threads == 2 and torch.get_num_threads() == 2
    record = thread_record()
    assert (record["threads"], record["source"]) == (2, "--threads")
    assert os.environ["OMP_NUM_THREADS"] == "2"  # children (data workers, subprocesses) inherit the choice
    torch.set_num_threads(3)
    assert thread_record()["source"] == "changed in code after --threads"


def test_default_is_torch_threads_sleeping_when_idle_else_one(restore_threads, monkeypatch):
    # torch is imported in this process without a passive wait policy: spinning threads, so one thread
    assert choose_threads()["threads"] == 1 and choose_threads()["source"].startswith(
        "default (torch was loaded"
    )
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert choose_threads() == {"threads": None, "source": "default"}  # torch's own count
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == {"threads": 3, "source": "OMP_NUM_THREADS"}
    assert choose_threads(2) == {"threads": 2, "source": "--threads"}
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert choose_threads()["source"] == "default"


def test_a_console_script_sets_the_passive_wait_policy_before_torch_loads(tmp_path):
    code = textwrap.dedent(
        """
        import os, sys
        from learngene_core.clitools import make_parser
        parser = make_parser("tool", "A tool.")
        parser.add_subparsers(dest="verb").add_parser("train")
        parser.parse_args(["train"])
        assert "torch" not in sys.modules and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert "OMP_NUM_THREADS" not in os.environ
        import torch
        from learngene_core.threads import thread_record
        record = thread_record()
        assert record["source"] == "default" and record["omp_wait_policy"] == "PASSIVE", record
        assert record["threads"] == torch.get_num_threads()
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_bad_thread_count_is_one_error_line_and_exit_code_2(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["train", "--threads", bad])
    assert exit_info.value.code == 2
    assert "tool train: error: argument --threads: --threads must be" in capsys.readouterr().err


def test_list_verbs_take_no_threads_option(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["list", "--threads", "2"])
    assert "unrecognized arguments: --threads" in capsys.readouterr().err


def test_help_keeps_examples_one_per_line_in_every_verb(capsys):
    for argv in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
        out = capsys.readouterr().out
        assert "  tool train --config tiny --output-dir runs/a   # one\n  tool eval --run runs/a\n" in out


def test_help_lists_every_preset_with_its_description(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert format_presets("learngene_core.configs") in out
    assert "  digits-vit       A 4-layer ViT trained from scratch on scikit-learn's digits" in out


def test_preset_description_is_the_first_sentence_of_the_leading_comment():
    text = "# Tiny run on a CPU: seconds. Second sentence.\n#   tool train --config x\nmodel: {}\n"
    assert preset_description(text) == "Tiny run on a CPU: seconds."
    wrapped = (
        "# A long first sentence that\n# goes on. And more\n# with a command:\n#   tool train\nseed: 0\n"
    )
    assert preset_description(wrapped) == "A long first sentence that goes on."
    assert preset_description("# Ends in a colon:\n#   cmd\nseed: 1\n") == "Ends in a colon"
    assert preset_description("seed: 0\n") == ""


def test_lazy_exports_load_on_first_use_and_win_over_a_same_named_submodule(tmp_path):
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from learngene_core.lazy import lazy_exports\n"
        "__all__ = lazy_exports(__name__, {'.heavy': ['Heavy'], '.tool': ['tool']})\n"
    )
    (pkg / "heavy.py").write_text("import sys\nsys.modules['lazypkg'].loaded = True\nclass Heavy: ...\n")
    (pkg / "tool.py").write_text("from .heavy import Heavy\ndef tool():\n    return Heavy\n")
    code = textwrap.dedent(
        """
        import sys, lazypkg
        assert 'lazypkg.heavy' not in sys.modules and lazypkg.__all__ == ['Heavy', 'tool']
        import lazypkg.tool
        assert callable(lazypkg.tool) and lazypkg.tool() is lazypkg.Heavy, lazypkg.tool
        from lazypkg import tool
        assert tool.__name__ == 'tool' and 'Heavy' in dir(lazypkg)
        try:
            lazypkg.missing
        except AttributeError as exc:
            assert "has no attribute 'missing'" in str(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
