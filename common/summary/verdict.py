"""The verdict of a run against the PyTorch float32 reference on the same bins, from stated tolerances.

Segmentation packs: the metric difference and the fraction of output positions whose class
differs. Detection (MaskRCNN_mmdet): detections matched one to one between the two runs (same
label, IoU >= 0.99, score within 1e-3), and the fraction matched. The verdict is `agree` when
every measured figure is within its tolerance, else `differs: ...` naming each figure that is
not and by how much. Reduced precision (bf16, fp16) is held to looser, stated tolerances: it
is expected to cost something, and the verdict says whether the cost stays within them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Tolerance:
    metric_abs: float            # |metric(backend) - metric(PyTorch)|, on the metric's 0..1 scale
    class_changed: float         # fraction of output positions (pixels) of another class
    detections_matched: float    # fraction of detections matched one to one, at least

    def to_dict(self) -> dict:
        return asdict(self)


# float32 engines differ by rounding only: a near-tied pixel may flip, nothing more.
# bf16/fp16 keep 8/11 mantissa bits: the goal for them is <= 0.5 % of pixels.
TOLERANCES = {
    "fp32": Tolerance(metric_abs=1e-4, class_changed=1e-4, detections_matched=0.99),
    "bf16": Tolerance(metric_abs=5e-3, class_changed=5e-3, detections_matched=0.9),
    "fp16": Tolerance(metric_abs=5e-3, class_changed=5e-3, detections_matched=0.9),
}


def tolerance_for(precision: str) -> Tolerance:
    return TOLERANCES[precision]


def _share(value: float) -> str:
    return f"{100 * value:.3g} %"


def segmentation_verdict(metric_difference: float, class_changed: float | None, changed_positions: int | None,
                         total_positions: int | None, tolerance: Tolerance) -> str:
    problems = []
    if abs(metric_difference) > tolerance.metric_abs:
        problems.append(f"metric differs by {metric_difference:+.3g} (tolerance {tolerance.metric_abs:g})")
    if class_changed is not None and class_changed > tolerance.class_changed:
        counted = f" ({changed_positions} of {total_positions})" if changed_positions is not None else ""
        problems.append(f"{_share(class_changed)} of pixels of another class{counted} "
                        f"(tolerance {_share(tolerance.class_changed)})")
    return "agree" if not problems else "differs: " + "; ".join(problems)


def detection_verdict(metric_difference: float, matching: dict, tolerance: Tolerance) -> str:
    problems = []
    if abs(metric_difference) > tolerance.metric_abs:
        problems.append(f"metric differs by {metric_difference:+.3g} (tolerance {tolerance.metric_abs:g})")
    if matching["fraction_matched"] < tolerance.detections_matched:
        problems.append(f"{matching['matched']} of {max(matching['reference'], matching['candidate'])} detections "
                        f"matched one to one ({_share(matching['fraction_matched'])}; PyTorch "
                        f"{matching['reference']}, backend {matching['candidate']}; tolerance "
                        f"{_share(tolerance.detections_matched)})")
    return "agree" if not problems else "differs: " + "; ".join(problems)
