"""`loramoe eval`'s metrics on a model whose next-token scores are set by hand (a bigram table).

A Llama with no decoder layer computes logits from the current token alone, so with one-hot embeddings its
logits are a table row: greedy answers and option log-likelihoods can be worked out by hand, and scoring that
is one token off gives different numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from learngene_core.data.tokenizers import ByteTokenizer
from loramoe.data import InstructionDataset, PromptCodec
from loramoe.evaluate import evaluate_dataset, option_logprobs
from loramoe.records import Record

A, B, C, EOS = ord("a"), ord("b"), ord("c"), 256
TABLE = {  # next-token logits after each token (everything else -20)
    EOS: {A: 6.0, C: 1.0},  # after the prompt: "a" likely, "c" unlikely
    A: {B: 6.0, EOS: 3.0},  # greedy continues "a" with "b"; ending after "a" costs about 3 nats
    B: {EOS: 6.0},
    C: {EOS: 8.0},
}


@pytest.fixture(scope="module")
def bigram():
    rows = torch.full((257, 257), -20.0)
    for prev, row in TABLE.items():
        for nxt, value in row.items():
            rows[prev, nxt] = value
    cfg = LlamaConfig(vocab_size=257, hidden_size=258, intermediate_size=8, num_hidden_layers=0,
                      num_attention_heads=1, max_position_embeddings=128)  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg).eval()
    scale = 1 / math.sqrt(1 / 258 + cfg.rms_norm_eps)  # RMSNorm of a one-hot vector
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(257, 258))
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :257] = rows.T / scale
    return model


def logp(model, prev: int, nxt: int) -> float:
    """log p(next | prev) read off the model one token at a time (no prompt, no slicing)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[prev]])).logits[0, -1]
    return float(torch.log_softmax(logits.double(), -1)[nxt])


def test_option_log_likelihood_sums_the_options_tokens_and_its_end_of_text(bigram):
    codec = PromptCodec(ByteTokenizer())
    scores = option_logprobs(bigram, codec, "Pick one: a or c?", ["a", "c", "ab"])
    expected = [
        logp(bigram, EOS, A) + logp(bigram, A, EOS),
        logp(bigram, EOS, C) + logp(bigram, C, EOS),
        logp(bigram, EOS, A) + logp(bigram, A, B) + logp(bigram, B, EOS),
    ]
    assert scores == pytest.approx(expected, abs=1e-4)


def test_exact_match_option_accuracy_and_loss_on_hand_worked_records(bigram):
    codec = PromptCodec(ByteTokenizer())
    records = [
        Record("Say it.", "ab", 0),  # greedy answer is "ab": a hit
        Record("Say it again.", "a", 0),  # greedy "ab" != "a": a miss
        # "a" scores -0.01 - 3.05, "c" -5.0 - 0.0: "a" wins; dropping the first answer token would pick "c"
        Record("Pick one.", "a", 1, options=["a", "c"]),
    ]
    dataset = InstructionDataset(records, codec, seq_len=64)
    metrics = evaluate_dataset(bigram, codec, dataset, {0: "downstream", 1: "world-knowledge"}, 4, 2, False)
    assert metrics["exact_match/downstream"] == 0.5
    assert metrics["exact_match/world-knowledge"] == 0.0  # greedy "ab" is not "a"
    assert metrics["option_accuracy/world-knowledge"] == 1.0
    loss_ab = -(logp(bigram, EOS, A) + logp(bigram, A, B) + logp(bigram, B, EOS)) / 3
    loss_a = -(logp(bigram, EOS, A) + logp(bigram, A, EOS)) / 2
    assert metrics["loss/downstream"] == pytest.approx((loss_ab + loss_a) / 2, abs=1e-4)
    assert metrics["loss/world-knowledge"] == pytest.approx(loss_a, abs=1e-4)
