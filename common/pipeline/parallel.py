"""Ordered map over work items with a progress bar, in worker processes when asked."""
from __future__ import annotations

import multiprocessing
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_with_progress(func: Callable[[Item], Result], items: Sequence[Item], workers: int = 1,
                      desc: str = "", unit: str = "img") -> Iterator[Result]:
    """Yield func(item) in input order; `workers > 1` uses a process pool (func must pickle).

    Results stream out one at a time, so a caller that folds them (a confusion matrix) keeps
    memory flat however many items there are.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                result = func(item)
                # counted before it is handed out: a consumer that stops pulling once it has
                # every result (zip) must still leave the bar at 100 %
                bar.update()
                yield result
            return
        context = multiprocessing.get_context("spawn" if _torch_threads_started() else "fork")
        # Chunks of a few items save messaging on small images, but with only a few items per
        # worker they would leave a worker idle at the end: one item at a time then.
        chunksize = max(1, min(4, len(items) // (workers * 8)))
        with context.Pool(workers) as pool:
            for result in pool.imap(func, items, chunksize=chunksize):
                bar.update()
                yield result
    finally:
        bar.close()


def _torch_threads_started() -> bool:
    # Forking after torch has spun up its thread pool can deadlock; spawn is safe then.
    import sys
    return "torch" in sys.modules
