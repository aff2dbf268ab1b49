"""NiNo checkpoints: the official {'state_dict', 'model_args'} format, strict loading, one-line errors."""

import pytest
import torch

from learngene_core.errors import CheckpointError
from nino.checkpoint import load_nino, save_nino
from nino.model import NiNoNet, WNNPlus


def test_save_then_load_round_trips_with_official_style_model_args(tmp_path):
    torch.manual_seed(0)
    model = NiNoNet(wte_pos_enc=False)
    path = save_nino(model, tmp_path / "nino_no_posw.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "model_args", "snapshot_every"}
    assert raw["model_args"] == {"wte_pos_enc": False}  # only non-defaults, like the official files
    assert raw["snapshot_every"] == 200  # a fresh network's horizon unit is the paper's spacing
    loaded = load_nino(path)
    assert isinstance(loaded, NiNoNet) and not loaded.training
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_wnn_plus_checkpoint_is_rebuilt_from_model_args(tmp_path):
    path = save_nino(WNNPlus(hid=32), tmp_path / "nino_mlp_h32.pt")
    assert torch.load(path, weights_only=True)["model_args"] == {"gnn": False, "hid": 32}
    loaded = load_nino(path)
    assert isinstance(loaded, WNNPlus) and loaded.hid == 32


def test_pyg_degree_scaler_buffers_are_accepted(tmp_path):
    """Official files written by a PNA-based conv may carry its (unused) degree buffers."""
    state = NiNoNet(wte_pos_enc=False, hid=8).state_dict()
    for i in range(3):
        state[f"gnn.convs.{i}.aggr_module.avg_deg_lin"] = torch.ones(1)
        state[f"gnn.convs.{i}.aggr_module.avg_deg_log"] = torch.ones(1)
    torch.save({"state_dict": state, "model_args": {"wte_pos_enc": False, "hid": 8}}, tmp_path / "c.pt")
    assert load_nino(tmp_path / "c.pt").hid == 8


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as info:
        load_nino(tmp_path / "absent.pt")
    assert "\n" not in str(info.value)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = NiNoNet(wte_pos_enc=False, hid=8).state_dict()
    args = {"wte_pos_enc": False, "hid": 8}
    cases = {
        "gnn.convs.1.lin.bias": {k: v for k, v in state.items() if k != "gnn.convs.1.lin.bias"},
        "extra.weight": {**state, "extra.weight": torch.zeros(1)},
        "edge_out.fc.2.weight": {**state, "edge_out.fc.2.weight": torch.zeros(5, 8)},
    }
    for key, bad in cases.items():
        torch.save({"state_dict": bad, "model_args": args}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as info:
            load_nino(tmp_path / "bad.pt")
        assert "\n" not in str(info.value)
    # the default model expects the token table: a no-posw state dict without its model_args fails
    torch.save({"state_dict": NiNoNet(wte_pos_enc=False).state_dict()}, tmp_path / "noargs.pt")
    with pytest.raises(CheckpointError, match="wte_pos_enc_layer"):
        load_nino(tmp_path / "noargs.pt")


def test_unknown_model_args_and_foreign_files_are_rejected(tmp_path):
    torch.save({"state_dict": {}, "model_args": {"towers": 4}}, tmp_path / "towers.pt")
    with pytest.raises(CheckpointError, match="towers"):
        load_nino(tmp_path / "towers.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a NiNo checkpoint"):
        load_nino(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_nino(tmp_path / "junk.pt")


class Payload:
    ran = False

    def __reduce__(self):
        return (Payload._run, ())

    @staticmethod
    def _run():
        Payload.ran = True


def test_pickled_code_is_never_executed(tmp_path):
    torch.save({"state_dict": {}, "model_args": {}, "hook": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_nino(tmp_path / "evil.pt")
    assert not Payload.ran


def test_save_refuses_unknown_model_args_and_keeps_the_old_file(tmp_path):
    path = save_nino(WNNPlus(hid=4), tmp_path / "w.pt")
    before = path.read_bytes()
    with pytest.raises(Exception, match="bogus"):
        save_nino(WNNPlus(hid=4), path, bogus=1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_loading_leaves_the_global_rng_untouched(tmp_path):
    """A training loop's dropout masks must not depend on whether a NiNo checkpoint was loaded."""
    path = save_nino(WNNPlus(hid=4), tmp_path / "w.pt")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_nino(path)
    load_nino(None)
    assert torch.equal(torch.rand(3), expected)


def test_a_saved_checkpoint_follows_the_umask(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = save_nino(WNNPlus(hid=4), tmp_path / "w.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone would make it 0600
