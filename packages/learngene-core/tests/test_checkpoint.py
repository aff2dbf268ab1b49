"""Checkpoints: exact safetensors round trips, tied weights, atomic writes and safe, strict loading."""

import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import learngene_core.checkpoint as ckpt
from learngene_core.checkpoint import (
    METADATA_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    atomic_write_text,
    load_model_weights,
    load_training_state,
    read_metadata,
    read_state_dict,
    recover_dir,
    save_model_dir,
    save_training_checkpoint,
    save_weights,
)
from learngene_core.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("single_thread")


def snapshot(directory: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `directory`."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


class SharedLinear(nn.Module):
    """Two attributes holding the same Parameter (like tied input/output embeddings)."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(4, 4, bias=False)
        self.decode = nn.Linear(4, 4)
        self.decode.weight = self.encode.weight


# ---------------------------------------------------------------------------------------- round trips


def test_vit_round_trip_is_bitwise_exact(tmp_path, tiny_vit):
    model = tiny_vit(seed=0)
    out = save_model_dir(model, tmp_path / "vit", metadata={"step": 3, "name": "tiny"})
    assert (out / WEIGHTS_NAME).is_file()
    assert read_metadata(out) == {"step": 3, "name": "tiny"}

    fresh = tiny_vit(seed=1)
    assert not torch.equal(fresh.patch_embed.proj.weight, model.patch_embed.proj.weight)
    load_model_weights(fresh, out)  # a directory resolves to its model.safetensors
    assert_same_state(model, fresh)
    x = torch.randn(2, 3, 16, 16)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


def test_torch_state_dict_file_loads_too(tmp_path, tiny_mlp):
    model = tiny_mlp(seed=0)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")
    fresh = tiny_mlp(seed=1)
    load_model_weights(fresh, tmp_path / "w.pt")
    assert_same_state(model, fresh)


def test_shared_parameter_module_saves_once_and_loads_tied(tmp_path):
    torch.manual_seed(0)
    model = SharedLinear()
    save_model_dir(model, tmp_path / "m")
    stored = load_file(str(tmp_path / "m" / WEIGHTS_NAME))
    assert set(stored) == {"encode.weight", "decode.bias"}  # the alias is stored once

    torch.manual_seed(1)
    fresh = SharedLinear()
    load_model_weights(fresh, tmp_path / "m")
    assert_same_state(model, fresh)
    assert fresh.decode.weight is fresh.encode.weight


def test_tied_llama_embeddings_save_and_load(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    save_model_dir(model, tmp_path / "lm")

    torch.manual_seed(1)
    fresh = LlamaForCausalLM(config)
    load_model_weights(fresh, tmp_path / "lm")
    assert_same_state(model, fresh)
    assert fresh.lm_head.weight.data_ptr() == fresh.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 5, 7, 2]])
    assert torch.equal(model(input_ids=ids).logits, fresh(input_ids=ids).logits)


def test_training_checkpoint_round_trips_state_and_metadata(tmp_path, tiny_mlp):
    model = tiny_mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 4, "rng": torch.get_rng_state()}
    save_training_checkpoint(tmp_path / "last", model, state, {"total_steps": 10})
    loaded = load_training_state(tmp_path / "last")
    assert loaded["step"] == 4 and torch.equal(loaded["rng"], state["rng"])
    fresh_opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh_opt.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert read_metadata(tmp_path / "last") == {"total_steps": 10}


# ---------------------------------------------------------------------------------------- atomicity


@pytest.fixture
def failing_save_file(monkeypatch):
    """Make the safetensors writer used by learngene_core.checkpoint write half a file, then fail."""

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 17)
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)


@pytest.mark.parametrize("kind", ["model_dir", "training_checkpoint"])
def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, tiny_mlp, kind, request):
    target = tmp_path / "checkpoints" / "last"

    def save(model):
        if kind == "model_dir":
            save_model_dir(model, target, {"step": 1})
        else:
            save_training_checkpoint(target, model, {"step": 1}, {"step": 1})

    save(tiny_mlp(seed=0))
    before = snapshot(target)
    request.getfixturevalue("failing_save_file")
    with pytest.raises(OSError, match="disk full"):
        save(tiny_mlp(seed=1))
    assert snapshot(target) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["last"]  # no temp or .old dirs left


def test_save_weights_failure_leaves_no_partial_file(tmp_path, tiny_mlp, failing_save_file):
    with pytest.raises(OSError):
        save_weights(tiny_mlp(), tmp_path / WEIGHTS_NAME)
    assert list(tmp_path.iterdir()) == []


def test_overwriting_a_checkpoint_replaces_it_and_cleans_up(tmp_path, tiny_mlp):
    target = tmp_path / "best"
    save_model_dir(tiny_mlp(seed=0), target, {"step": 1})
    new = tiny_mlp(seed=1)
    save_model_dir(new, target, {"step": 2})
    assert read_metadata(target) == {"step": 2}
    fresh = tiny_mlp(seed=2)
    load_model_weights(fresh, target)
    assert_same_state(new, fresh)
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    assert sorted(p.name for p in target.iterdir()) == sorted([WEIGHTS_NAME, METADATA_NAME])


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["model.safetensors", "weights.pt"])
def test_loading_a_missing_file_is_a_checkpoint_error(tmp_path, tiny_mlp, name):
    with pytest.raises(CheckpointError, match="not found"):
        load_model_weights(tiny_mlp(), tmp_path / name)


@pytest.mark.parametrize("name", ["model.safetensors", "weights.pt"])
def test_loading_a_corrupt_file_is_a_checkpoint_error(tmp_path, tiny_mlp, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a weights file at all" * 3)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(tiny_mlp(), path)
    assert str(path) in str(info.value)


def test_truncated_safetensors_is_a_checkpoint_error(tmp_path, tiny_mlp):
    save_model_dir(tiny_mlp(), tmp_path / "m")
    path = tmp_path / "m" / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model_weights(tiny_mlp(), path)


def test_missing_metadata_or_training_state_is_a_checkpoint_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=METADATA_NAME):
        read_metadata(tmp_path / "empty")
    with pytest.raises(CheckpointError, match=STATE_NAME):
        load_training_state(tmp_path / "empty")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"input_shape": "x"}, "'input_shape' is 'x', not a list of positive integers"),
        ({"input_shape": 28}, "'input_shape' is 28, not a list of positive integers"),
        ({"input_shape": [3, 0, 32]}, "'input_shape' is [3, 0, 32], not a list"),
        ({"input_shape": [3, 32.0]}, "'input_shape' is [3, 32.0], not a list"),
        ({"input_shape": [1, 8, 8], "num_classes": True}, "'num_classes' is True, not a positive integer"),
        ({"input_shape": [1, 8, 8], "num_classes": -10}, "'num_classes' is -10, not a positive integer"),
    ],
)
def test_metadata_with_a_shape_no_model_can_have_is_refused_naming_file_and_field(tmp_path, meta, message):
    (tmp_path / METADATA_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"{METADATA_NAME}: {re.escape(message)}"):
        read_metadata(tmp_path)


def test_metadata_shapes_may_be_absent_or_positive(tmp_path):
    for meta in (
        {"step": 1},
        {"input_shape": [32], "num_classes": None},
        {"input_shape": [3, 8, 8], "num_classes": 10},
    ):
        (tmp_path / METADATA_NAME).write_text(json.dumps(meta))
        assert read_metadata(tmp_path) == meta


def _write_marker(path):
    Path(path).write_text("code ran")
    return {}


class Payload:
    """Unpickling this runs `_write_marker`: what a malicious training_state.pt could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (self.marker,))


def test_training_state_loading_refuses_arbitrary_pickled_objects(tmp_path):
    marker = tmp_path / "marker.txt"
    last = tmp_path / "last"
    last.mkdir()
    torch.save({"optimizer": {}, "evil": Payload(str(marker))}, last / STATE_NAME)
    with pytest.raises(CheckpointError, match=f"refused .*{STATE_NAME}: it asks to import .*_write_marker"):
        load_training_state(last)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(last / STATE_NAME, weights_only=False)
    assert marker.read_text() == "code ran"


def test_torch_weights_loading_refuses_arbitrary_pickled_objects(tmp_path, tiny_mlp):
    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": Payload(str(marker))}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="refused .*w.pt: it asks to import"):
        load_model_weights(tiny_mlp(), tmp_path / "w.pt")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"\x80\x02garbage" * 10, b"plain text, not a checkpoint"])
def test_a_corrupt_torch_file_is_not_advised_to_be_unpickled(tmp_path, tiny_mlp, content):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(tiny_mlp(), path)
    assert str(info.value) == f"cannot read {path}: not a torch checkpoint, or a corrupt or truncated one"


def test_files_written_through_temp_files_follow_the_umask(tmp_path, tiny_mlp):
    previous = os.umask(0o027)
    try:
        save_model_dir(tiny_mlp(), tmp_path / "m")
        atomic_write_text(tmp_path / "notes.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "m" / WEIGHTS_NAME).stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == 0o640


def test_corrupt_metadata_is_a_checkpoint_error_naming_the_file(tmp_path, tiny_mlp):
    save_model_dir(tiny_mlp(), tmp_path / "m", {"step": 3})
    meta = tmp_path / "m" / METADATA_NAME
    meta.write_text('{"step": 3')  # truncated
    with pytest.raises(CheckpointError, match=f"{meta} is not valid JSON"):
        read_metadata(tmp_path / "m")
    meta.write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="not UTF-8"):
        read_metadata(tmp_path / "m")


def test_recover_dir_restores_a_moved_aside_checkpoint_and_drops_temp_dirs(tmp_path, tiny_mlp):
    save_model_dir(tiny_mlp(), tmp_path / "last")
    (tmp_path / "last").rename(tmp_path / ".last.old")
    (tmp_path / ".last.x1.tmp").mkdir()
    (tmp_path / ".last.x2.tmp").write_text("half")
    recover_dir(tmp_path / "last")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    load_model_weights(tiny_mlp(), tmp_path / "last")


def test_extra_key_is_rejected_when_strict_and_ignored_otherwise(tmp_path, tiny_mlp):
    model = tiny_mlp(seed=0)
    state = {**model.state_dict(), "surplus.weight": torch.zeros(2)}
    save_weights(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="surplus.weight"):
        load_model_weights(tiny_mlp(seed=1), tmp_path / "w.safetensors")
    fresh = tiny_mlp(seed=1)
    load_model_weights(fresh, tmp_path / "w.safetensors", strict=False)
    assert_same_state(model, fresh)


def test_missing_key_is_rejected_when_strict(tmp_path, tiny_mlp):
    state = {k: v for k, v in tiny_mlp().state_dict().items() if k != "head.bias"}
    save_weights(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="head.bias"):
        load_model_weights(tiny_mlp(), tmp_path / "w.safetensors")


def test_wrong_shape_is_a_checkpoint_error(tmp_path, tiny_mlp):
    save_model_dir(tiny_mlp(hidden=16), tmp_path / "m")
    with pytest.raises(CheckpointError) as info:
        load_model_weights(tiny_mlp(hidden=12), tmp_path / "m")
    assert "body.0.weight" in str(info.value)


def test_metadata_is_json(tmp_path, tiny_mlp):
    save_model_dir(tiny_mlp(), tmp_path / "m", {"path": Path("/x"), "metrics": {"accuracy": 0.5}})
    assert json.loads((tmp_path / "m" / METADATA_NAME).read_text()) == {
        "path": "/x",
        "metrics": {"accuracy": 0.5},
    }


def test_read_state_dict_refuses_code_names_corrupt_files_and_unwraps_training_checkpoints(tmp_path):
    marker = tmp_path / "marker.txt"
    torch.save({"model": {"w": torch.ones(2)}, "evil": Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"refused .*evil\.pth: it asks to import .*_write_marker"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a torch checkpoint, or a corrupt") as caught:
        read_state_dict(tmp_path / "junk.pth")
    assert "weights_only" not in str(caught.value)  # no advice to unpickle it unsafely
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "train.pth")
    assert list(read_state_dict(tmp_path / "train.pth")) == ["w"]
    torch.save({"w": torch.ones(2), "note": "text"}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_state_dict(tmp_path / "mixed.pth")


def test_a_failed_weights_write_is_a_checkpoint_error_naming_the_file(tmp_path, tiny_mlp, monkeypatch):
    from safetensors import SafetensorError

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    path = tmp_path / "m" / WEIGHTS_NAME
    with pytest.raises(CheckpointError, match=f"cannot write {path}: I/O error: No space left on device"):
        save_weights(tiny_mlp(), path)
    assert list((tmp_path / "m").iterdir()) == []
