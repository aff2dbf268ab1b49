"""NiNoNet / WNN+ sizes and state-dict names match the official checkpoints (spec A.6, A.13)."""

import pytest
import torch

from nino.model import NiNoNet, WNNPlus


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_shapes(hid: int = 128, wte: bool = True) -> dict[str, tuple[int, ...]]:
    """Key -> shape, derived from the A.6 table (ctx 5, 9 slots, 40 horizons, 15 types, LPE 8, 3 layers)."""
    shapes = {
        "layer_embed.weight": (15, hid),
        "node_proj.fc.0.weight": (hid, 8),
        "node_proj.fc.0.bias": (hid,),
        "edge_proj.fc.0.weight": (hid, 45),
        "edge_proj.fc.0.bias": (hid,),
    }
    for i in range(3):
        conv = f"gnn.convs.{i}."
        shapes |= {
            conv + "edge_encoder.weight": (2 * hid, hid),  # FiLM scale and shift
            conv + "edge_encoder.bias": (2 * hid,),
            conv + "pre_nns.0.0.weight": (hid, 2 * hid),
            conv + "pre_nns.0.0.bias": (hid,),
            conv + "post_nns.0.0.weight": (hid, 2 * hid),
            conv + "post_nns.0.0.bias": (hid,),
            conv + "lin.weight": (hid, hid),
            conv + "lin.bias": (hid,),
        }
    for i in range(2):
        for name in ("lin_e", "lin_s", "lin_t", "lin1"):
            shapes |= {
                f"gnn.edge_update.{i}.{name}.weight": (hid, hid),
                f"gnn.edge_update.{i}.{name}.bias": (hid,),
            }
    shapes |= {
        "edge_out.fc.0.weight": (hid, hid),
        "edge_out.fc.0.bias": (hid,),
        "edge_out.fc.2.weight": (9 * 40, hid),
        "edge_out.fc.2.bias": (9 * 40,),
    }
    if wte:
        shapes["wte_pos_enc_layer.weight"] = (50_258, hid)
    return shapes


def test_no_posw_model_has_exactly_549992_parameters():
    assert count(NiNoNet(wte_pos_enc=False)) == 549_992


def test_default_model_adds_the_token_embedding_table():
    assert count(NiNoNet()) == 6_983_016 == 549_992 + 50_258 * 128


def test_hidden_32_model_matches_the_derived_count():
    assert count(NiNoNet(hid=32)) == 1_653_864


@pytest.mark.parametrize("wte", [True, False])
def test_state_dict_names_and_shapes_are_the_official_ones(wte):
    got = {k: tuple(v.shape) for k, v in NiNoNet(wte_pos_enc=wte).state_dict().items()}
    assert got == expected_shapes(wte=wte)


@pytest.mark.parametrize(("hid", "params"), [(128, 57_384), (32, 5_160)])
def test_wnn_plus_parameter_counts(hid, params):
    model = WNNPlus(hid=hid)
    assert count(model) == params
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["layer_embed.weight"] == (15, hid)
    assert shapes["edge_proj.fc.0.weight"] == (hid, 5)  # the 5 states of one scalar
    assert shapes["edge_mlp.fc.6.weight"] == (40, hid)  # 4-layer MLP to the 40 DMS horizons


def test_init_is_normal_002_with_zero_biases():
    model = NiNoNet(wte_pos_enc=False)
    w = model.gnn.convs[0].edge_encoder.weight
    assert abs(w.std().item() - 0.02) < 2e-3
    assert all(torch.all(p == 0) for n, p in model.named_parameters() if n.endswith("bias"))
