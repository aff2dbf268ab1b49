"""Test helpers shared by the packages' test suites (imported by tests only; needs pytest).

`one_torch_thread` is a session-wide autouse fixture: import it into a conftest.py to run that suite on one
torch thread (tiny models: threads cost more than they save, and a busy machine makes them far slower).
`tiny_lm_config` builds the small Llama / GPT-2 configs the learngene LM tests share; `write_fake_cifar100` writes a
random-pixel dataset in the CIFAR-100 python layout for tests of presets that read it from a local path.
`interrupt_console_cases` runs console scripts that get a real Ctrl-C after their first optimizer step;
`interrupt_after_checkpoint` stops a Trainer run right after a checkpoint (`interrupt_after_first_step`: before any;
`interrupt_after_steps`: after any number of optimizer steps)
and `recorded_steps` lists the steps
runs make, to test `--resume` of a console script in process.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

#: Vocabulary of the tiny test LMs.
TINY_VOCAB = 64
#: Config fields of the tiny test LMs by model type (depth set by `tiny_lm_config`).
TINY_LM_KWARGS: dict[str, dict[str, Any]] = {
    "llama": dict(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=TINY_VOCAB,
        max_position_embeddings=64,
    ),
    "gpt2": dict(n_embd=32, n_head=2, vocab_size=TINY_VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0),
}
#: The config field holding the depth, and the module path of the layer list, by model type.
LM_DEPTH_KEY = {"llama": "num_hidden_layers", "gpt2": "n_layer"}
LM_LAYERS = {"llama": "model.layers", "gpt2": "transformer.h"}


def tiny_lm_config(kind: str, depth: int):
    """A transformers config of a tiny `kind` ("llama" or "gpt2") decoder with `depth` layers."""
    from transformers import AutoConfig

    return AutoConfig.for_model(kind, **{**TINY_LM_KWARGS[kind], LM_DEPTH_KEY[kind]: depth})


def write_fake_cifar100(root: Path, n_train: int = 20, n_test: int = 10, num_classes: int = 5) -> Path:
    """`root/cifar-100-python/{train,test,meta}` with random images, label i % num_classes, as numpy 1.x pickled them."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [i % num_classes for i in range(n)],
            "coarse_labels": [i % 2 for i in range(n)],
            "filenames": [f"img{i}.png" for i in range(n)],
        }
        # real files were written by numpy 1.x, whose arrays pickle via numpy.core (numpy 2 writes numpy._core)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2).replace(b"numpy._core.", b"numpy.core."))
    names = (
        ["apple", "bee", "cup", "dog", "eel"]
        if num_classes == 5
        else [f"class{i}" for i in range(num_classes)]
    )
    meta = {"fine_label_names": names, "coarse_label_names": ["food", "animal"]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the whole session on one torch thread, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def interrupt_after_checkpoint(count: int = 1) -> Iterator[None]:
    """Inside the block, the Trainer raises KeyboardInterrupt (a Ctrl-C) right after writing its `count`-th
    `checkpoints/last`, so a console script's `--resume` can be tested in process, deterministically.
    `count=0`: at its first checkpoint, before writing anything of it (a run stopped before its first checkpoint)."""
    from learngene_core.trainer import Trainer

    original = Trainer._save_last
    saved = 0

    def save_then_interrupt(self: Trainer) -> None:
        nonlocal saved
        if count == 0:
            raise KeyboardInterrupt
        original(self)
        saved += 1
        if saved == count:
            raise KeyboardInterrupt

    Trainer._save_last = save_then_interrupt  # type: ignore[method-assign]
    try:
        yield
    finally:
        Trainer._save_last = original  # type: ignore[method-assign]


@contextlib.contextmanager
def interrupt_after_first_step() -> Iterator[None]:
    """Inside the block, a KeyboardInterrupt (a Ctrl-C) right after the first optimizer step of any optimizer: a run
    stopped before its first checkpoint, in process."""
    with interrupt_after_steps(1):
        yield


@contextlib.contextmanager
def interrupt_after_steps(count: int) -> Iterator[None]:
    """Inside the block, a KeyboardInterrupt (a Ctrl-C) right after the `count`-th optimizer step of any optimizer
    (of torch's: a wrapper that steps a base optimizer counts the base's steps), to stop a run mid-way in process."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = 0

    def interrupt(*_: Any) -> None:
        nonlocal steps
        steps += 1
        if steps == count:
            raise KeyboardInterrupt

    handle = register_optimizer_step_post_hook(interrupt)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def recorded_steps() -> Iterator[list[int]]:
    """Inside the block, the optimizer steps every Trainer.fit runs are appended to the yielded list (a resumed
    run must start after its checkpoint, not redo the steps before it)."""
    from learngene_core.trainer import Trainer

    original = Trainer.fit
    steps: list[int] = []

    class _Recorder:
        def on_step_end(self, trainer: Trainer) -> None:
            steps.append(trainer.state.step)

    def fit(self: Trainer, *args: Any, **kwargs: Any) -> dict[str, float]:
        self.callbacks.append(_Recorder())
        return original(self, *args, **kwargs)

    Trainer.fit = fit  # type: ignore[method-assign]
    try:
        yield steps
    finally:
        Trainer.fit = original  # type: ignore[method-assign]


def assert_resume_is_exact(
    main: Callable[[list[str]], int],
    argv: list[str],
    root: Path,
    resumed_steps: list[int] | None = None,
    stop: contextlib.AbstractContextManager | None = None,
) -> None:
    """A console script's `--resume` continues exactly: `main(argv + [--output-dir, root/reference])` runs
    through; the same into root/run is stopped by `stop` (a context that raises KeyboardInterrupt; default: right
    after the first checkpoint) with exit 130; rerun with --resume it must make exactly `resumed_steps` (default:
    the steps of the reference run that the stopped one had not made, for commands that train several times and
    stops right after a checkpoint) and write every safetensors file of the reference, equal."""
    reference, run = root / "reference", root / "run"
    with recorded_steps() as all_steps:
        assert main([*argv, "--output-dir", str(reference)]) == 0
    with stop or interrupt_after_checkpoint(1), recorded_steps() as stopped_steps:
        assert main([*argv, "--output-dir", str(run)]) == 130
    if resumed_steps is None:
        assert all_steps[: len(stopped_steps)] == stopped_steps
        resumed_steps = all_steps[len(stopped_steps) :]
    with recorded_steps() as steps:
        assert main([*argv, "--output-dir", str(run), "--resume"]) == 0
    assert steps == resumed_steps  # continues after the checkpoint, redoes nothing
    assert_same_safetensors(reference, run)


def assert_same_safetensors(reference: Path, other: Path) -> None:
    """Both directories hold the same safetensors files (at least one), tensor for tensor, bit for bit."""
    from safetensors.torch import load_file

    files = sorted(p.relative_to(reference) for p in reference.rglob("*.safetensors"))
    assert files and files == sorted(p.relative_to(other) for p in other.rglob("*.safetensors"))
    for name in files:
        expected, found = load_file(reference / name), load_file(other / name)
        assert expected.keys() == found.keys(), name
        assert all(torch.equal(expected[k], found[k]) for k in expected), name


@contextlib.contextmanager
def model_data_probes(enabled: bool = True) -> Iterator[list[int]]:
    """Inside the block, the Trainer's model/data check before step 1 is counted (the yielded list gets one
    entry per check) or, with `enabled=False`, skipped."""
    from learngene_core.trainer import Trainer

    original = Trainer._check_model_fits_data
    calls: list[int] = []

    def check(self: Trainer) -> None:
        calls.append(self.state.step)
        if enabled:
            original(self)

    Trainer._check_model_fits_data = check  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Trainer._check_model_fits_data = original  # type: ignore[method-assign]


def assert_probe_changes_nothing(main: Callable[[list[str]], int], argv: list[str], root: Path) -> None:
    """The Trainer's model/data check before step 1 leaves a console script's run as it was: `main(argv +
    [--output-dir, root/probed])` (which must run the check) and the same into root/unprobed without the check
    write the same safetensors files, bit for bit."""
    with model_data_probes() as calls:
        assert main([*argv, "--output-dir", str(root / "probed")]) == 0
    assert calls, "the run never checked its model against its data"
    with model_data_probes(enabled=False):
        assert main([*argv, "--output-dir", str(root / "unprobed")]) == 0
    assert_same_safetensors(root / "probed", root / "unprobed")


# ------------------------------------------------------------------------------- console scripts, bad inputs

_DRIVER = """
import contextlib, importlib, io, json, signal, sys, traceback
spec = json.load(sys.stdin)

def press_ctrl_c_once(optimizer, args, kwargs):
    hooks.pop().remove()
    signal.raise_signal(signal.SIGINT)

if spec["ctrl_c"]:  # Ctrl-C as in a terminal, even when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
results = []
for module, argv in spec["cases"]:
    main = getattr(importlib.import_module(module), "main")
    hooks = []
    if spec["ctrl_c"]:
        from torch.optim.optimizer import register_optimizer_step_post_hook
        hooks.append(register_optimizer_step_post_hook(press_ctrl_c_once))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            traceback.print_exc()
            code = "traceback"
    for hook in hooks:
        hook.remove()
    results.append({"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def _drive(
    cases: list[tuple[str, list[str]]], cwd: str | None, timeout: float, ctrl_c: bool = False
) -> list[dict[str, Any]]:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps({"cases": cases, "ctrl_c": ctrl_c}),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the case driver failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_console_cases(
    module: str, cases: list[list[str]], cwd: str | None = None, timeout: float = 600
) -> list[dict[str, Any]]:
    """Run each argv through `module.main` in one fresh interpreter (torch is imported once, not per case).

    Returns one `{"argv", "code", "stdout", "stderr"}` per case; `code` is "traceback" when an exception escaped
    `main`. The interpreter runs single-threaded (OMP/MKL threads 1), as the test suites do.
    """
    return _drive([(module, argv) for argv in cases], cwd, timeout)


def interrupt_console_cases(
    cases: list[tuple[str, list[str]]], cwd: str | None = None, timeout: float = 600
) -> list[dict[str, Any]]:
    """Run each `(module, argv)` through `module.main` in one fresh interpreter that receives a real SIGINT (a
    Ctrl-C) right after the first optimizer step of the case (any optimizer); results as `run_console_cases`."""
    return _drive(cases, cwd, timeout, ctrl_c=True)


def run_named_console_cases(
    module: str, cases: dict[str, tuple[list[str], str]], cwd: str | None = None
) -> dict[str, tuple[dict[str, Any], str]]:
    """`run_console_cases` over a table `{case name: (argv, culprit)}`; returns `{case name: (result, culprit)}`."""
    found = run_console_cases(module, [argv for argv, _ in cases.values()], cwd=cwd)
    return {name: (result, culprit) for (name, (_, culprit)), result in zip(cases.items(), found)}


def copy_with(source: Path, target: Path, files: dict[str, bytes]) -> Path:
    """A copy of directory `source` at `target` with `files` (relative path -> bytes) overwritten: a run or
    learngene directory with a corrupt or hostile side file, for bad-input tables."""
    import shutil

    shutil.copytree(source, target)
    for rel, data in files.items():
        (target / rel).write_bytes(data)
    return target


NEVER_RUN = "this must never run"


class HostilePickle:
    """Unpickling it calls `print(NEVER_RUN)`: the hostile file a safe loader must refuse (`one_error_line`
    checks that the text never appears)."""

    def __reduce__(self):
        return (print, (NEVER_RUN,))


def assert_one_error_line(code: int | str, stderr: str, prog: str, *culprits: str) -> str:
    """A bad input's contract: exit code 2 and one `prog: error: ...` line on stderr (no traceback, nothing
    else) that names every one of `culprits`; returns the line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}\n{stderr}"
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    for culprit in culprits:
        assert culprit in lines[0], f"{culprit!r} not in {lines[0]}"
    return lines[0]


def one_error_line(result: dict[str, Any], prog: str, *culprits: str) -> str:
    """`assert_one_error_line` on one result of `run_console_cases`, which also never ran a `HostilePickle`."""
    try:
        assert NEVER_RUN not in result["stdout"] + result["stderr"], "a hostile pickle ran"
        return assert_one_error_line(result["code"], result["stderr"], prog, *culprits)
    except AssertionError as exc:
        raise AssertionError(f"{result['argv']}: {exc}") from None
