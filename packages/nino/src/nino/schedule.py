"""The nowcasting horizon schedule (spec A.7): far jumps early in training, k = 1 at the end."""

from __future__ import annotations

import numpy as np

from learngene_core.errors import ConfigError

__all__ = ["k_schedule"]


def k_schedule(max_steps: int, period: int = 1000, horizon: int = 40, power: float = 2.0) -> list[int]:
    """Horizon k (in snapshot intervals) of each nowcast: round(linspace(horizon**(1/power), 1, n)**power).

    n = max(1, max_steps // period) nowcasts; the wrapper uses entry min(n - 1, step_idx // period).
    """
    if period <= 0 or max_steps <= 0 or horizon <= 0 or power <= 0:
        raise ConfigError(
            f"k_schedule needs positive max_steps, period, horizon and power, got "
            f"max_steps={max_steps}, period={period}, horizon={horizon}, power={power}"
        )
    n = max(1, max_steps // period)
    ks = np.round(np.linspace(horizon ** (1.0 / power), 1.0, n) ** power).astype(int)
    return [int(k) for k in ks]
