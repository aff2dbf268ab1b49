"""timm ViT neural graphs (patch conv slots, class token, position nodes) and unsupported architectures."""

import warnings

import pytest
import timm
import torch
from transformers import BertConfig, BertModel

from learngene_core.errors import ModelError
from nino.graph import build_graph, flatten_params


def vit(depth=2, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=8,
        patch_size=4,
        in_chans=3,
        embed_dim=12,
        depth=depth,
        num_heads=3,
        num_classes=5,
        **kwargs,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def expected_counts(C=3, D=12, T=5, H=3, L=2, classes=5):
    """Hand count: inputs, stream, patch-bias + cls aux, position nodes, GPT-2-like blocks, norm aux, head."""
    nodes = C + D + 2 + T + L * (8 * D + H + 10) + 2 + classes + 1
    edges = C * D + 2 * D + T * D + L * (12 * D * D + 17 * D) + 2 * D + classes * D + classes + nodes
    return nodes, edges


def test_counts_and_feature_size():
    g = build_graph(vit())
    assert (g.num_nodes, g.num_edges) == expected_counts() == (248, 4321)
    assert g.arch == "vit" and g.max_feat_size == 16
    counts = g.type_counts()
    assert counts["conv"] == 36 and counts["token_embedding"] == 12 and counts["position_embedding"] == 60
    assert counts["head"] == 2 * 2 * 12 and counts["residual"] == 2 * 2 * 12


def test_round_trip_and_patch_slots():
    model = vit()
    g = build_graph(model)
    flat = flatten_params(model)
    states = torch.stack([flat, 2 * flat], dim=1)
    feats = g.edge_features(states).view(g.num_edges, 16, 2)
    assert torch.equal(g.params_from_edges(feats[..., 1]), 2 * flat)
    w = model.patch_embed.proj.weight.detach()
    conv = torch.nonzero(g.edge_type == 3, as_tuple=True)[0]
    src, dst = g.edge_index[:, conv]
    first_in, first_out = int(src.min()), int(dst.min())
    e = conv[(src == first_in + 1) & (dst == first_out + 2)]
    assert torch.equal(feats[e[0], :, 0], w[2, 1].flatten())


def test_fused_qkv_uses_out_in_layout():
    model = vit(depth=1)
    g = build_graph(model)
    values = g.edge_features(flatten_params(model))[:, 0]
    w = model.blocks[0].attn.qkv.weight.detach()
    for etype, part in ((7, 0), (9, 2)):
        got = values[g.edge_type == etype].sort().values
        assert torch.equal(got, w[part * 12 : (part + 1) * 12].flatten().sort().values)
    assert torch.equal(values[g.edge_type == 8].sort().values, w[12:24].flatten().sort().values)


def test_unsupported_timm_option_names_the_parameter():
    with pytest.raises(ModelError, match="reg_token"):
        build_graph(vit(depth=1, reg_tokens=1))


def test_unsupported_hf_architecture_is_named():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = BertModel(
            BertConfig(
                vocab_size=10,
                hidden_size=8,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=8,
                max_position_embeddings=4,
            )
        )
    with pytest.raises(ModelError, match="BertModel"):
        build_graph(bert)
