"""PyTorch-vs-backend comparison: the same outputs, element for element, and the same metric."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.files.bins import list_bins
from common.files.outputs import split_output_name
from common.cli import UserError


@dataclass
class Difference:
    max_abs: float
    max_rel: float  # max abs difference relative to the reference's value range
    cosine: float
    argmax_mismatch: float | None = None  # fraction of positions whose class (argmax) differs
    count: int = 1
    class_changed: int | None = None  # positions whose class differs, and positions compared
    class_positions: int | None = None

    def within(self, rel_tol: float) -> bool:
        return self.max_rel <= rel_tol

    def count_classes(self, reference_classes: np.ndarray, candidate_classes: np.ndarray) -> None:
        self.class_changed = int(np.count_nonzero(reference_classes != candidate_classes))
        self.class_positions = int(reference_classes.size)
        self.argmax_mismatch = self.class_changed / self.class_positions if self.class_positions else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def compare_arrays(reference: np.ndarray, candidate: np.ndarray, class_axis: int | None = None) -> Difference:
    """Differences between two arrays of the same shape; `class_axis` also compares argmaxes."""
    if reference.shape != candidate.shape:
        raise UserError(f"shape {candidate.shape} differs from the reference {reference.shape}")
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    max_abs = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
    value_range = float(ref.max() - ref.min()) if ref.size else 0.0
    max_rel = max_abs / value_range if value_range > 0 else (0.0 if max_abs == 0 else float("inf"))
    norms = np.linalg.norm(ref) * np.linalg.norm(cand)
    cosine = float(ref @ cand / norms) if norms > 0 else float(max_abs == 0)
    difference = Difference(max_abs, max_rel, cosine)
    if class_axis is not None and reference.ndim > 0:
        difference.count_classes(reference.argmax(class_axis), candidate.argmax(class_axis))
    return difference


def compare_class_maps(reference: np.ndarray, candidate: np.ndarray) -> Difference:
    """Two integer class maps: value differences and the positions whose class differs."""
    difference = compare_arrays(reference, candidate)
    difference.count_classes(reference, candidate)
    return difference


def merge(differences: Sequence[Difference]) -> Difference:
    """Worst case over many files (max of maxima, min of cosines); class changes pooled."""
    if not differences:
        raise UserError("nothing to compare")
    merged = Difference(max(d.max_abs for d in differences), max(d.max_rel for d in differences),
                        min(d.cosine for d in differences), count=len(differences))
    counted = [d for d in differences if d.class_positions is not None]
    if counted:
        merged.class_changed = sum(d.class_changed for d in counted)
        merged.class_positions = sum(d.class_positions for d in counted)
        merged.argmax_mismatch = merged.class_changed / merged.class_positions if merged.class_positions else 0.0
    return merged


def compare_output_folders(reference: Path, candidate: Path, dtypes: Sequence[str],
                           classes: Sequence[int | None] | None = None,
                           by_output: bool = False) -> Difference | dict[int, Difference]:
    """Compare every `<stem>_<k>.bin` pair of two result folders; output k is read with dtypes[k]
    (the last one repeats). `classes[k]` (last one repeats; None: not a class output) marks
    output k as per-class scores, class axis first, when its dtype is a float, or as a class map
    when it is an integer: the result then also counts the positions whose class differs, which
    says more than the largest value difference when one near-tie flips (PointRend).
    `by_output` gives one merged Difference per output index instead of one overall."""
    reference, candidate = Path(reference), Path(candidate)
    classes = list(classes or [None])
    # list_bins, not Path.glob: pathlib's `*` also matches the hidden temporary files that a
    # killed run leaves behind.
    reference_files = {p.name: p for p in list_bins(reference)}
    candidate_names = {p.name for p in list_bins(candidate)}
    only_one = sorted(set(reference_files) ^ candidate_names)
    if only_one:
        name = only_one[0]
        holder, other = (candidate, reference) if name in candidate_names else (reference, candidate)
        raise UserError(f"{holder / name}: no such output in {other} ({len(only_one)} file(s) in one "
                        f"folder only, first: {', '.join(only_one[:3])})")
    per_output: dict[int, list[Difference]] = {}
    for name, ref_path in reference_files.items():
        cand_path = candidate / name
        _, index = split_output_name(ref_path)
        dtype = np.dtype(dtypes[min(index, len(dtypes) - 1)])
        ref, cand = np.fromfile(ref_path, dtype), np.fromfile(cand_path, dtype)
        if ref.shape != cand.shape:
            raise UserError(f"{cand_path}: {cand_path.stat().st_size} bytes, the reference output has "
                            f"{ref_path.stat().st_size}")
        num_classes = classes[min(index, len(classes) - 1)]
        per_output.setdefault(index, []).append(_compare_output(ref, cand, num_classes, cand_path))
    if by_output:
        return {index: merge(found) for index, found in sorted(per_output.items())}
    return merge([d for found in per_output.values() for d in found])


def _compare_output(ref: np.ndarray, cand: np.ndarray, num_classes: int | None, path: Path) -> Difference:
    if num_classes is None:
        return compare_arrays(ref, cand)
    if np.issubdtype(ref.dtype, np.integer):  # a class map: compare the ids themselves
        return compare_class_maps(ref, cand)
    if ref.size % num_classes:
        raise UserError(f"{path}: {ref.size} values do not split into {num_classes} class planes")
    return compare_arrays(ref.reshape(num_classes, -1), cand.reshape(num_classes, -1), class_axis=0)


# ---- detections (MaskRCNN_mmdet): the same objects, not the same numbers ----------------------

DETECTION_IOU_MIN = 0.99     # boxes of a matched pair overlap at least this much
DETECTION_SCORE_TOL = 1e-3   # and their scores differ by at most this


def valid_detections(dets: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row indices of real detections in fixed-size outputs (padding rows: label -1, score 0)."""
    return np.flatnonzero((labels.reshape(-1) >= 0) & (dets.reshape(-1, 5)[:, 4] > 0))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box with each row of `boxes` (widths x2-x1, as mmdet 2.x)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(ref_dets: np.ndarray, ref_labels: np.ndarray, cand_dets: np.ndarray,
                     cand_labels: np.ndarray, iou_min: float = DETECTION_IOU_MIN,
                     score_tol: float = DETECTION_SCORE_TOL) -> dict:
    """Pair reference and candidate detections one to one (same label, IoU >= iou_min, score
    within score_tol), the reference's highest scores first, each candidate used once.
    `fraction_matched` divides by the larger count, so missing and extra detections both count."""
    ref_rows, cand_rows = valid_detections(ref_dets, ref_labels), valid_detections(cand_dets, cand_labels)
    ref_dets, cand_dets = ref_dets.reshape(-1, 5).astype(np.float64), cand_dets.reshape(-1, 5).astype(np.float64)
    ref_labels, cand_labels = ref_labels.reshape(-1), cand_labels.reshape(-1)
    free = np.ones(len(cand_rows), dtype=bool)
    matched = 0
    for row in ref_rows[np.argsort(-ref_dets[ref_rows, 4], kind="stable")]:
        if not free.any():
            break
        ious = box_iou(ref_dets[row, :4], cand_dets[cand_rows, :4])
        ok = (free & (cand_labels[cand_rows] == ref_labels[row]) & (ious >= iou_min)
              & (np.abs(cand_dets[cand_rows, 4] - ref_dets[row, 4]) <= score_tol))
        if ok.any():
            free[np.flatnonzero(ok)[np.argmax(ious[ok])]] = False
            matched += 1
    larger = max(len(ref_rows), len(cand_rows))
    return {"reference": int(len(ref_rows)), "candidate": int(len(cand_rows)), "matched": matched,
            "fraction_matched": matched / larger if larger else 1.0}


def compare_detection_folders(reference: Path, candidate: Path, boxes_index: int = 0, labels_index: int = 1,
                              labels_dtype: str = "int32") -> dict:
    """Detections of every image (`<stem>_<boxes_index>.bin` N x 5, `<stem>_<labels_index>.bin` N)
    matched one to one between two result folders, summed over the images."""
    reference, candidate = Path(reference), Path(candidate)
    totals = {"reference": 0, "candidate": 0, "matched": 0, "images": 0}
    for ref_boxes in list_bins(reference):
        stem, index = split_output_name(ref_boxes)
        if index != boxes_index:
            continue
        arrays = {}
        for side, folder in (("ref", reference), ("cand", candidate)):
            boxes_path, labels_path = folder / f"{stem}_{boxes_index}.bin", folder / f"{stem}_{labels_index}.bin"
            for path in (boxes_path, labels_path):
                if not path.is_file():
                    raise UserError(f"{path}: missing, the other run has {ref_boxes.name}")
            arrays[side] = (np.fromfile(boxes_path, np.float32), np.fromfile(labels_path, labels_dtype))
        found = match_detections(*arrays["ref"], *arrays["cand"])
        for key in ("reference", "candidate", "matched"):
            totals[key] += found[key]
        totals["images"] += 1
    larger = max(totals["reference"], totals["candidate"])
    totals["fraction_matched"] = totals["matched"] / larger if larger else 1.0
    return totals
