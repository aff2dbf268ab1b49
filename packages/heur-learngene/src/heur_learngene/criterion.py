"""The computed criterion: rank layers by how little they change late in the stream; the k steadiest are the learngene."""

from __future__ import annotations

import math
from typing import Any

from learngene_core.learngene.inherit import format_ranking as layer_table
from learngene_core.learngene.inherit import top_k


def rank_layers(
    records: list[dict[str, Any]], criterion: str, late_fraction: float, k: int
) -> dict[str, Any]:
    """Scores (mean criterion over the late tasks), the ranking (steadiest first) and the k chosen layers."""
    late = max(1, math.ceil(late_fraction * len(records)))
    rows = [r[criterion] for r in records[-late:]]
    scores = [sum(values) / len(values) for values in zip(*rows)]
    ranking = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
    return {
        "criterion": criterion,
        "late_tasks": [r["task"] for r in records[-late:]],
        "scores": scores,
        "ranking": ranking,
        "layers": top_k(scores, k, largest=False),
    }


def format_ranking(choice: dict[str, Any], prefixes: list[str]) -> str:
    """The ranking table `collective` and `choose` print."""
    tasks = choice["late_tasks"]
    title = f"layer ranking by {choice['criterion']} (mean over tasks {tasks[0]}-{tasks[-1]}; smallest = steadiest):"
    return layer_table(title, "score", choice, prefixes)
