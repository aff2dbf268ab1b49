"""The nowcasting horizon schedule equals spec A.7's worked arrays."""

import pytest

from learngene_core.errors import ConfigError
from nino.schedule import k_schedule

WORKED = {
    10_000: [40, 33, 26, 21, 16, 11, 8, 5, 3, 1],
    14_000: [40, 35, 30, 26, 22, 18, 15, 12, 9, 7, 5, 3, 2, 1],
    15_000: [40, 35, 31, 27, 23, 20, 16, 13, 11, 8, 6, 5, 3, 2, 1],
    20_000: [40, 37, 33, 30, 27, 24, 22, 19, 17, 14, 12, 11, 9, 7, 6, 4, 3, 2, 2, 1],
}


@pytest.mark.parametrize("max_steps", sorted(WORKED))
def test_k_schedule_matches_worked_values(max_steps):
    assert k_schedule(max_steps, period=1000) == WORKED[max_steps]


def test_k_schedule_counts_nowcasts_by_period():
    assert k_schedule(100, period=10) == WORKED[10_000]  # only max_steps // period matters
    assert k_schedule(999, period=1000) == [40]  # fewer steps than a period: one entry, the far horizon
    assert k_schedule(3000, period=1000, horizon=9) == [9, 4, 1]  # sqrt: 3 -> 2 -> 1, squared
    assert k_schedule(10_000, power=1.0) == [40, 36, 31, 27, 23, 18, 14, 10, 5, 1]


@pytest.mark.parametrize("kwargs", [{"period": 0}, {"max_steps": 0}, {"horizon": 0}, {"power": -1.0}])
def test_k_schedule_rejects_bad_arguments(kwargs):
    args = {"max_steps": 1000, "period": 100, **kwargs}
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        k_schedule(**args)
