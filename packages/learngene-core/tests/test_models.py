"""build_model over timm vision models and Hugging Face causal LMs, all offline."""

import pytest
import torch

from learngene_core.checkpoint import save_model_dir
from learngene_core.config import ModelConfig
from learngene_core.errors import CheckpointError, ModelError
from learngene_core.models import build_model, count_parameters, model_output_logits

pytestmark = pytest.mark.usefixtures("single_thread")

VIT_KWARGS = {"patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2}
LLAMA_KWARGS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
}


def vit_config(**overrides) -> ModelConfig:
    return ModelConfig(
        **{"source": "timm", "name": "vit_tiny_patch16_224", "kwargs": dict(VIT_KWARGS), **overrides}
    )


def llama_config(**overrides) -> ModelConfig:
    return ModelConfig(**{"source": "hf", "name": "llama", "kwargs": dict(LLAMA_KWARGS), **overrides})


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_timm_vit_is_sized_for_the_data():
    model = build_model(vit_config(), num_classes=10, input_shape=(1, 16, 16))
    logits = model(torch.randn(5, 1, 16, 16))
    assert logits.shape == (5, 10)
    assert model.patch_embed.proj.in_channels == 1
    assert model.pos_embed.shape[1] == (16 // 4) ** 2 + 1  # patches + class token


def test_timm_cnn_takes_channels_but_no_img_size():
    model = build_model(ModelConfig(name="resnet10t"), num_classes=4, input_shape=(3, 16, 16))
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_hf_llama_from_model_type_gives_token_logits():
    model = build_model(llama_config(), vocab_size=50)
    assert model.config.vocab_size == 50 and model.config.num_hidden_layers == 2
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    logits = model_output_logits(model(input_ids=ids))
    assert logits.shape == (3, 7, 50)


def test_hf_vocab_size_in_kwargs_wins_over_the_argument():
    model = build_model(llama_config(kwargs={**LLAMA_KWARGS, "vocab_size": 17}), vocab_size=50)
    assert model.config.vocab_size == 17


def test_unknown_timm_name_suggests_a_close_one():
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(name="vit_tiny_patch16_22"), num_classes=3)
    msg = str(info.value)
    assert "unknown timm model 'vit_tiny_patch16_22'" in msg and "did you mean 'vit_tiny_patch16_2" in msg


def test_bad_timm_kwargs_are_a_model_error():
    with pytest.raises(ModelError, match="cannot build timm model"):
        build_model(vit_config(kwargs={**VIT_KWARGS, "embed_dim": 33, "num_heads": 2}), num_classes=3)


def test_unknown_hf_model_type_is_a_model_error():
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(source="hf", name="lamma"), vocab_size=10)
    msg = str(info.value)
    assert "unknown Hugging Face model type 'lamma'" in msg and "llama" in msg


def test_checkpoint_in_model_config_loads_the_weights(tmp_path):
    torch.manual_seed(0)
    trained = build_model(vit_config(), num_classes=10, input_shape=(1, 16, 16))
    save_model_dir(trained, tmp_path / "w")
    torch.manual_seed(1)
    for path in (tmp_path / "w" / "model.safetensors", tmp_path / "w"):
        loaded = build_model(vit_config(checkpoint=str(path)), num_classes=10, input_shape=(1, 16, 16))
        assert_same_weights(trained, loaded)


def test_checkpoint_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    save_model_dir(build_model(vit_config(), num_classes=10, input_shape=(1, 16, 16)), tmp_path / "w")
    with pytest.raises(CheckpointError):
        build_model(vit_config(checkpoint=str(tmp_path / "w")), num_classes=4, input_shape=(1, 16, 16))


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_model(vit_config(checkpoint=str(tmp_path / "nope.safetensors")), num_classes=3)


def test_local_hf_directory_loads_by_name(tmp_path):
    torch.manual_seed(0)
    original = build_model(llama_config(), vocab_size=40)
    original.save_pretrained(tmp_path / "tiny-llama")
    loaded = build_model(ModelConfig(source="hf", name=str(tmp_path / "tiny-llama")))
    assert type(loaded) is type(original) and loaded.config.vocab_size == 40
    assert_same_weights(original, loaded)
    ids = torch.tensor([[1, 2, 3, 4]])
    original.eval(), loaded.eval()
    assert torch.equal(original(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_broken_local_hf_directory_is_a_model_error(tmp_path):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelError, match="cannot load a causal LM"):
        build_model(ModelConfig(source="hf", name=str(tmp_path / "empty-model")))


def test_count_parameters_counts_tied_weights_once_and_respects_trainable_only():
    model = build_model(llama_config(kwargs={**LLAMA_KWARGS, "tie_word_embeddings": True}), vocab_size=40)
    assert count_parameters(model) == sum(p.numel() for p in set(model.parameters()))
    model.model.embed_tokens.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - 40 * 32
