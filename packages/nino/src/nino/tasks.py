"""Small training tasks by name: a model, its data, a loss, an AdamW learning rate and an eval metric.

They are what `nino collect` records trajectories on, what `nino train` and the speed-up benchmark train, and
(through `build_task_model`) what `nino graph` draws. Every task builds on CPU in about a second from a seed:

- `cnn-<data>-<width>`: the paper's FM-16 / C10-16 conv net shape (3x3 convs w-2w-2w, first stride 2, ReLU,
  global average pooling, Linear) on scikit-learn's real digits (`digits`, 1 channel, 8x8) or learngene-core's
  `synthetic-images` (`synth`, 3 channels, 16x16); width 16 is the paper's 16-32-32, width 32 is 32-64-64;
- `mlp-digits`: a 64-32-32-10 MLP on digits;
- `gpt2-tiny`, `llama-tiny`: 2-layer causal LMs (transformers `from_config`) on `synthetic-text`;
- `gpt2-3-24`: the paper's LM1B-3-24 shape (GPT-2, 3 layers, width 24, 3 heads) with a 128-token vocabulary, on
  `synthetic-text`.

The data are held as tensors and batched by index (much faster than a per-item DataLoader for tiny models).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.config import DataConfig, ModelConfig
from learngene_core.data import build_datasets
from learngene_core.errors import ModelError
from learngene_core.models import build_model
from learngene_core.registry import Registry

from .recipes import LM_SEQ, LM_VOCAB, RECIPES, TASKS, VALIDATION_TASKS, task_names

__all__ = [
    "MODELS",
    "TASKS",
    "VALIDATION_TASKS",
    "Batches",
    "TaskBundle",
    "build_task",
    "build_task_model",
    "conv_net",
    "mlp_net",
    "evaluate",
    "graph_args",
    "task_names",
]


# ------------------------------------------------------------------------------------------------ models


def conv_net(in_channels: int = 1, width: int = 16, num_classes: int = 10, depth: int = 3) -> nn.Sequential:
    """The paper's vision task net: conv3x3(w, stride 2)-conv3x3(2w)-conv3x3(2w), ReLU, GAP, Linear.

    Width 16 with 1 input channel is FM-16 (14,378 params), with 3 channels C10-16 (14,666 params). `depth`
    counts the convs (the paper's 3); every conv after the second keeps 2w channels.
    """
    wide = 2 * width
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU()]
    for i in range(1, depth):
        layers += [nn.Conv2d(width if i == 1 else wide, wide, 3, padding=1), nn.ReLU()]
    last = wide if depth > 1 else width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))


def mlp_net(in_features: int = 64, hidden: int = 32, num_classes: int = 10, depth: int = 2) -> nn.Sequential:
    """A ReLU MLP with `depth` hidden layers of `hidden` units on flattened inputs."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, num_classes))


def _gpt2(vocab: int, layers: int, width: int, heads: int, positions: int) -> nn.Module:
    kwargs = {
        "n_layer": layers,
        "n_embd": width,
        "n_head": heads,
        "n_positions": positions,
        "vocab_size": vocab,
    }
    kwargs.update(bos_token_id=0, eos_token_id=0)
    return build_model(ModelConfig(source="hf", name="gpt2", kwargs=kwargs))


def _llama(vocab: int, layers: int, width: int, heads: int, kv_heads: int, positions: int) -> nn.Module:
    kwargs = {
        "num_hidden_layers": layers,
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": positions,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    return build_model(ModelConfig(source="hf", name="llama", kwargs=kwargs))


HOLDOUT_FRACTION = 12  # 1/12 of each training split is held out, as in the paper's vision protocol (A.10)

# Architectures by name (no data): the task nets plus the reference's meta-training architectures.
MODELS: Registry[Callable[[], nn.Module]] = Registry("nino model", ModelError)
MODELS.register("fm16-cnn")(lambda: conv_net(1, 16))
MODELS.register("c10-16-cnn")(lambda: conv_net(3, 16))
MODELS.register("fm32-cnn")(lambda: conv_net(1, 32))
MODELS.register("c10-32-cnn")(lambda: conv_net(3, 32))
MODELS.register("cnn-digits-16")(lambda: conv_net(1, 16))
MODELS.register("cnn-digits-32")(lambda: conv_net(1, 32))
MODELS.register("cnn-synth-16")(lambda: conv_net(3, 16))
MODELS.register("cnn-synth-32")(lambda: conv_net(3, 32))
MODELS.register("mlp-digits")(lambda: mlp_net())
MODELS.register("gpt2-tiny")(lambda: _gpt2(LM_VOCAB, 2, 32, 2, LM_SEQ))
MODELS.register("gpt2-3-24")(lambda: _gpt2(LM_VOCAB, 3, 24, 3, LM_SEQ))  # LM1B-3-24's shape, small vocab
MODELS.register("llama-tiny")(lambda: _llama(LM_VOCAB, 2, 32, 2, 1, LM_SEQ))
# More widths, depths and kinds for the shipped checkpoint's meta-training data (collect-cpu) and for
# choosing among meta-training candidates (the `validation` tasks of tools/bench/nino_speedup.py); none of
# them is a bench task.
MODELS.register("cnn-digits-8")(lambda: conv_net(1, 8))
MODELS.register("cnn-digits-24")(lambda: conv_net(1, 24))
MODELS.register("cnn-digits-16-d4")(lambda: conv_net(1, 16, depth=4))
MODELS.register("cnn-synth-8")(lambda: conv_net(3, 8))
MODELS.register("cnn-synth-24")(lambda: conv_net(3, 24))
MODELS.register("cnn-synth-16-d2")(lambda: conv_net(3, 16, depth=2))
MODELS.register("mlp-digits-64")(lambda: mlp_net(hidden=64))
MODELS.register("mlp-digits-d3")(lambda: mlp_net(depth=3))
MODELS.register("mlp-digits-48")(lambda: mlp_net(hidden=48))
MODELS.register("mlp-synth")(lambda: mlp_net(3 * 16 * 16, 32))
MODELS.register("gpt2-1-16")(lambda: _gpt2(LM_VOCAB, 1, 16, 2, LM_SEQ))
MODELS.register("gpt2-2-24")(lambda: _gpt2(LM_VOCAB, 2, 24, 3, LM_SEQ))
MODELS.register("llama-1-24")(lambda: _llama(LM_VOCAB, 1, 24, 2, 2, LM_SEQ))
MODELS.register("cnn-digits-12")(lambda: conv_net(1, 12))
MODELS.register("cnn-digits-20")(lambda: conv_net(1, 20))
MODELS.register("cnn-digits-8-d2")(lambda: conv_net(1, 8, depth=2))
MODELS.register("cnn-synth-12")(lambda: conv_net(3, 12))
MODELS.register("cnn-synth-20")(lambda: conv_net(3, 20))
MODELS.register("cnn-synth-8-d4")(lambda: conv_net(3, 8, depth=4))
MODELS.register("mlp-digits-16")(lambda: mlp_net(hidden=16))
MODELS.register("mlp-digits-96")(lambda: mlp_net(hidden=96))
MODELS.register("mlp-digits-d1")(lambda: mlp_net(depth=1))
MODELS.register("mlp-synth-64")(lambda: mlp_net(3 * 16 * 16, 64))
MODELS.register("gpt2-2-16")(lambda: _gpt2(LM_VOCAB, 2, 16, 2, LM_SEQ))
MODELS.register("gpt2-1-32")(lambda: _gpt2(LM_VOCAB, 1, 32, 4, LM_SEQ))
MODELS.register("llama-2-16")(lambda: _llama(LM_VOCAB, 2, 16, 2, 1, LM_SEQ))
MODELS.register("lm1b-3-24")(lambda: _gpt2(50257, 3, 24, 3, 1024))
MODELS.register("lm1b-2-32")(lambda: _gpt2(50257, 2, 32, 2, 1024))


def build_task_model(name: str, seed: int = 0) -> nn.Module:
    """The architecture `name` (see `MODELS.names()`), initialised from `seed`."""
    factory = MODELS.get(name)
    torch.manual_seed(seed)
    return factory()


def graph_args(model: nn.Module) -> dict[str, int]:
    """The `build_graph` keywords a transformer needs when its graph is built from names and shapes."""
    config = getattr(model, "config", None)
    heads = getattr(config, "n_head", None) or getattr(config, "num_attention_heads", None)
    if heads is None:
        return {}
    kv = getattr(config, "num_key_value_heads", None)
    return {"num_heads": int(heads), **({"num_kv_heads": int(kv)} if kv else {})}


# -------------------------------------------------------------------------------------------------- data


class Batches:
    """Mini-batches of in-memory tensors by index: shuffled (seeded) for training, ordered for evaluation."""

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
    ):
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._epoch(self._order())

    def _order(self) -> torch.Tensor:
        n = len(self.inputs)
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def _epoch(self, order: torch.Tensor, first: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(first * self.batch_size, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.inputs[idx], self.targets[idx]

    def forever(self, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches, reshuffled every epoch; `skip`: start after that many, as a run resumed after
        `skip` steps does (only the shuffles of the skipped epochs are drawn again)."""
        epochs, first = divmod(skip, len(self))
        for _ in range(epochs):
            self._order()
        while True:
            yield from self._epoch(self._order(), first)
            first = 0


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


# ------------------------------------------------------------------------------------------------- tasks


@dataclass
class TaskBundle:
    """Everything needed to train one task: `loss_fn(model, batch)` and `evaluate(model) -> {loss, metric}`."""

    name: str
    model: nn.Module
    train: Batches
    val: Batches
    holdout: Batches  # a random 1/12 of the training split (from data_seed), never trained on (NiNo's check)
    kind: str  # "classification" or "causal-lm"
    lr: float
    weight_decay: float = 0.0
    metric: str = "accuracy"  # the eval metric besides the loss (accuracy, or perplexity for LMs)
    info: dict[str, Any] = field(default_factory=dict)

    def loss_fn(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        if self.kind == "causal-lm":
            logits = model(input_ids=inputs).logits[:, :-1]
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets[:, 1:].reshape(-1))
        return F.cross_entropy(model(inputs), targets)

    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        return evaluate(self, model or self.model)

    def holdout_loss(self, model: nn.Module | None = None) -> float:
        """Mean loss on the held-out part of the training split."""
        return evaluate(self, model or self.model, self.holdout)["loss"]

    def optimizer(self, model: nn.Module | None = None) -> torch.optim.AdamW:
        """The task's base optimizer: AdamW with its learning rate and weight decay."""
        params = (model or self.model).parameters()
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


@torch.no_grad()
def evaluate(task: TaskBundle, model: nn.Module, batches: Batches | None = None) -> dict[str, float]:
    """Mean loss and the task metric (accuracy, or perplexity for LMs) on `batches` (default: validation)."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0.0, 0
    for inputs, targets in task.val if batches is None else batches:
        if task.kind == "causal-lm":
            logits = model(input_ids=inputs).logits[:, :-1]
            labels = targets[:, 1:]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="sum")
            n = labels.numel()
        else:
            logits = model(inputs)
            labels = targets
            loss = F.cross_entropy(logits, labels, reduction="sum")
            n = labels.numel()
        total += float(loss)
        correct += float((logits.argmax(-1) == labels).sum())
        count += n
    model.train(was_training)
    loss = total / max(count, 1)
    if task.kind == "causal-lm":
        return {"loss": loss, "perplexity": float(torch.exp(torch.tensor(loss))), "accuracy": correct / count}
    return {"loss": loss, "accuracy": correct / max(count, 1)}


def build_task(name: str, seed: int = 0, data_seed: int = 0) -> TaskBundle:
    """Task `name`: model init and batch order from `seed`; the dataset (split, synthetic content) from `data_seed`."""
    if name not in RECIPES:
        from learngene_core.registry import did_you_mean

        raise ModelError(f"unknown nino task '{name}'{did_you_mean(name, TASKS)}; known: {', '.join(TASKS)}")
    recipe = RECIPES[name]
    cfg = DataConfig(
        name=recipe.data, batch_size=recipe.batch_size, seq_len=LM_SEQ, options=dict(recipe.options)
    )
    splits = build_datasets(cfg, data_seed)
    train_x, train_y = _tensors(splits.train)
    val_x, val_y = _tensors(splits.val)
    # the paper's vision protocol: 1/12 of the training split held out, drawn at random (the split's order can
    # follow the source, e.g. digits' writers, so its tail would be another distribution)
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(data_seed))
    train_x, train_y = train_x[order], train_y[order]
    keep = len(train_x) - max(1, len(train_x) // HOLDOUT_FRACTION)
    model = build_task_model(recipe.model, seed)
    return TaskBundle(
        name=name,
        model=model,
        train=Batches(train_x[:keep], train_y[:keep], recipe.batch_size, shuffle=True, seed=seed),
        val=Batches(val_x, val_y, 256, shuffle=False),
        holdout=Batches(train_x[keep:], train_y[keep:], 256, shuffle=False),
        kind=splits.task,
        lr=recipe.lr,
        metric="perplexity" if splits.task == "causal-lm" else "accuracy",
        info={"data": splits.description, "params": sum(p.numel() for p in model.parameters())},
    )
