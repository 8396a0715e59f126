"""common.pipeline.parallel: results in order, and a progress bar that ends at 100 %."""
from __future__ import annotations

import pytest

from common.pipeline.parallel import map_with_progress


def _square(value: int) -> int:
    return value * value


@pytest.mark.parametrize("workers", [1, 2])
def test_bar_reaches_the_total_when_the_consumer_stops_at_the_last_result(workers, capsys):
    names = ["a", "b", "c", "d"]
    # zip stops pulling as soon as `names` is exhausted: the bar must already count every item
    pairs = list(zip(names, map_with_progress(_square, [1, 2, 3, 4], workers, desc="Work")))
    assert pairs == [("a", 1), ("b", 4), ("c", 9), ("d", 16)]
    bar = capsys.readouterr().err.strip().split("\r")[-1]
    assert "100%" in bar and "4/4" in bar, bar
