"""A small set of nodes to keep in float32 so that the outputs meet the tolerance.

The shape of Polygraphy's `debug precision` (bisect over an ordered list of layers, marking a
prefix to run in higher precision), with two steps before and after it:

1. range: every node whose float32 values exceed float16's range (|x| > 65504) must stay
   float32, and so must every float16 consumer of such a tensor (it would read it rounded to
   inf or 65504). Those are kept first, and never dropped: demo inputs that happen to fit do
   not make other inputs fit.
2. bisect: the other float16 nodes in an order (worst first: largest cosine drop from a node's
   inputs to its output in the statistics run; or graph order, as Polygraphy), the shortest
   prefix that meets the tolerance, assuming more float32 never hurts.
3. prune: try to drop parts of that prefix again (halves, quarters, ... single nodes), within
   the evaluation budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from common.fp16.compare import TensorStats

Evaluate = Callable[[frozenset], bool]

WORST_FIRST = "worst_first"
GRAPH_ORDER = "graph_order"
SEARCH_ORDERS = (WORST_FIRST, GRAPH_ORDER)


@dataclass
class SearchResult:
    keep: list[str]
    met: bool
    evaluations: int
    range_nodes: list[str]
    steps: list[dict] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        return {"keep": self.keep, "met": self.met, "evaluations": self.evaluations,
                "range_nodes": self.range_nodes, "steps": self.steps, "note": self.note}


def range_nodes(stats: Sequence[TensorStats], consumers: dict[str, list[str]], fp16_nodes: set[str]) -> set[str]:
    """Producers of tensors beyond float16's range, and their float16 consumers."""
    needed = set()
    for entry in stats:
        if entry.beyond_fp16_max:
            needed.add(entry.node)
            needed.update(consumers.get(entry.tensor, ()))
    return needed & fp16_nodes


def candidate_order(stats: Sequence[TensorStats], node_inputs: dict[str, list[str]], fp16_nodes: set[str],
                    order: str) -> list[str]:
    """The float16 nodes in the order the bisection adds them."""
    position = {}
    for entry in stats:
        position.setdefault(entry.node, entry.position)
    nodes = sorted((n for n in fp16_nodes if n in position), key=position.__getitem__)
    if order == GRAPH_ORDER:
        return nodes
    cosine = {entry.tensor: entry.similarity for entry in stats}
    out_cosine: dict[str, float] = {}
    for entry in stats:
        out_cosine[entry.node] = min(out_cosine.get(entry.node, 1.0), cosine[entry.tensor])

    def drop(node: str) -> float:
        inputs = [cosine[name] for name in node_inputs.get(node, ()) if name in cosine]
        return min(inputs, default=1.0) - out_cosine.get(node, 1.0)

    return sorted(nodes, key=lambda n: (-drop(n), position[n]))


class _Budgeted:
    """Caches evaluations by keep set and stops counting new ones past the budget."""

    def __init__(self, evaluate: Evaluate, budget: int, steps: list):
        self.evaluate, self.budget, self.steps = evaluate, budget, steps
        self.cache: dict[frozenset, bool] = {}

    @property
    def exhausted(self) -> bool:
        return len(self.cache) >= self.budget

    def __call__(self, keep: Iterable[str], why: str) -> bool:
        keep = frozenset(keep)
        if keep not in self.cache:
            self.cache[keep] = bool(self.evaluate(keep))
            self.steps.append({"step": why, "kept": len(keep), "met": self.cache[keep]})
        return self.cache[keep]


def search_keep_set(evaluate: Evaluate, candidates: Sequence[str], forced: Iterable[str],
                    positions: dict[str, int], max_evaluations: int = 40) -> SearchResult:
    """Smallest keep set found (in graph order) whose evaluation meets the tolerance."""
    steps: list[dict] = []
    check = _Budgeted(evaluate, max(2, max_evaluations), steps)
    forced = set(forced)

    def by_position(names):
        return sorted(names, key=positions.__getitem__)

    def result(keep, met, note=""):
        return SearchResult(by_position(keep), met, len(check.cache), by_position(forced), steps, note)

    if check((), "nothing kept"):
        return result(set(), True, "the outputs meet the tolerance with every node in float16")
    if forced and check(forced, "range: nodes beyond float16's range"):
        return result(forced, True)
    rest = [name for name in candidates if name not in forced]
    if not check(forced | set(rest), "everything kept"):
        return result(forced | set(rest), False, "even with every float16 node kept the outputs miss the tolerance")
    low, high = 0, len(rest)  # prefix `high` meets, prefix `low` does not
    while high - low > 1 and not check.exhausted:
        middle = (low + high) // 2
        if check(forced | set(rest[:middle]), f"bisect: first {middle} of {len(rest)}"):
            high = middle
        else:
            low = middle
    keep = _prune(check, forced, rest[:high])
    return result(forced | set(keep), True)


def _prune(check: _Budgeted, forced: set, added: list[str]) -> list[str]:
    """Drop chunks of `added` (halves, then quarters, ... then single nodes) that the tolerance
    does not need; stops when the budget is spent (what is kept then still meets it)."""
    kept = list(added)
    size = max(1, len(kept) // 2)
    while kept and not check.exhausted:
        index = 0
        while index < len(kept) and not check.exhausted:
            trial = kept[:index] + kept[index + size:]
            if check(forced | set(trial), f"prune: drop {size} of {len(kept)}"):
                kept = trial
            else:
                index += size
        if size == 1:
            break
        size = max(1, size // 2)
    return kept
