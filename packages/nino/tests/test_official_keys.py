"""The published checkpoints' state-dict layouts (read from the files' key/shape listing): both networks must
load them with strict=True. No file needed; the parity tests with the real files are in test_official_parity.
"""

import torch

from nino.checkpoint import load_nino
from nino.model import NiNoNet, WNNPlus, build_nino


def _conv(i: int) -> dict[str, tuple[int, ...]]:
    p = f"gnn.convs.{i}."
    return {
        p + "edge_encoder.weight": (256, 128), p + "edge_encoder.bias": (256,),
        p + "pre_nns.0.0.weight": (128, 256), p + "pre_nns.0.0.bias": (128,),
        p + "post_nns.0.0.weight": (128, 256), p + "post_nns.0.0.bias": (128,),
        p + "lin.weight": (128, 128), p + "lin.bias": (128,),
    }  # fmt: skip


def _update(i: int) -> dict[str, tuple[int, ...]]:
    p = f"gnn.edge_update.{i}."
    return {p + f"{n}.{w}": (128, 128) if w == "weight" else (128,)
            for n in ("lin_e", "lin_s", "lin_t", "lin1") for w in ("weight", "bias")}  # fmt: skip


# nino_no_posw.pt: model_args {'wte_pos_enc': False}, 549,992 parameters
NO_POSW = {
    "layer_embed.weight": (15, 128),
    "node_proj.fc.0.weight": (128, 8), "node_proj.fc.0.bias": (128,),
    "edge_proj.fc.0.weight": (128, 45), "edge_proj.fc.0.bias": (128,),
    "edge_out.fc.0.weight": (128, 128), "edge_out.fc.0.bias": (128,),
    "edge_out.fc.2.weight": (360, 128), "edge_out.fc.2.bias": (360,),
    **_conv(0), **_conv(1), **_conv(2), **_update(0), **_update(1),
}  # fmt: skip

# nino_mlp.pt (WNN+): model_args {'gnn': False}, 57,384 parameters
MLP = {
    "layer_embed.weight": (15, 128),
    "edge_proj.fc.0.weight": (128, 5), "edge_proj.fc.0.bias": (128,),
    "edge_mlp.fc.0.weight": (128, 128), "edge_mlp.fc.0.bias": (128,),
    "edge_mlp.fc.2.weight": (128, 128), "edge_mlp.fc.2.bias": (128,),
    "edge_mlp.fc.4.weight": (128, 128), "edge_mlp.fc.4.bias": (128,),
    "edge_mlp.fc.6.weight": (40, 128), "edge_mlp.fc.6.bias": (40,),
}  # fmt: skip


def _state(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=g) for k, shape in layout.items()}


def test_published_layouts_have_the_published_parameter_counts():
    assert sum(torch.Size(s).numel() for s in NO_POSW.values()) == 549_992
    assert sum(torch.Size(s).numel() for s in MLP.values()) == 57_384


def test_both_published_state_dicts_load_strictly(tmp_path):
    for layout, args, cls in ((NO_POSW, {"wte_pos_enc": False}, NiNoNet), (MLP, {"gnn": False}, WNNPlus)):
        state = _state(layout)
        net = build_nino(**args)
        assert isinstance(net, cls)
        net.load_state_dict(state, strict=True)
        path = tmp_path / f"{cls.__name__}.pt"
        torch.save({"state_dict": state, "model_args": args}, path)
        loaded = load_nino(path)
        assert {k: tuple(v.shape) for k, v in loaded.state_dict().items()} == layout
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
