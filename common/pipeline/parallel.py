"""Ordered map over work items with a progress bar, in worker processes when asked.

Ctrl-C with workers: the workers ignore SIGINT (a terminal sends it to every process of the
job), so only the parent sees it; leaving the pool terminates the workers with SIGTERM, which
a worker turns into a quiet exit that still runs its `finally` blocks (atomic_path removes the
temporary file it was writing). The parent then reports the interrupt in one line.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
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
        with _start_pool(context, workers) as pool:
            for result in pool.imap(func, items, chunksize=chunksize):
                bar.update()
                yield result
    finally:
        bar.close()


def _start_pool(context, workers: int):
    # SIGINT is ignored while the workers start: a spawned worker inherits SIG_IGN through exec,
    # so a Ctrl-C during its imports does not print a traceback from it either.
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        return context.Pool(workers, initializer=_worker_signals)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(workers, initializer=_worker_signals)
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_terminate)


def _exit_on_terminate(signum, frame) -> None:
    # The worker ends with os._exit after this, so a generator suspended inside atomic_path
    # would never run its finally: remove this worker's temporary files now. SystemExit then
    # unwinds the task and ends the worker without a traceback.
    from common.files.atomic import remove_live_temps
    remove_live_temps()
    raise SystemExit(128 + signum)


def _torch_threads_started() -> bool:
    # Forking after torch has spun up its thread pool can deadlock; spawn is safe then.
    import sys
    return "torch" in sys.modules
