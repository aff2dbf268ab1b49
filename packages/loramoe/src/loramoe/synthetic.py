"""Synthetic two-task instruction data for the tiny preset (no downloads, seeded).

- task_type 1, *world knowledge*: closed-book lookups of a fixed random fact table ("code of kaz?" -> "pbe"),
  the same facts in train and test (knowledge the model must store), with four answer options.
- task_type 0, *downstream*: a transformation of random letters (reverse a word), new words in test.
"""

from __future__ import annotations

import random

from .records import Record

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _word(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(length))


def synthetic_tasks(
    seed: int, num_samples: int = 800, num_facts: int = 24, knowledge_fraction: float = 0.5
) -> tuple[list[Record], list[Record]]:
    """(train, test) records; test has `num_samples // 4` records of the same mix."""
    rng = random.Random(seed)
    keys: list[str] = []
    while len(keys) < num_facts:
        key = _word(rng, 3)
        if key not in keys:
            keys.append(key)
    facts = {k: _word(rng, 3) for k in keys}

    def knowledge(i: int) -> Record:
        key = keys[i % num_facts]
        others = rng.sample([facts[k] for k in keys if k != key], 3)
        options = [facts[key], *others]
        rng.shuffle(options)
        return Record(f"Question: what is the code of {key}?\nAnswer:", facts[key], 1, options=options)

    def downstream() -> Record:
        word = _word(rng, rng.randint(3, 5))
        return Record(f"Reverse the letters of the word.\n{word}", word[::-1], 0)

    def make(count: int) -> list[Record]:
        out = []
        for i in range(count):
            out.append(knowledge(i) if rng.random() < knowledge_fraction else downstream())
        return out

    return make(num_samples), make(max(num_samples // 4, 2))
