"""One model, one set of bins: the float32 reference run, emulated runs and per-tensor statistics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import onnx
from tqdm import tqdm

from common.files.bins import bin_stem
from common.cli import UserError
from common.fp16.compare import OutputComparison, TensorStats, Tolerance, compare_outputs, meets
from common.fp16.emulate import GraphFacts, analyse, emulate, fp16_nodes, make_session, with_outputs
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.runtime.backend import TensorSpec
from common.runtime.runner import batch_size_for
from common.runtime.samples import check_sample_sizes, collect_samples, load_sample


@dataclass
class Samples:
    names: list[str]
    feeds: list[dict[str, np.ndarray]]  # one batch per sample, as the model takes it
    total_available: int


def load_samples(backend: OnnxRuntimeBackend, input_arg: str, max_samples: int | None) -> Samples:
    """The bins of `--input` (checked against the model's inputs), the first `max_samples` of them."""
    specs = backend.input_specs()
    groups = collect_samples(input_arg, specs)
    check_sample_sizes(groups, specs, backend.model_path.name)
    batch = batch_size_for(specs, None)
    chosen = groups[:max_samples] if max_samples else groups
    feeds = [{spec.name: _batched(load_sample(path, spec), batch) for spec, path in zip(specs, group)}
             for group in chosen]
    return Samples([bin_stem(group[0]) for group in chosen], feeds, len(groups))


def _batched(sample: np.ndarray, batch: int) -> np.ndarray:
    # A static batch larger than 1 is filled with copies of the sample, as ais_bench pads.
    return np.repeat(sample[None], batch, axis=0)


def input_shapes(specs: Sequence[TensorSpec], feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {spec.name: feeds[spec.name].shape for spec in specs}


class Analysis:
    """The float32 outputs once, then any emulated variant of the same model on the same bins."""

    def __init__(self, model: onnx.ModelProto, backend: OnnxRuntimeBackend, samples: Samples, mode: str,
                 overflow: str, tolerance: Tolerance, threads: int | None = None, progress: bool = True):
        if not samples.feeds:
            raise UserError(f"{backend.model_path}: no samples to analyse")
        self.model, self.samples, self.mode, self.overflow = model, samples, mode, overflow
        self.tolerance, self.threads, self.progress = tolerance, threads, progress
        self.output_names = backend.output_names()
        self.facts: GraphFacts = analyse(model, input_shapes(backend.input_specs(), samples.feeds[0]))
        self.reference_outputs = [backend.run(feeds) for feeds in samples.feeds]
        self.evaluations = 0

    def fp16_nodes(self, keep: Iterable[str] = ()) -> set[str]:
        return fp16_nodes(self.model, self.facts, self.mode, keep)

    def emulated_outputs(self, keep: Iterable[str] = ()) -> list[list[np.ndarray]]:
        session = make_session(emulate(self.model, self.facts, self.mode, keep, self.overflow), self.threads)
        return [session.run(self.output_names, feeds) for feeds in self.samples.feeds]

    def compare(self, others: list[list[np.ndarray]]) -> list[OutputComparison]:
        return compare_outputs(self.output_names, self.reference_outputs, others, self.tolerance)

    def evaluate(self, keep: Iterable[str] = ()) -> tuple[bool, list[OutputComparison]]:
        """Whether the outputs meet the tolerance with `keep` in float32."""
        self.evaluations += 1
        comparisons = self.compare(self.emulated_outputs(keep))
        return meets(comparisons, self.tolerance), comparisons

    # ---- per-tensor statistics ----------------------------------------------------------

    def tracked_tensors(self) -> list[tuple[str, onnx.NodeProto]]:
        """Float, integer and boolean tensors that carry data, with their producing node, in
        graph order (an index that changes, e.g. TopK picking other points, is a departure too)."""
        tracked = []
        for node in self.model.graph.node:
            for name in node.output:
                if name and name in self.facts.data_tensors and (self.facts.is_float(name) or self.facts.is_exact(name)):
                    tracked.append((name, node))
        return tracked

    def tensor_stats(self, keep: Iterable[str] = (), budget_bytes: int = 1 << 30) -> list[TensorStats]:
        """Statistics of every tracked tensor, the graph run once per chunk of tensors whose
        float32 and emulated values together fit `budget_bytes` (intermediate tensors of a big
        model at full input size do not fit memory all at once)."""
        keep = set(keep)
        lowered = self.fp16_nodes(keep)
        tracked = self.tracked_tensors()
        stats = {name: TensorStats(name, node.name, node.op_type, self.facts.order[node.name],
                                   node.name in lowered, exact=self.facts.is_exact(name)) for name, node in tracked}
        emulated_model = emulate(self.model, self.facts, self.mode, keep, self.overflow)
        names = [name for name, _ in tracked]
        sizes = self._sizes(names, budget_bytes // 2)
        chunks = self._chunks(names, sizes, budget_bytes // 2)
        total = len(chunks) * len(self.samples.feeds)
        with tqdm(total=total, desc="fp16 per-tensor statistics", unit="run", disable=not self.progress) as bar:
            for chunk in chunks:
                reference = make_session(with_outputs(self.model, chunk, self.facts.elem_types), self.threads)
                emulated = make_session(with_outputs(emulated_model, chunk, self.facts.elem_types), self.threads)
                for feeds in self.samples.feeds:
                    ref_values = reference.run(chunk, feeds)
                    emu_values = emulated.run(chunk, feeds)
                    for name, ref, emu in zip(chunk, ref_values, emu_values):
                        stats[name].update(ref, emu, self.overflow)
                    del ref_values, emu_values
                    bar.update(1)
                del reference, emulated
        return [stats[name] for name, _ in tracked]

    def _sizes(self, names: list[str], budget_bytes: int) -> dict[str, int]:
        """Bytes per tensor: from shape inference, else measured on the first sample by float32
        runs over groups that fit the budget even if each tensor were as large as the largest
        known one (detection heads after NMS have data-dependent shapes)."""
        sizes = {name: self.facts.nbytes(name) for name in names}
        unknown = [name for name, size in sizes.items() if size is None]
        guess = max((size for size in sizes.values() if size is not None), default=1 << 20)
        for group in self._chunks(unknown, {name: guess for name in unknown}, budget_bytes):
            session = make_session(with_outputs(self.model, group, self.facts.elem_types), self.threads)
            for name, value in zip(group, session.run(group, self.samples.feeds[0])):
                sizes[name] = max(int(np.asarray(value).nbytes), 1)
        return sizes

    @staticmethod
    def _chunks(names: list[str], sizes: dict[str, int], budget_bytes: int) -> list[list[str]]:
        chunks, current, used = [], [], 0
        for name in names:
            size = sizes[name]
            if current and used + size > budget_bytes:
                chunks.append(current)
                current, used = [], 0
            current.append(name)
            used += size
        if current:
            chunks.append(current)
        return chunks
