"""Evaluation on instruction data: answer-token loss, exact match of greedy answers, option log-likelihood."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import IGNORE, InstructionDataset, PromptCodec


def answer_token_stats(model: nn.Module, inputs: dict, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per sample: summed answer-token NLL, number of answer tokens, number predicted correctly."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    shifted, target = logits[:, :-1].float(), labels[:, 1:]
    valid = target != IGNORE
    nll = F.cross_entropy(shifted.transpose(1, 2), target.clamp(min=0), reduction="none") * valid
    correct = (shifted.argmax(-1) == target) & valid
    return nll.sum(1), valid.sum(1), correct.sum(1)


def lm_metrics(trainer, loader, split: str) -> dict[str, float]:
    """Trainer `eval_fn`: mean answer-token loss, token accuracy and perplexity (exact across processes)."""
    model, acc = trainer.model, trainer.accelerator
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for inputs, labels in loader:
            stats = acc.gather_for_metrics(answer_token_stats(model, inputs, labels))
            sums += torch.stack([s.double().sum().cpu() for s in stats])
    model.train(was_training)
    loss = float(sums[0] / sums[1].clamp(min=1))
    return {
        "loss": loss,
        "accuracy": float(sums[2] / sums[1].clamp(min=1)),
        "perplexity": math.exp(min(loss, 50)),
    }


def _left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r) :], mask[i, length - len(r) :] = torch.tensor(r), 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate_answers(
    model: nn.Module, codec: PromptCodec, prompts: list[str], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy answers to `prompts` (formatted as in training), batched with left padding."""
    device = next(model.parameters()).device
    answers = []
    for start in range(0, len(prompts), batch_size):
        rows = [codec.prompt_ids(p) for p in prompts[start : start + batch_size]]
        ids, mask = _left_pad(rows, codec.pad, device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=codec.eos,
            pad_token_id=codec.pad,
        )
        answers += [codec.decode(row[ids.shape[1] :].tolist()) for row in out]
    return answers


@torch.no_grad()
def option_logprobs(model: nn.Module, codec: PromptCodec, prompt: str, options: list[str]) -> list[float]:
    """Summed log-probability of each option's tokens (and its end-of-text) after the prompt."""
    device = next(model.parameters()).device
    prompt_ids = codec.prompt_ids(prompt)
    rows = [prompt_ids + codec.answer_ids(o) for o in options]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), codec.pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    scores = []
    for i, r in enumerate(rows):
        scores.append(float(logp[i, len(prompt_ids) - 1 : len(r) - 1].sum()))
    return scores


@torch.no_grad()
def evaluate_dataset(
    model: nn.Module,
    codec: PromptCodec,
    dataset: InstructionDataset,
    task_names: dict[int, str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, float]:
    """Exact match per task type (greedy answers), option accuracy where records have options, answer loss."""
    was_training = model.training
    model.eval()
    records = dataset.records
    answers = generate_answers(model, codec, [r.source for r in records], max_new_tokens, batch_size)
    hits: dict[int, list[float]] = defaultdict(list)
    option_hits: dict[int, list[float]] = defaultdict(list)
    losses: dict[int, list[float]] = defaultdict(list)
    for i, record in enumerate(tqdm(records, desc="eval", disable=not progress)):
        hits[record.task_type].append(float(answers[i].strip() == record.output.strip()))
        if record.options:
            scores = option_logprobs(model, codec, record.source, record.options)
            best = max(range(len(scores)), key=scores.__getitem__)
            option_hits[record.task_type].append(float(record.options[best] == record.output))
        inputs, labels = dataset[i]
        ids = inputs["input_ids"][None].to(next(model.parameters()).device)
        nll, count, _ = answer_token_stats(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                           labels[None].to(ids.device))  # fmt: skip
        losses[record.task_type].append(float(nll.sum() / count.clamp(min=1).sum()))
    model.train(was_training)
    metrics: dict[str, float] = {"samples": float(len(records))}
    for name, table in (("exact_match", hits), ("option_accuracy", option_hits), ("loss", losses)):
        values = [v for vs in table.values() for v in vs]
        if not values:
            continue
        metrics[name] = sum(values) / len(values)
        for t in sorted(table):
            metrics[f"{name}/{task_names.get(t, t)}"] = sum(table[t]) / len(table[t])
    return metrics
