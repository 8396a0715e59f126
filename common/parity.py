"""PyTorch-vs-backend comparison: the same outputs, element for element, and the same metric."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.binio import list_bins
from common.cli import UserError


@dataclass
class Difference:
    max_abs: float
    max_rel: float  # max abs difference relative to the reference's value range
    cosine: float
    argmax_mismatch: float | None = None  # fraction of positions whose class axis argmax differs
    count: int = 1

    def within(self, rel_tol: float) -> bool:
        return self.max_rel <= rel_tol

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
    mismatch = None
    if class_axis is not None and reference.ndim > 0:
        mismatch = float(np.mean(reference.argmax(class_axis) != candidate.argmax(class_axis)))
    return Difference(max_abs, max_rel, cosine, mismatch)


def merge(differences: Sequence[Difference]) -> Difference:
    """Worst case over many files (max of maxima, min of cosines, mean of mismatch rates)."""
    if not differences:
        raise UserError("nothing to compare")
    mismatches = [d.argmax_mismatch for d in differences if d.argmax_mismatch is not None]
    return Difference(max(d.max_abs for d in differences), max(d.max_rel for d in differences),
                      min(d.cosine for d in differences),
                      float(np.mean(mismatches)) if mismatches else None, len(differences))


def compare_folders(reference_dir: str | Path, candidate_dir: str | Path, dtype=np.float32,
                    class_axis: int | None = None, shape: Sequence[int] | None = None) -> Difference:
    """Compare same-named output bins of two result folders (every file must have a partner)."""
    reference_files = {p.name: p for p in list_bins(reference_dir)}
    candidate_files = {p.name: p for p in list_bins(candidate_dir)}
    only_one = sorted(set(reference_files) ^ set(candidate_files))
    if only_one:
        raise UserError(f"{candidate_dir}: {len(only_one)} output file(s) without a partner in "
                        f"{reference_dir} (first: {', '.join(only_one[:3])})")
    differences = []
    for name, ref_path in reference_files.items():
        ref = np.fromfile(ref_path, dtype=dtype)
        cand = np.fromfile(candidate_files[name], dtype=dtype)
        if shape is not None and ref.size == int(np.prod(shape)):
            ref, cand = ref.reshape(shape), cand.reshape(shape)
        differences.append(compare_arrays(ref, cand, class_axis if shape is not None else None))
    return merge(differences)


def compare_metrics(reference: float, candidate: float, abs_tol: float = 1e-6) -> dict:
    difference = float(candidate - reference)
    return {"reference": reference, "candidate": candidate, "difference": difference,
            "equal": abs(difference) <= abs_tol}


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
