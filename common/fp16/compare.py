"""Float32 run against the emulated float16 run: per-tensor statistics and per-output verdicts.

Both accumulate over samples, so a tensor's figures cover every bin analysed while only one
sample's tensors are held at a time. Sums run in float64, in blocks, to bound the temporaries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.fp16.modes import FP16_MAX, FP16_MIN_NORMAL, FP16_ROUNDS_TO_ZERO, SATURATION

_BLOCK = 1 << 20
DEPARTURE_COSINE = 0.99  # msit/ait compare and Ascend's troubleshooting guide read below ~0.99 as a departure
DEPARTURE_CHANGED = 0.01  # an integer/boolean tensor departs when more than 1% of its values differ


@dataclass
class TensorStats:
    """One tensor of the graph over all samples: its float32 range and how float16 changed it."""
    tensor: str
    node: str
    op_type: str
    position: int                    # of the producing node in graph order
    runs_in_fp16: bool
    exact: bool = False              # integer/boolean: compared value for value
    values: int = 0
    changed: int = 0                 # exact tensors: values that differ
    minimum: float = math.inf
    maximum: float = -math.inf
    beyond_fp16_max: int = 0         # float32 values with |x| > 65504: float16 cannot hold them
    subnormal_in_fp16: int = 0       # 0 < |x| < 2^-14: float16 keeps them with fewer bits
    zero_in_fp16: int = 0            # 0 < |x| <= 2^-25: float16 rounds them to 0
    fp16_overflow: int = 0           # emulated run: inf (inf_nan) or at +-65504 (saturation)
    fp16_nan: int = 0
    shape_mismatch: bool = False
    max_abs_diff: float = 0.0
    _dot: float = 0.0
    _ref_sq: float = 0.0
    _emu_sq: float = 0.0
    _finite: bool = True

    def update(self, reference: np.ndarray, emulated: np.ndarray, overflow: str) -> None:
        if reference.shape != emulated.shape:
            self.shape_mismatch = True
            return
        if self.exact:
            self._update_exact(np.asarray(reference), np.asarray(emulated))
            return
        ref = np.asarray(reference, dtype=np.float32).ravel()
        emu = np.asarray(emulated, dtype=np.float32).ravel()
        self.values += ref.size
        for start in range(0, ref.size, _BLOCK):
            self._update_block(ref[start:start + _BLOCK], emu[start:start + _BLOCK], overflow)

    def _update_exact(self, ref: np.ndarray, emu: np.ndarray) -> None:
        self.values += ref.size
        self.changed += int(np.count_nonzero(ref != emu))
        if ref.size:
            self.minimum = min(self.minimum, float(ref.min()))
            self.maximum = max(self.maximum, float(ref.max()))

    def _update_block(self, ref: np.ndarray, emu: np.ndarray, overflow: str) -> None:
        finite_ref = ref[np.isfinite(ref)]
        if finite_ref.size:
            self.minimum = min(self.minimum, float(finite_ref.min()))
            self.maximum = max(self.maximum, float(finite_ref.max()))
        magnitude = np.abs(ref)
        self.beyond_fp16_max += int(np.count_nonzero(magnitude > FP16_MAX))
        nonzero = magnitude > 0
        self.subnormal_in_fp16 += int(np.count_nonzero(nonzero & (magnitude < FP16_MIN_NORMAL)))
        self.zero_in_fp16 += int(np.count_nonzero(nonzero & (magnitude <= FP16_ROUNDS_TO_ZERO)))
        if overflow == SATURATION:
            self.fp16_overflow += int(np.count_nonzero(np.abs(emu) >= FP16_MAX))
        else:
            self.fp16_overflow += int(np.count_nonzero(np.isinf(emu)))
        self.fp16_nan += int(np.count_nonzero(np.isnan(emu)))
        both = np.isfinite(ref) & np.isfinite(emu)
        if both.any():
            diff = np.abs(ref[both].astype(np.float64) - emu[both])
            self.max_abs_diff = max(self.max_abs_diff, float(diff.max()))
        if not both.all():
            self._finite = False  # the cosine is undefined from here on: no sums needed
        if not self._finite:
            return
        ref64, emu64 = ref.astype(np.float64), emu.astype(np.float64)
        self._dot += float(ref64 @ emu64)
        self._ref_sq += float(ref64 @ ref64)
        self._emu_sq += float(emu64 @ emu64)

    @property
    def cosine(self) -> float | None:
        """Cosine similarity over all samples; None when the float16 run held inf/NaN or the
        shapes differ (no number says how far an inf is)."""
        if self.exact or self.shape_mismatch or not self._finite:
            return None
        return cosine_from_sums(self._dot, self._ref_sq, self._emu_sq)

    @property
    def changed_fraction(self) -> float | None:
        if not self.exact or self.shape_mismatch:
            return None
        return self.changed / self.values if self.values else 0.0

    @property
    def similarity(self) -> float:
        """Cosine for a float tensor, share of equal values for an exact one; -1 when undefined
        (inf/NaN, shapes differ): the number the search ranks nodes by."""
        value = self.cosine if not self.exact else self.changed_fraction
        if value is None:
            return -1.0
        return 1.0 - value if self.exact else value

    @property
    def departs(self) -> bool:
        if self.exact:
            return self.shape_mismatch or self.changed_fraction > DEPARTURE_CHANGED
        cosine = self.cosine
        return cosine is None or cosine < DEPARTURE_COSINE

    def as_dict(self) -> dict:
        return {"tensor": self.tensor, "node": self.node, "op_type": self.op_type, "position": self.position,
                "runs_in_fp16": self.runs_in_fp16, "exact": self.exact, "values": self.values,
                "changed_fraction": self.changed_fraction,
                "min": _finite_or_none(self.minimum), "max": _finite_or_none(self.maximum),
                "beyond_fp16_max": self.beyond_fp16_max, "subnormal_in_fp16": self.subnormal_in_fp16,
                "zero_in_fp16": self.zero_in_fp16, "fp16_overflow": self.fp16_overflow,
                "fp16_nan": self.fp16_nan, "cosine": self.cosine, "max_abs_diff": self.max_abs_diff,
                "shape_mismatch": self.shape_mismatch, "departs": self.departs}


def cosine_from_sums(dot: float, ref_sq: float, emu_sq: float) -> float:
    if ref_sq == 0.0 and emu_sq == 0.0:
        return 1.0  # both all zeros: identical
    if ref_sq == 0.0 or emu_sq == 0.0:
        return 0.0
    return float(np.clip(dot / math.sqrt(ref_sq * emu_sq), -1.0, 1.0))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---- model outputs ------------------------------------------------------------------------

@dataclass
class Tolerance:
    """What the outputs must meet. Class changes count only where the float32 top-2 margin is
    more than `tie_ulps` float16 ulps of the output's largest magnitude M (ulp(M) =
    2^(floor(log2 M) - 10)): closer than that, rounding M's neighbours alone can swap the two
    classes, a tie that says nothing about the network (random demo weights make many)."""
    min_cosine: float = 0.999
    max_class_changed: float = 0.001  # fraction of positions whose class changes beyond ties
    class_axis: int = 1
    tie_ulps: float = 4.0
    # Float outputs whose argmax on class_axis is a class map; None: every float output of
    # rank 4 (N, C, H, W logits). Detection outputs (boxes, per-detection masks) have none.
    class_outputs: tuple[str, ...] | None = None

    def has_classes(self, name: str, reference: np.ndarray) -> bool:
        if self.class_outputs is not None:
            return name in self.class_outputs
        return reference.ndim == 4

    def as_dict(self) -> dict:
        return {"min_cosine": self.min_cosine, "max_class_changed": self.max_class_changed,
                "class_axis": self.class_axis, "tie_ulps": self.tie_ulps,
                "class_outputs": "rank-4 float outputs" if self.class_outputs is None else list(self.class_outputs)}


# explicit mantissa bits and smallest normal exponent of each floating type
_FORMATS = {"fp32": (23, -126), "bf16": (7, -126), "fp16": (10, -14)}


def ulp(magnitude: float, precision: str = "fp16") -> float:
    """Spacing of `precision`'s values at `magnitude` (normal range)."""
    if magnitude <= 0 or not math.isfinite(magnitude):
        return 0.0
    mantissa_bits, min_exponent = _FORMATS[precision]
    return 2.0 ** (max(math.floor(math.log2(magnitude)), min_exponent) - mantissa_bits)


def fp16_ulp(magnitude: float) -> float:
    return ulp(magnitude, "fp16")


def tied_positions(ref: np.ndarray, class_axis: int, tie_ulps: float, precision: str = "fp16") -> np.ndarray:
    """Positions whose top-2 margin in `ref` is within `tie_ulps` ulps (of `precision`, at the
    largest finite magnitude of `ref`): rounding alone can swap their two classes."""
    top_two = np.partition(ref, [-2, -1], axis=class_axis)
    margin = np.take(top_two, -1, axis=class_axis) - np.take(top_two, -2, axis=class_axis)
    finite = ref[np.isfinite(ref)]
    magnitude = float(np.abs(finite).max()) if finite.size else 0.0
    return margin <= tie_ulps * ulp(magnitude, precision)


@dataclass
class OutputComparison:
    """One model output over all samples, float32 reference against another run."""
    name: str
    integer: bool = False
    shape_mismatch: bool = False
    values: int = 0
    nonfinite: int = 0
    max_abs_diff: float = 0.0
    reference_range: float = 0.0
    class_positions: int = 0
    class_changed_positions: int = 0
    tied_positions: int = 0
    class_changed_beyond_ties_positions: int = 0
    _sums: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _ref_min: float = math.inf
    _ref_max: float = -math.inf

    def update(self, reference: np.ndarray, other: np.ndarray, class_axis: int | None,
               tie_ulps: float = 0.0) -> None:
        """`class_axis` None: a float output without classes (no class changes counted)."""
        if reference.shape != other.shape:
            self.shape_mismatch = True
            return
        self.values += reference.size
        if not np.issubdtype(reference.dtype, np.floating):
            self.integer = True
            self.class_positions += reference.size
            changed = int(np.count_nonzero(reference != other))
            self.class_changed_positions += changed
            self.class_changed_beyond_ties_positions += changed  # a class map has no margin to judge
            return
        ref, oth = reference.astype(np.float64), other.astype(np.float64)
        finite = np.isfinite(oth) & np.isfinite(ref)
        self.nonfinite += int(np.count_nonzero(~np.isfinite(oth)))
        if finite.any():
            self.max_abs_diff = max(self.max_abs_diff, float(np.abs(ref[finite] - oth[finite]).max()))
            self._ref_min = min(self._ref_min, float(ref[finite].min()))
            self._ref_max = max(self._ref_max, float(ref[finite].max()))
        if finite.all():  # with inf/NaN there is no cosine (see `cosine`)
            self._sums[0] += float(ref.ravel() @ oth.ravel())
            self._sums[1] += float(ref.ravel() @ ref.ravel())
            self._sums[2] += float(oth.ravel() @ oth.ravel())
        if class_axis is not None and reference.ndim > class_axis and reference.shape[class_axis] > 1:
            # Segmentation logits (N, C, H, W): the class map is what the postprocess keeps.
            # A NaN never wins the argmax (an NPU's NaN is no class either).
            changed = (np.argmax(reference, axis=class_axis)
                       != np.argmax(np.where(np.isnan(other), -np.inf, other), axis=class_axis))
            tied = tied_positions(ref, class_axis, tie_ulps)
            self.class_positions += changed.size
            self.class_changed_positions += int(np.count_nonzero(changed))
            self.tied_positions += int(np.count_nonzero(tied))
            self.class_changed_beyond_ties_positions += int(np.count_nonzero(changed & ~tied))

    @property
    def cosine(self) -> float | None:
        if self.integer or self.shape_mismatch or self.nonfinite:
            return None
        return cosine_from_sums(*self._sums)

    @property
    def class_changed(self) -> float | None:
        if not self.class_positions:
            return None
        return self.class_changed_positions / self.class_positions

    @property
    def class_changed_beyond_ties(self) -> float | None:
        if not self.class_positions:
            return None
        return self.class_changed_beyond_ties_positions / self.class_positions

    @property
    def max_rel_diff(self) -> float | None:
        span = self._ref_max - self._ref_min
        if self.integer or not math.isfinite(span) or span <= 0:
            return None
        return self.max_abs_diff / span

    def failures(self, tolerance: Tolerance) -> list[str]:
        """Why this output misses the tolerance (empty when it meets it)."""
        if self.shape_mismatch:
            return ["shape differs from the float32 run"]
        problems = []
        if self.nonfinite:
            problems.append(f"{self.nonfinite} inf/NaN values")
        elif not self.integer and self.cosine < tolerance.min_cosine:
            problems.append(f"cosine {self.cosine:.6f} < {tolerance.min_cosine}")
        changed = self.class_changed_beyond_ties
        if changed is not None and changed > tolerance.max_class_changed:
            problems.append(f"class changed beyond ties at {changed:.4%} of positions > {tolerance.max_class_changed:.4%}")
        return problems

    def as_dict(self, tolerance: Tolerance) -> dict:
        return {"name": self.name, "integer": self.integer, "values": self.values,
                "cosine": self.cosine, "max_abs_diff": None if self.integer else self.max_abs_diff,
                "max_rel_diff": self.max_rel_diff, "class_changed": self.class_changed,
                "class_changed_beyond_ties": self.class_changed_beyond_ties,
                "class_positions": self.class_positions, "tied_positions": self.tied_positions,
                "nonfinite": self.nonfinite, "shape_mismatch": self.shape_mismatch,
                "failures": self.failures(tolerance)}


def compare_outputs(names, references, others, tolerance: Tolerance) -> list[OutputComparison]:
    """`references`/`others`: per sample, the list of output arrays in `names` order."""
    comparisons = [OutputComparison(name) for name in names]
    for ref_outputs, other_outputs in zip(references, others):
        for comparison, ref, other in zip(comparisons, ref_outputs, other_outputs):
            ref, other = np.asarray(ref), np.asarray(other)
            axis = tolerance.class_axis if tolerance.has_classes(comparison.name, ref) else None
            comparison.update(ref, other, axis, tolerance.tie_ulps)
    return comparisons


def meets(comparisons: list[OutputComparison], tolerance: Tolerance) -> bool:
    return all(not c.failures(tolerance) for c in comparisons)
